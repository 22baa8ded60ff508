import io
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import upload_to_browser
from PIL import Image
from steam_server import App, FakeSteam, bomb_png
from synthetic import make_banner

from steam_dinov2 import embed_folder, find_neighbors, load_embeddings, match_all
from steam_dinov2.browse.browser import Browser
from steam_dinov2.core.manifest import read_manifest, write_manifest
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.search import normalize_name, search_games
from steam_dinov2.views.compare import plot_comparison

matplotlib.use("Agg")
NAMES = {
    10: "Portal",
    20: "Portal 2",
    30: "Pokémon: Red!",
    40: "Euro Truck Simulator 2",
    50: "American Truck Simulator",
    60: "Half-Life",
    70: "Half-Life 2",
    80: "Stardew Valley",
    90: "Pokemon Red (copy)",
}


@pytest.fixture
def data(tmp_path, banner_dir, vits14):
    data = tmp_path / "data"
    banner_dir.rename(tmp_path / "moved")
    (data / "banners").parent.mkdir()
    (tmp_path / "moved").rename(data / "banners")
    names = {"app_id": [int(i) for i in NAMES], "name": list(NAMES.values()), "status": "ok"}
    pd.DataFrame(names).to_parquet(data / "manifest.parquet")
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0)
    match_all(emb, k=4, data=data)
    return data


def test_names_are_found_whatever_the_case_accents_or_punctuation():
    assert normalize_name("Pokémon: Red!") == "pokemon red"
    assert search_games(NAMES, "pokemon red") == [30, 90]
    assert search_games(NAMES, "POKÉMON") == [30, 90]
    assert search_games(NAMES, "truck sim") == [40, 50]  # shorter name first
    assert search_games(NAMES, "half life") == [60, 70]
    assert search_games(NAMES, "Portal") == [10, 20]
    assert search_games(NAMES, "80") == [80]
    assert search_games(NAMES, "portal", ids=[20, 60]) == [20]
    assert search_games(NAMES, "  ") == []


def _expected(data, query, k, exclude=()):
    emb = load_embeddings(data, "dinov2_vits14__crop256__cls__random")
    t = find_neighbors(emb, query, k=k, exclude=exclude)
    return list(t["id"]), t["score"].to_numpy()


def _check(browser, ids, scores):
    assert [i for i, _ in browser.shown] == ids
    np.testing.assert_allclose([s for _, s in browser.shown], scores, atol=1e-6)
    assert [t.app_id for t in browser.tiles] == ids


def test_search_choose_click_and_go_back(data):
    b = Browser(data, k=3)
    b.search.value = "pokemon"
    assert [v for _, v in b.choices.options] == [30, 90]
    b.choices.value = 30
    _check(b, *_expected(data, 30, 3))
    assert b.shown[0][0] == 90  # the re-encoded copy is the top match
    first = b.tiles[1].app_id
    b.tiles[1].button.click()
    assert b.query_tile.app_id == first
    _check(b, *_expected(data, first, 3))
    b.back.click()
    _check(b, *_expected(data, 30, 3))
    assert b.back.disabled and not b.forward.disabled
    b.forward.click()
    _check(b, *_expected(data, first, 3))
    b.k.value = 7  # more than the precomputed 4: a live search
    _check(b, *_expected(data, first, 7))
    b.random.click()
    assert b.query_tile.app_id in NAMES and len(b.shown) == 7


def test_typing_a_search_key_by_key_never_navigates(data):
    """Listing matches is not picking one, under ipywidgets 7 (Colab's: assigning options selects
    the first) and 8 alike; the first match can still be picked."""
    b = Browser(data, k=3)
    for n in range(1, len("half life") + 1):
        b.search.value = "half life"[:n]
        assert b.history == [] and b.choices.index is None
    assert [v for _, v in b.choices.options] == [60, 70]
    assert b.status.value == "2 matches: pick one"
    b.choices.value = 60  # the first match, picked
    assert b.history == [{"id": 60}] and b.query_tile.app_id == 60
    b.search.value = "portal"  # a new search keeps the game on screen until a pick
    assert b.history == [{"id": 60}] and b.query_tile.app_id == 60


def test_excluded_games_never_show(data):
    (data / "audit").mkdir()
    (data / "audit" / "exclusions.json").write_text(json.dumps({"90": ["near duplicate of 30"]}))
    b = Browser(data, k=3)
    b.show(30)
    _check(b, *_expected(data, 30, 3, exclude=[90]))
    assert 90 not in [i for i, _ in b.shown]
    b.show(90)  # an excluded game can still be the query
    assert len(b.shown) == 3
    everything = Browser(data, k=3, include_excluded=True)
    everything.show(30)
    _check(everything, *_expected(data, 30, 3))
    assert everything.shown[0][0] == 90  # the excluded copy is back, as the top match


def _tile_image(tile):
    return Image.open(io.BytesIO(tile.children[0].value))


def test_uploaded_and_fetched_banners_outside_the_collection(data, monkeypatch, vits14):
    gem = "dinov2_vits14__crop256__gem__random"
    embed_folder(data / "banners", data, setting=gem, model=vits14, num_workers=0)
    b = Browser(data, k=3, setting="dinov2_vits14__crop256__cls__random")
    buf = io.BytesIO()
    make_banner(5, size=(600, 900)).save(buf, format="PNG")
    upload_to_browser(b, "mine.png", buf.getvalue())
    assert b.shown[0][0] == 50 and b.shown[0][1] > 0.95
    assert b.query_tile.app_id is None
    shown = np.asarray(_tile_image(b.query_tile).convert("RGB"), dtype=int)
    assert shown.shape == (384, 256, 3)  # the upload itself, resized like a download
    small = np.asarray(Image.fromarray(shown.astype(np.uint8)).resize((224, 336)), dtype=int)
    assert np.abs(small - np.asarray(make_banner(5), dtype=int)).mean() < 8

    # Another setting embeds the same upload with its own model and pooling.
    b.setting.value = "dinov2_vits14__crop256__gem__random"
    emb = load_embeddings(data, "dinov2_vits14__crop256__gem__random")
    assert b.shown[0][0] == 50
    np.testing.assert_allclose(
        b.shown[0][1],
        emb.vectors[emb.ids.index(50)] @ b._vectors[b.history[-1]["image"], b.setting.value],
        atol=1e-5,
    )
    b.setting.value = "dinov2_vits14__crop256__cls__random"

    first = b.shown
    buf = io.BytesIO()
    make_banner(7, size=(600, 900)).save(buf, format="PNG")
    upload_to_browser(b, "mine.png", buf.getvalue())  # same name, other picture: another query
    assert b.shown[0][0] == 70 and b.shown != first
    upload_to_browser(b, "notes.png", b"not an image at all")
    assert "could not read the upload notes.png: not a decodable image" in b.status.value
    assert b.shown[0][0] == 70  # the previous query stays on screen

    with FakeSteam([App(777, name="Live Game"), App(778, name="No art", banner=None)]) as server:
        monkeypatch.setenv("STEAM_API_BASE", server.base)
        monkeypatch.setenv("STEAM_ASSETS_BASE", server.assets_base)
        b.outside.value = "777"  # what pressing Enter in the box does
        assert len(b.shown) == 3 and "Could not" not in b.status.value
        assert _tile_image(b.query_tile).size == (256, 384)  # DEFAULT_SIZE
        b.outside.value = "778"
        assert "Could not fetch app 778" in b.status.value
    b.outside.value = "20"  # in the collection: a plain query
    _check(b, *_expected(data, 20, 3))
    b.back.click()
    assert b.query_tile.app_id is None and len(b.shown) == 3  # back to the fetched game


def test_comparison_rows_compute_only_missing_settings(data):
    settings = [Setting(weights="random"), "dinov2_vits14__full__gem__random"]
    fig = plot_comparison(data, 40, settings, k=3)
    assert len(fig.axes) == 2 * 4
    assert fig.axes[0].get_ylabel() == "dinov2_vits14\ncrop256\ncls"
    assert fig.axes[4].get_ylabel() == "dinov2_vits14\nfull\ngem"
    assert fig.axes[0].get_title() == "Euro Truck Simula…\n(40)\nQUERY"  # the id kept whole
    ids, scores = _expected(data, 40, 3)
    assert fig.axes[1].get_title().endswith(f"{scores[0]:.3f}")
    assert (data / "embeddings" / "dinov2_vits14__full__gem__random" / "meta.json").is_file()
    with pytest.raises(ValueError, match="model:preset:pooling"):
        plot_comparison(data, 40, ["dinov2_vits14"])


def test_precomputed_matches_are_used_only_while_fresh(data, vits14, monkeypatch):
    import steam_dinov2.browse.browser as browse

    live = []
    real = browse.find_neighbors
    monkeypatch.setattr(
        browse, "find_neighbors", lambda *a, **k: live.append(a[1]) or real(*a, **k)
    )
    b = Browser(data, k=3)
    b.show(30)
    assert live == []  # a lookup in neighbors.parquet
    # A banner embedded since the match: the table is stale, so the browser searches live.
    make_banner(3).save(data / "banners" / "95.jpg", quality=70)
    write_manifest(
        data, pd.concat([read_manifest(data), pd.DataFrame({"app_id": [95], "status": "ok"})])
    )
    embed_folder(data / "banners", data, model=vits14, num_workers=0)
    b = Browser(data, k=3)
    b.show(30)
    assert live == [30] and 95 in [i for i, _ in b.shown]
    # Matched again, but the audit has since excluded a game: stale again.
    match_all(load_embeddings(data, "dinov2_vits14__crop256__cls__random"), k=4, data=data)
    Browser(data, k=3).show(30)
    assert live == [30]
    (data / "audit").mkdir()
    (data / "audit" / "exclusions.json").write_text(json.dumps({"95": ["near duplicate of 30"]}))
    b = Browser(data, k=3)
    b.show(30)
    assert live == [30, 30] and 95 not in [i for i, _ in b.shown]


def test_outside_queries_need_the_weights_file_of_the_setting(data, vits14, tmp_path):
    import torch

    weights, other = tmp_path / "w.pth", tmp_path / "other.pth"
    torch.save(vits14.state_dict(), weights)
    torch.save({k: v + 0.01 for k, v in vits14.state_dict().items()}, other)
    mine = Setting.create("dinov2_vits14", weights=weights)
    emb = embed_folder(data / "banners", data, setting=mine, num_workers=0)
    buf = io.BytesIO()
    make_banner(5, size=(600, 900)).save(buf, format="PNG")
    b = Browser(data, setting=emb.setting, k=3)  # a name: it carries no weights file
    upload_to_browser(b, "mine.png", buf.getvalue())
    assert "setting=Setting.create(MODEL, ..., weights=PATH)" in b.status.value
    assert b.shown == [] and b.history == []
    with pytest.raises(ValueError, match="has no embedding cache"):  # another file, another setting
        Browser(data, setting=Setting.create("dinov2_vits14", weights=other), k=3)
    b = Browser(data, setting=mine, k=3)
    upload_to_browser(b, "mine.png", buf.getvalue())
    assert b.shown[0][0] == 50 and b.shown[0][1] > 0.95


def test_opens_on_the_setting_given_else_the_latest_embedded(data, vits14):
    cls, gem = "dinov2_vits14__crop256__cls__random", "dinov2_vits14__full__gem__random"
    embed_folder(data / "banners", data, setting=gem, model=vits14, num_workers=0)
    # The comparison cell of the notebook embeds other settings after the one it computed.
    assert Browser(data).setting.value == gem  # the latest, not the alphabetically first
    b = Browser(data, k=3, setting=cls)
    assert b.settings == [cls, gem] and b.setting.value == cls
    b.show(30)
    _check(b, *_expected(data, 30, 3))
    with pytest.raises(ValueError, match="has no embedding cache.*cached: " + cls):
        Browser(data, setting="dinov2_vits14__crop224__cls__random")
    # A malformed name says so before anyone looks for its cache.
    with pytest.raises(ValueError, match="setting name 'nonsense' must look like model__"):
        Browser(data, setting="nonsense")
    with pytest.raises(ValueError, match="'random' \\(weights come before precision\\)"):
        Browser(data, setting="dinov2_vits14__crop256__cls__fp16__random")


def test_query_tile_has_no_similar_button_and_back_goes_back(data):
    b = Browser(data, k=3)
    b.show(30)
    assert not hasattr(b.query_tile, "button")
    assert all(hasattr(t, "button") for t in b.tiles)
    b.tiles[0].button.click()
    b.show(b.query_tile.app_id)  # the same game again: not a second history entry
    assert [e["id"] for e in b.history] == [30, b.query_tile.app_id]
    b.back.click()
    assert b.query_tile.app_id == 30 and b.back.disabled


def test_a_search_without_hits_says_so(data):
    b = Browser(data, k=3)
    b.search.value = "portal"
    assert len(b.choices.options) == 2 and "2 matches: pick one" in b.status.value
    b.search.value = "stardew"
    assert "1 match: pick one" in b.status.value
    b.search.value = "<i>zzqx</i>"
    assert b.choices.options == ()
    assert "no game matches" in b.status.value and "&lt;i&gt;zzqx&lt;/i&gt;" in b.status.value
    b.search.value = ""
    assert "no game matches" in b.status.value  # clearing the box changes nothing on screen


def test_upload_errors_name_the_file_and_the_reason(data):
    b = Browser(data, k=3)
    upload_to_browser(b, "<b>notes</b>.png", b"not an image at all")
    status = b.status.value
    assert "&lt;b&gt;notes&lt;/b&gt;.png" in status and "<b>notes" not in status
    assert "not a decodable image: unknown format" in status and "BytesIO" not in status
    buf = io.BytesIO()
    make_banner(5, size=(600, 900)).save(buf, format="PNG")
    upload_to_browser(b, "cut.png", buf.getvalue()[:200])  # a real PNG header, cut short
    assert "could not read the upload cut.png: not a decodable image" in b.status.value
    assert "BytesIO" not in b.status.value and b.history == []


def test_an_uploaded_decompression_bomb_is_a_reported_skip(data):
    b = Browser(data, k=3)
    upload_to_browser(b, "huge.png", bomb_png())  # 109 KB that would decode to 30000x30000 pixels
    status = b.status.value
    assert "could not read the upload huge.png: not a decodable image" in status
    assert "pixels" in status and b.history == []


def test_an_uploaded_phone_photo_is_turned_upright(data):
    # Stored sideways (landscape, red left, blue right) with EXIF orientation 6: upright it is
    # portrait with red on top, as exif_transpose shows it.
    img = Image.new("RGB", (600, 400), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 300, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    b = Browser(data, k=3)
    upload_to_browser(b, "phone.jpg", buf.getvalue())
    shown = _tile_image(b.query_tile).convert("RGB")
    assert shown.size == (256, 384)
    top, bottom = shown.getpixel((128, 10)), shown.getpixel((128, 374))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def _write_labels(data, makers: dict, tags: dict) -> None:
    from steam_dinov2.steam.metadata import write_metadata

    ids = list(makers)
    write_metadata(
        data,
        pd.DataFrame(
            {
                "app_id": ids,
                "developers": [[makers[i]] for i in ids],
                "publishers": [["Self"] if i == 80 else [makers[i]] for i in ids],
                "franchises": [[] for _ in ids],
                "tagids": [tags[i] for i in ids],
                "tag_weights": [[1.0] * len(tags[i]) for i in ids],
                "updated_at": pd.Timestamp.now("UTC"),
            }
        ),
    )


def test_other_studios_only_and_a_tag_filter_the_grid_not_the_query(data):
    # 90 copies 30 and has its developer; 60 is nobody's (no metadata row).
    makers = {i: f"Studio {i}" for i in NAMES if i != 60} | {90: "studio 30 "}
    tags = {i: [7] if i in (10, 20, 40) else [8] for i in NAMES}
    _write_labels(data, makers, tags)
    everyone, _ = _expected(data, 30, 8)
    b = Browser(data, k=3)
    b.choices.options = [("Pokémon: Red! (30)", 30)]  # Colab's ipywidgets 7 would select it
    b.choices.value = 30
    assert b.shown[0][0] == 90 and "Studio 30 · tag 8" in b.query_tile.children[1].value
    history = list(b.history)

    b.other_studios.value = True
    others = [i for i in everyone if i not in (30, 90, 60)]
    assert [i for i, _ in b.shown] == others[:3]
    assert "only other studios" in b.status.value
    b.tag.value = 7
    assert [i for i, _ in b.shown] == [i for i in others if i in (10, 20, 40)][:3]
    assert b.tag.options[0] == ("any tag", 0) and {v for _, v in b.tag.options} == {0, 7, 8}
    assert b.history == history and b.query_tile.app_id == 30  # filters never navigate

    b.tag.value = 0
    with pytest.raises(ValueError, match="no known developer"):  # the app shows the message
        b.show(60)
    assert b.query_tile.app_id == 30 and b.history == history
    b.other_studios.value = False
    b.show(60)
    assert b.query_tile.app_id == 60 and len(b.shown) == 3
