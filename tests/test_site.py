"""The static gallery: what export_site writes, and the page itself in a real headless Chromium.

The browser tests drive Debian's chromium (``apt-get install chromium``) through Playwright, served
by Python's http.server on 127.0.0.1 (a plain file server, as GitHub Pages would be); they are
skipped with the reason when chromium or playwright is missing.
"""

import functools
import http.server
import json
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
from chromium import local_page, missing
from conftest import make_banner
from PIL import Image

from steam_dinov2 import embed_folder, find_neighbors, load_embeddings
from steam_dinov2.core import layout
from steam_dinov2.core.files import OWN_ID_BASE, read_parquet_key, write_keyed_parquet
from steam_dinov2.core.manifest import write_manifest
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.search import search_games
from steam_dinov2.steam.metadata import write_metadata
from steam_dinov2.views.site import FEATURED, RECORD, THUMB_WIDTH, export_site, make_thumbnail

SETTING = "dinov2_vits14__crop256__cls__random"
EVIL = '<img src=x onerror="document.body.dataset.pwned=1">Evil & Co'
NAMES = {
    10: "Portal 2",
    20: "Stardew Valley",
    30: "Hollow Knight",
    40: "Terraria",
    50: EVIL,
    60: "Half-Life",
    70: "Celeste",
    80: "Hades",
    90: "Hollow Knight Copy",
}
K = 3


@pytest.fixture(scope="module")
def site_data(tmp_path_factory, vits14):
    """A data folder: 9 banners (90 a re-encoded copy of 30), names with a hostile one, embedded."""
    data = tmp_path_factory.mktemp("site") / "data"
    banners = data / "banners"
    banners.mkdir(parents=True)
    for app_id in NAMES:
        seed = 3 if app_id == 90 else app_id // 10
        make_banner(seed).save(banners / f"{app_id}.jpg", quality=90 if app_id != 90 else 70)
    write_manifest(
        data, pd.DataFrame({"app_id": list(NAMES), "name": list(NAMES.values()), "status": "ok"})
    )
    embed_folder(banners, data, model=vits14, progress=False)
    # Each game its own studio (the hostile name's studio hostile too): 90 copies 30 across studios.
    studio = {a: [EVIL if a == 50 else f"Studio {a}"] for a in NAMES}
    write_metadata(
        data,
        pd.DataFrame(
            {
                "app_id": list(NAMES),
                "developers": list(studio.values()),
                "publishers": list(studio.values()),
                "franchises": [[] for _ in NAMES],
                "tagids": [[] for _ in NAMES],
                "tag_weights": [[] for _ in NAMES],
                "updated_at": pd.Timestamp.now("UTC"),
            }
        ),
    )
    return data


@pytest.fixture(scope="module")
def site(site_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "site"
    report = export_site(site_data, SETTING, out, k=K, n_clusters=3, progress=False)
    return out, report


def test_export_writes_games_neighbors_and_thumbnails(site, site_data):
    out, report = site
    assert {p.name for p in out.iterdir()} == {
        RECORD,
        "index.html",
        "app.js",
        "style.css",
        "lookalikes.html",
        "lookalikes.js",
        "data",
        "thumbs",
    }
    games = json.loads((out / "data" / "games.json").read_text())
    emb = load_embeddings(site_data, SETTING)
    assert (
        games["ids"] == [str(i) for i in emb.ids] and games["count"] == len(NAMES) == report.games
    )
    assert games["names"] == [NAMES[int(i)] for i in emb.ids]
    shard = json.loads((out / "data" / "neighbors-0.json").read_text())
    for row, app_id in enumerate(emb.ids):
        want = find_neighbors(emb, app_id, k=K)
        assert [int(games["ids"][r]) for r in shard["rows"][row]] == list(want["id"])
        np.testing.assert_allclose(shard["scores"][row], want["score"], atol=5e-4)
    assert games["thumb"] == [1] * len(NAMES) and report.thumbnails == len(NAMES)
    for row in range(len(NAMES)):
        with Image.open(out / "thumbs" / "0" / f"{row}.webp") as img:
            assert img.format == "WEBP" and img.size == (THUMB_WIDTH, THUMB_WIDTH * 3 // 2)
    assert len(games["x"]) == len(games["cluster"]) == len(NAMES)
    assert sorted(c["cluster"] for c in games["clusters"]) == [0, 1, 2]
    assert report.bytes == sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != RECORD
    )
    pairs = json.loads((out / "data" / "lookalikes.json").read_text())["pairs"]
    a, b, score, studio_a, studio_b = pairs[0]  # the planted copy, first
    assert {games["ids"][a], games["ids"][b]} == {"30", "90"} and {studio_a, studio_b} == {
        "Studio 30",
        "Studio 90",
    }
    assert [p[2] for p in pairs] == sorted((p[2] for p in pairs), reverse=True)


def test_thumbnails_are_whole_not_cropped(tmp_path):
    make_banner(1, size=(600, 200)).save(tmp_path / "wide.png")  # a landscape picture, 3:1
    make_banner(2, size=(100, 900)).save(tmp_path / "tall.png")  # taller than 2:3
    for name, want in (("wide", (150, 50)), ("tall", (25, 225))):
        make_thumbnail(tmp_path / f"{name}.png", tmp_path / f"{name}.webp")
        with Image.open(tmp_path / f"{name}.webp") as img:
            assert img.size == want  # the whole picture, its shape kept, inside 150x225


def test_reexport_reuses_thumbnails_whose_banner_is_unchanged(site_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(site_data, data)
    out = tmp_path / "out"
    first = export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    assert first.reused == 0 and first.thumbnails == len(NAMES)
    row = json.loads((out / "data" / "games.json").read_text())["ids"].index("20")
    before = (out / "thumbs" / "0" / f"{row}.webp").read_bytes()
    make_banner(99).save(data / "banners" / "20.jpg")  # a new banner for one game
    second = export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    assert second.reused == len(NAMES) - 1 and second.thumbnails == len(NAMES)
    assert (out / "thumbs" / "0" / f"{row}.webp").read_bytes() != before
    # A thumbnail the previous export holds as a link is not trusted: it is encoded again.
    other = next(r for r in range(len(NAMES)) if r != row)
    thumb = out / "thumbs" / "0" / f"{other}.webp"
    thumb.unlink()
    thumb.symlink_to(data / "banners" / "10.jpg")
    third = export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    assert third.reused == len(NAMES) - 1 and not thumb.is_symlink()
    # A damaged thumbs.json only costs the reuse.
    (out / "data" / "thumbs.json").write_text("{not json")
    assert export_site(data, SETTING, out, k=K, with_map=False, progress=False).reused == 0


def _listed(out, app_id) -> list[int]:
    """The neighbours the exported site lists for ``app_id``, best first."""
    ids = json.loads((out / "data" / "games.json").read_text())["ids"]
    rows = json.loads((out / "data" / "neighbors-0.json").read_text())["rows"]
    return [int(ids[r]) for r in rows[ids.index(str(app_id))] if r >= 0]


def test_reexport_reads_the_match_table_while_it_is_fresh(site_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(site_data, data)
    shutil.rmtree(data / "matches", ignore_errors=True)
    out = tmp_path / "out"
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    emb = load_embeddings(data, SETTING)
    searched = list(find_neighbors(emb, 30, k=K)["id"])
    assert _listed(out, 30) == searched
    # The first export kept its table; lists no search would give (each one reversed), planted
    # under the same key, are what the next export shows: it searched nothing.
    path = layout.neighbors_path(data, SETTING)
    key, table = read_parquet_key(path), pd.read_parquet(path)
    assert key["k"] == K
    table["rank"] = (K + 1 - table["rank"]).astype(table["rank"].dtype)
    write_keyed_parquet(path, table, key)
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    assert _listed(out, 30) == searched[::-1]
    export_site(data, SETTING, out, k=K - 1, with_map=False, progress=False)  # fewer: read too
    assert _listed(out, 30) == searched[::-1][: K - 1]
    # More neighbours than the table holds, or an exclusion since: searched again, and kept.
    export_site(data, SETTING, out, k=K + 1, with_map=False, progress=False)
    assert _listed(out, 30) == list(find_neighbors(emb, 30, k=K + 1)["id"])
    assert read_parquet_key(path)["k"] == K + 1
    write_keyed_parquet(path, table, {**key, "k": K + 1})
    (data / "audit").mkdir(exist_ok=True)
    (data / "audit" / "exclusions.json").write_text(json.dumps({str(searched[0]): ["planted"]}))
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    assert _listed(out, 30) == list(
        find_neighbors(emb, 30, k=K, exclude={searched[0]: ["planted"]})["id"]
    )


def test_landing_page_best_known_or_a_sample_without_excluded(site_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(site_data, data)
    layout.exclusions_path(data).parent.mkdir(parents=True, exist_ok=True)
    layout.exclusions_path(data).write_text(json.dumps({"90": ["near_duplicate_of:30"]}))
    out = tmp_path / "out"
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    games = json.loads((out / "data" / "games.json").read_text())
    excluded = games["ids"].index("90")
    assert games["featured_by"] == "sample" and games["excluded"] == [excluded]
    assert sorted(games["featured"]) == sorted(set(range(len(NAMES))) - {excluded})
    # With store metadata, the games with the most tag votes come first.
    votes = {10: [900.0, 50.0], 40: [2000.0], 60: [10.0], 90: [99999.0]}
    write_metadata(
        data,
        pd.DataFrame(
            {
                "app_id": list(votes),
                "developers": [[]] * 4,
                "publishers": [[]] * 4,
                "franchises": [[]] * 4,
                "tagids": [list(range(len(v))) for v in votes.values()],
                "tag_weights": list(votes.values()),
                "updated_at": pd.Timestamp.now("UTC"),
            }
        ),
    )
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    games = json.loads((out / "data" / "games.json").read_text())
    assert games["featured_by"] == "popularity" and len(games["featured"]) <= FEATURED
    assert [games["ids"][r] for r in games["featured"][:3]] == ["40", "10", "60"]
    assert excluded not in games["featured"]


def test_names_are_never_written_as_markup(site):
    out, _ = site
    for name in ("index.html", "app.js", "lookalikes.html", "lookalikes.js"):
        assert "Evil" not in (out / name).read_text()
        assert "innerHTML" not in (out / name).read_text()
    # In the JSON the name is a plain string; the page puts it in with textContent.
    assert EVIL in json.loads((out / "data" / "games.json").read_text())["names"]


def _tree(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _record(out) -> set[str]:
    return set(json.loads((out / RECORD).read_text())["files"])


def test_export_over_a_pages_checkout_keeps_what_it_did_not_write(site_data, tmp_path):
    out = tmp_path / "pages"
    theirs = {".git/config": b"[core]", "CNAME": b"games.example", "notes.txt": b"keep me"}
    theirs |= {"data/mine.csv": b"a,b", "thumbs/readme.md": b"mine"}
    for rel, content in theirs.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(content)
    export_site(site_data, SETTING, out, k=K, with_map=False, progress=False)
    tree = _tree(out)
    assert {rel: tree[rel] for rel in theirs} == theirs
    assert set(tree) - set(theirs) - {RECORD} == _record(out)
    assert len([r for r in _record(out) if r.startswith("thumbs/")]) == len(NAMES)

    # A second export, where game 40 has no thumbnail any more: its old one goes, nothing else.
    data = tmp_path / "data"
    shutil.copytree(site_data, data)
    (data / "banners" / "40.jpg").write_bytes(b"not a jpeg")
    row = load_embeddings(data, SETTING).ids.index(40)
    export_site(data, SETTING, out, k=K, with_map=False, progress=False)
    tree = _tree(out)
    assert {rel: tree[rel] for rel in theirs} == theirs
    assert f"thumbs/0/{row}.webp" not in tree
    assert set(tree) - set(theirs) - {RECORD} == _record(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_stray_games_json_is_no_proof_of_a_site(site_data, tmp_path):
    # The attack of issue 17: a data folder that holds data/games.json, exported into itself.
    data = tmp_path / "d"
    shutil.copytree(site_data, data)
    (data / "data").mkdir()
    (data / "data" / "games.json").write_text("[]")
    before = _tree(data)
    for out in (data, data / "site", tmp_path):
        with pytest.raises(ValueError, match="outside the data folder"):
            export_site(data, SETTING, out, with_map=False, progress=False)
    assert _tree(data) == before
    # An export of another tool (or an old one without a record): refused, not replaced.
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "index.html").write_text("<h1>mine</h1>")
    (other / "data" / "games.json").write_text("[]")
    with pytest.raises(ValueError, match="games.json exists and export-site did not write it"):
        export_site(data, SETTING, other, with_map=False, progress=False)
    assert _tree(other) == {"data/games.json": b"[]", "index.html": b"<h1>mine</h1>"}


def test_a_forged_record_deletes_nothing_outside_its_names(site_data, tmp_path):
    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref")
    (out / "secret.txt").write_text("keep")
    forged = [".git/HEAD", "secret.txt", "../outside.txt", "/etc/hostname", "thumbs/0/../../x"]
    (tmp_path / "outside.txt").write_text("keep")
    (out / RECORD).write_text(json.dumps({"files": forged}))
    export_site(site_data, SETTING, out, k=K, with_map=False, progress=False)
    assert (out / ".git" / "HEAD").read_text() == "ref"
    assert (out / "secret.txt").read_text() == "keep"
    assert (tmp_path / "outside.txt").read_text() == "keep"
    for bad in ([1, 2], "x" * 10, json.dumps({"files": "index.html"})):
        (out / RECORD).write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(ValueError, match="is not export-site's record"):
            export_site(site_data, SETTING, out, with_map=False, progress=False)
    (out / RECORD).unlink()
    (out / RECORD).symlink_to(tmp_path / "outside.txt")
    with pytest.raises(ValueError, match="is not export-site's record"):
        export_site(site_data, SETTING, out, with_map=False, progress=False)


def test_a_symlinked_folder_in_out_is_never_written_through(site_data, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "thumbs").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="thumbs is a symlink or a file"):
        export_site(site_data, SETTING, out, with_map=False, progress=False)
    assert not any(elsewhere.iterdir())


_KILL = """
import os, signal, sys
from steam_dinov2.views import site
calls = 0
real = os.replace
def replace(a, b):
    global calls
    calls += 1
    if calls == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b)
site.os.replace = replace
site.export_site(sys.argv[1], sys.argv[2], sys.argv[4], k=2, with_map=False, progress=False)
"""


@pytest.mark.parametrize("kill_at", [1, 2, 8])  # the record's write, then files moving in
def test_a_killed_export_leaves_nothing_a_rerun_does_not_clean(site_data, tmp_path, kill_at):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    (out / "CNAME").write_text("games.example")
    export_site(site_data, SETTING, out, k=K, with_map=False, progress=False)  # an earlier one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-c", _KILL, str(site_data), SETTING, str(kill_at), str(out)]
    assert subprocess.run(argv, env=env).returncode == -signal.SIGKILL
    left = {r for r in _tree(out) if ".tmp" not in r.split("/")[0]}  # temporary: cleaned
    assert left - {"CNAME", RECORD} <= _record(out)  # only recorded files
    export_site(site_data, SETTING, out, k=2, with_map=False, progress=False)
    tree = _tree(out)
    assert set(tree) == _record(out) | {"CNAME", RECORD}
    assert tree["CNAME"] == b"games.example"
    assert json.loads(tree["data/games.json"])["k"] == 2
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "CNAME", "app.js", "data"] + [
        "index.html",
        "lookalikes.html",
        "lookalikes.js",
        "style.css",
        "thumbs",
    ]


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory, vits14):
    """Two games: a Steam app whose name is 400 letters without a space, and an own image."""
    data = tmp_path_factory.mktemp("odd") / "data"
    (data / "banners").mkdir(parents=True)
    ids = {10: "W" * 400, OWN_ID_BASE + 7: "holiday"}
    for n, app_id in enumerate(ids):
        make_banner(n + 1).save(data / "banners" / f"{app_id}.jpg")
    write_manifest(
        data, pd.DataFrame({"app_id": list(ids), "name": list(ids.values()), "status": "ok"})
    )
    embed_folder(data / "banners", data, model=vits14, progress=False)
    return data


def test_one_game_exports(odd_data, tmp_path, vits14):
    data = tmp_path / "one"
    (data / "banners").mkdir(parents=True)
    shutil.copy(odd_data / "banners" / "10.jpg", data / "banners")
    embed_folder(data / "banners", data, model=vits14, progress=False)
    report = export_site(data, SETTING, tmp_path / "out", k=K, progress=False)
    assert (report.games, report.thumbnails) == (1, 1)
    games = json.loads((tmp_path / "out" / "data" / "games.json").read_text())
    assert games["x"] and games["clusters"][0]["size"] == 1
    assert json.loads((tmp_path / "out" / "data" / "neighbors-0.json").read_text())["rows"] == [
        [-1, -1, -1]
    ]


def test_own_images_are_not_steam_apps(odd_data, tmp_path):
    export_site(odd_data, SETTING, tmp_path / "out", k=1, with_map=False, progress=False)
    games = json.loads((tmp_path / "out" / "data" / "games.json").read_text())
    steam = dict(zip(map(int, games["ids"]), games["steam"]))
    assert steam == {10: 1, OWN_ID_BASE + 7: 0}


def test_unreadable_banner_is_a_tile_without_picture(site_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(site_data, data)
    (data / "banners" / "40.jpg").write_bytes(b"not a jpeg")  # after embedding: cache still has it
    setting = Setting.from_name(SETTING)  # a Setting names the cache as well as its name
    report = export_site(data, setting, tmp_path / "out", k=K, with_map=False, progress=False)
    games = json.loads((tmp_path / "out" / "data" / "games.json").read_text())
    row = games["ids"].index("40")
    assert games["thumb"][row] == 0 and 40 in report.skipped
    assert "x" not in games  # no map asked for
    assert not (tmp_path / "out" / "thumbs" / "0" / f"{row}.webp").exists()


def test_a_decompression_bomb_gets_no_thumbnail(tmp_path):
    from steam_dinov2.views.site import make_thumbnail

    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000)).save(bomb)  # 48 Mpixels in a few kB
    with pytest.raises(ValueError, match="too large"):
        make_thumbnail(bomb, tmp_path / "t.webp")
    assert not (tmp_path / "t.webp").exists()


def test_unknown_setting_names_the_cached_ones(site_data, tmp_path):
    with pytest.raises(ValueError, match="cached: " + SETTING):
        export_site(site_data, "nope__crop256__cls", tmp_path / "out", progress=False)
    # A malformed name says so, rather than send anyone to embed it.
    with pytest.raises(ValueError, match="setting name 'nope' must look like model__preset"):
        export_site(site_data, "nope", tmp_path / "out", progress=False)


def test_cli_export_site(site_data, tmp_path, capsys):
    from steam_dinov2.cli import main

    out = tmp_path / "out"
    argv = ["export-site", "--data", str(site_data), "--setting", SETTING, "--out", str(out)]
    assert main([*argv, "--no-map", "--k", "2"]) == 0
    assert "9 games" in capsys.readouterr().out
    assert json.loads((out / "data" / "games.json").read_text())["k"] == 2
    assert main(["export-site", "--data", str(site_data), "--setting", "x", "--out", str(out)]) == 2
    assert "setting name 'x' must look like" in capsys.readouterr().err
    argv = ["export-site", "--data", str(site_data), "--setting", "x__crop256__cls"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "no embeddings for setting 'x__crop256__cls'" in capsys.readouterr().err


# --- in a real browser ----------------------------------------------------------------------
MISSING = missing()


@pytest.fixture
def served(site):
    out, _ = site
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def page():
    with local_page(width=1200) as page:
        yield page


def _shown(page) -> tuple[str, list[str]]:
    query = page.locator("#query .tile .name").inner_text()
    return query, page.locator("#grid .tile .name").all_inner_texts()


def _expected(data, app_id) -> list[str]:
    table = find_neighbors(load_embeddings(data, SETTING), str(app_id), k=K)
    return [NAMES[int(i)] for i in table["id"]]


@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")
def test_search_click_through_and_map_in_chromium(served, page, site, site_data, tmp_path):
    from playwright.sync_api import expect

    out, _ = site
    page.goto(served)
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=20_000)

    page.locator("#search").press_sequentially("portal", delay=20)
    expect(page.locator("#results button")).to_have_text(["Portal 2 (10)"])
    page.locator("#results button").click()
    expect(page.locator("#grid .tile")).to_have_count(K)
    assert _shown(page) == ("Portal 2", _expected(site_data, 10))
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete)")
    assert all(page.locator("#grid img").evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0)"))
    assert page.locator("#grid img").first.get_attribute("loading") == "lazy"

    first = _expected(site_data, 10)[0]
    page.locator("#grid .tile img").first.click()  # click through to a neighbour
    expect(page.locator("#query .tile .name")).to_have_text(first)
    app_id = next(a for a, n in NAMES.items() if n == first)
    assert _shown(page) == (first, _expected(site_data, app_id))
    assert page.evaluate("location.hash") == f"#{app_id}"

    # The map: click the point of the game farthest from any other, the page shows that game.
    games = json.loads((out / "data" / "games.json").read_text())
    xy = np.stack([games["x"], games["y"]], axis=1) / 10_000
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 9
    row = int(gaps.min(axis=1).argmax())
    box = page.locator("#map").bounding_box()
    x, y = (8 + xy[row] * 424) * box["width"] / 440
    page.locator("#map").click(position={"x": float(x), "y": float(y)})
    expect(page.locator("#query .tile .name")).to_have_text(games["names"][row])

    # The hostile name is shown as text, and its markup never ran.
    page.locator("#search").fill("evil")
    expect(page.locator("#results button")).to_have_text([f"{EVIL} (50)"])
    page.locator("#results button").click()
    expect(page.locator("#query .tile .name")).to_have_text(EVIL)
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.locator("img[src='x']").count() == 0

    page.locator("#clusters").select_option(index=1)  # cluster 0, the largest
    expect(page.locator("#grid .tile")).to_have_count(games["cluster"].count(0))
    page.screenshot(path=tmp_path / "site.png")
    assert not page.errors and not page.dialogs and not page.blocked


@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")
def test_lookalikes_page_lists_filters_and_links_pairs_in_chromium(served, page, site):
    from playwright.sync_api import expect

    out, _ = site
    pairs = json.loads((out / "data" / "lookalikes.json").read_text())["pairs"]
    page.goto(served)
    page.locator("#lookalikes").click()  # the link on the main page
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=20_000)
    expect(page.locator(".pair")).to_have_count(len(pairs))
    expect(page.locator(".pair").first.locator(".name")).to_have_text(
        ["Hollow Knight", "Hollow Knight Copy"]
    )
    page.locator("#filter").fill("studio 90")  # a studio watching its own
    expect(page.locator(".pair")).to_have_count(sum("Studio 90" in p[3:] for p in pairs))
    page.locator(".pair img").first.click()  # through to the game on the main page
    expect(page.locator("#query .tile .name")).to_have_text("Hollow Knight")
    assert page.evaluate("document.body.dataset.pwned") is None
    assert not page.errors and not page.dialogs and not page.blocked


def test_long_name_wraps_and_own_image_has_no_store_link_in_chromium(odd_data, tmp_path):
    from playwright.sync_api import expect

    out = tmp_path / "out"
    export_site(odd_data, SETTING, out, k=1, with_map=False, progress=False)
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with local_page(width=400) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/#10")
            expect(page.locator("#query .tile .name")).to_have_text("W" * 400)
            page.locator("#search").fill("w" * 50)
            expect(page.locator("#results button")).to_have_count(1)
            # The 400-letter name wraps inside its tile: the page is no wider than the window.
            assert page.evaluate("document.documentElement.scrollWidth") <= 400
            assert page.locator("#query a").get_attribute("href").endswith("/app/10")
            page.locator("#grid .tile img").first.click()  # the own image, its only neighbour
            expect(page.locator("#query .tile .name")).to_have_text("holiday")
            assert page.locator("#query a").count() == 0
            assert page.locator("#query .tile").inner_text().endswith(str(OWN_ID_BASE + 7))
            assert not page.errors and not page.blocked
    finally:
        server.shutdown()
        server.server_close()


def _no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _tab_to(page, selector: str, key: str = "Tab", limit: int = 100) -> None:
    """Press ``key`` until the focused element matches ``selector`` (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached with {key}")


def _focused_name(page) -> str:
    return page.evaluate("document.activeElement.querySelector('.name').textContent")


@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")
@pytest.mark.parametrize("width", [1280, 375])
def test_keyboard_only_at_desktop_and_phone_width(served, site_data, width, tmp_path):
    from playwright.sync_api import expect

    with local_page(width=width, height=900) as page:
        page.goto(served)
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=20_000)
        # The landing page: pictures, no excluded game (none here), each a button.
        expect(page.locator("#grid .tile .open img")).to_have_count(len(NAMES))
        assert page.locator("#grid img").first.evaluate("i => getComputedStyle(i).objectFit") == (
            "contain"
        )
        _no_sideways_scroll(page)
        page.screenshot(path=tmp_path / f"landing-{width}.png", full_page=True)

        # A typo per word, counted like the notebooks' search; Enter opens the first match.
        _tab_to(page, "#search")
        page.keyboard.type("holow knigth")
        want = search_games(NAMES, "holow knigth")
        assert len(want) == 2
        expect(page.locator("#count")).to_contain_text("2 matches")
        names = page.locator("#results button").all_inner_texts()
        assert sorted(names) == sorted(f"{NAMES[i]} ({i})" for i in want)
        page.keyboard.press("ArrowDown")  # arrows move through the results
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.textContent") == names[1]
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")  # back in the search box
        assert page.evaluate("document.activeElement.id") == "search"
        page.keyboard.press("Enter")
        first = names[0].rsplit(" (", 1)[0]
        expect(page.locator("#query .tile .name")).to_have_text(first)
        app_id = next(a for a, n in NAMES.items() if n == first)
        neighbours = _expected(site_data, app_id)
        expect(page.locator("#grid .tile .name")).to_have_text(neighbours)
        assert _focused_name(page) == neighbours[0]  # the focus lands on the first look-alike
        _no_sideways_scroll(page)
        page.screenshot(path=tmp_path / f"game-{width}.png", full_page=True)

        page.keyboard.press("ArrowRight")  # the second look-alike, then open it
        assert _focused_name(page) == neighbours[1]
        page.keyboard.press("Enter")
        expect(page.locator("#query .tile .name")).to_have_text(neighbours[1])
        _no_sideways_scroll(page)

        _tab_to(page, "#back", key="Shift+Tab")  # and back
        page.keyboard.press("Enter")
        expect(page.locator("#query .tile .name")).to_have_text(first)
        assert page.evaluate("location.hash") == f"#{app_id}"

        # The map: Tab reaches it, an arrow points at a game (its picture and name), Enter opens.
        _tab_to(page, "#map")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#tip")).to_be_visible()
        pointed = page.locator("#tipname").inner_text()
        assert pointed in NAMES.values()
        page.screenshot(path=tmp_path / f"map-{width}.png", full_page=True)
        page.keyboard.press("Enter")
        expect(page.locator("#query .tile .name")).to_have_text(pointed)

        # Nothing found is said, not left blank.
        _tab_to(page, "#search")
        page.keyboard.type("qqqzzz")
        expect(page.locator("#count")).to_have_text('No game matches "qqqzzz"')
        expect(page.locator("#results button")).to_have_count(0)
        _no_sideways_scroll(page)
        assert not page.errors and not page.dialogs and not page.blocked
