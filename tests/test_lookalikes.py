"""Look-alikes on the fake catalogue: near-copies by other studios are found, near-copies within one
studio or franchise are not, and a rerun after new apps appear reports only the new games' pairs."""

import shutil

import numpy as np
import pandas as pd
import pytest
from steam_server import App, FakeSteam

import steam_dinov2 as sd
from steam_dinov2.cli import main
from steam_dinov2.core import layout

SETTING = "dinov2_vits14__crop256__cls__random"
MODEL = ["--no-pretrained"]


def _app(a, copy_of=None, *, dev=None, pub=None, franchise=()):
    return App(
        a,
        name=f"Game {a}",
        copy_of=copy_of,
        developers=[dev or f"Dev {a}"],
        publishers=[pub or f"Pub {a}"],
        franchises=list(franchise),
    )


CATALOGUE = [
    *(_app(a) for a in range(110, 190, 10)),
    _app(200, 110, dev="Other Co", pub="Other Label"),  # another studio's near-copy of 110
    _app(300, 120, franchise=["Saga"]),  # a near-copy in 120's franchise ...
    _app(400, 130, dev="Dev 130", pub="Someone Else"),  # ... and one by 130's developer
]
CATALOGUE[1].franchises = ["saga "]  # 120: names are compared case- and space-blind


def _pairs(table) -> set[frozenset]:
    return {frozenset(p) for p in zip(table["id_a"], table["id_b"])}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A data folder downloaded from the fake catalogue and embedded, made once."""
    data = tmp_path_factory.mktemp("built") / "data"
    with FakeSteam([*CATALOGUE]) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in server.env().items():
            mp.setenv(name, value)
        assert main(["download", "--data", str(data), "--download-workers", "4"]) == 0
        assert main(["embed", "--data", str(data), *MODEL, "--workers", "0"]) == 0
    return data


@pytest.fixture
def catalogue(built, tmp_path, monkeypatch):
    """A copy of ``built`` and the fake catalogue's server, running."""
    data = tmp_path / "data"
    shutil.copytree(built, data)
    with FakeSteam([*CATALOGUE]) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield data, server


def test_lookalikes_reports_other_studios_copies_only(catalogue, capsys):
    data, _ = catalogue
    capsys.readouterr()
    assert main(["lookalikes", "--data", str(data), *MODEL, "--k", "1", "--explain", "1"]) == 0
    out = capsys.readouterr().out
    assert layout.lookalike_explained_path(data, SETTING, 110, 200).stat().st_size > 1000
    table = pd.read_parquet(layout.lookalikes_path(data, SETTING))
    pairs = _pairs(table)
    assert table.iloc[0][["id_a", "id_b"]].tolist() == [110, 200]  # the planted copy, first
    assert "Game 110 (110) [Dev 110 (Pub 110)]  ~  Game 200 (200) [Other Co (Other Label)]" in out
    assert frozenset((120, 300)) not in pairs and frozenset((130, 400)) not in pairs
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table["score"].is_monotonic_decreasing
    # Without the studio rule the in-house copies are each other's nearest: the rule, not the
    # banners, keeps them out.
    near = sd.match_all(sd.load_embeddings(data, SETTING), k=1, progress=False)
    top = dict(zip(near["query_id"], near["id"]))
    assert top[300] == 120 and top[400] == 130
    # A watched game: only pairs involving it, the watched game first.
    only = sd.find_lookalikes(data, SETTING, k=1, games=[200], write=False)
    assert only[["id_a", "id_b"]].values.tolist() == [[200, 110]]


def test_a_table_made_from_the_same_inputs_is_read_not_searched_again(catalogue, caplog):
    from steam_dinov2.core.files import read_parquet_key, write_keyed_parquet

    data, _ = catalogue
    first = sd.find_lookalikes(data, SETTING, k=1)
    path = layout.lookalikes_path(data, SETTING)
    key = read_parquet_key(path)
    # A score no search gives, under the same key: the next call returns it, so it read the file.
    planted = first.assign(score=np.float32(0.123))
    write_keyed_parquet(path, planted, key)
    pd.testing.assert_frame_equal(sd.find_lookalikes(data, SETTING, k=1), planted)
    # Another k, a watched game, or new metadata: searched again.
    assert (
        sd.find_lookalikes(data, SETTING, k=1, games=[200], write=False)["score"] != 0.123
    ).all()
    assert (sd.find_lookalikes(data, SETTING, k=2, write=False)["score"] != 0.123).all()
    meta = pd.read_parquet(layout.metadata_path(data))
    meta.loc[meta["app_id"] == 200, "developers"] = pd.Series(
        [["Dev 110"]], index=meta.index[meta["app_id"] == 200]
    )
    meta.to_parquet(layout.metadata_path(data))
    again = sd.find_lookalikes(data, SETTING, k=1, write=False)
    assert frozenset((110, 200)) not in _pairs(again) and (again["score"] != 0.123).all()
    # A stored table that names games outside the embeddings is never served.
    fresh = sd.find_lookalikes(data, SETTING, k=1)  # written under today's inputs
    write_keyed_parquet(path, fresh.assign(id_b=np.int64(999_999)), read_parquet_key(path))
    with caplog.at_level("WARNING"):
        sd.find_lookalikes(data, SETTING, k=1, write=False)
    assert "not in the embeddings" in caplog.text


def test_rerun_fetches_and_embeds_only_new_games_and_reports_their_lookalikes(catalogue, capsys):
    data, server = catalogue
    before = sd.read_manifest(data).set_index("app_id")["first_seen"]
    between = pd.Timestamp.now(tz="UTC")
    server.apps[500] = _app(500, 140, dev="Cloner", pub="Cloner")
    server.apps[510] = _app(510)
    server.reset_counts()
    capsys.readouterr()
    assert main(["download", "--data", str(data), "--download-workers", "4"]) == 0
    out = capsys.readouterr().out
    assert set(server.hits) == {500, 510}  # the old banners are not fetched again
    assert f"{SETTING}: 2 embedded, {len(CATALOGUE)} reused" in out
    assert "2 new games:" in out and "Game 500 (500) [Cloner]  ~  Game 140 (140)" in out
    after = sd.read_manifest(data).set_index("app_id")["first_seen"]
    assert after[before.index].equals(before)  # an old game keeps its first sighting
    assert (after[[500, 510]] >= between).all() and (before < between).all()

    since = ["--since", between.isoformat()]
    assert main(["lookalikes", "--data", str(data), "--setting", SETTING, "--k", "1", *since]) == 0
    table = sd.read_lookalikes(data, SETTING)
    assert (
        set(table["id_a"]) <= {500, 510} and [500, 140] in table[["id_a", "id_b"]].values.tolist()
    )
    everything = sd.find_lookalikes(data, SETTING, k=1, write=False)
    assert {frozenset((110, 200)), frozenset((140, 500))} <= _pairs(everything)
    assert sd.read_lookalikes(data, SETTING).equals(table)  # write=False left the file alone


def test_a_manifest_without_first_seen_reads_it_as_updated_at(tmp_path):
    from steam_dinov2.core.manifest import write_manifest

    when = pd.Timestamp("2024-05-01", tz="UTC")
    old = pd.DataFrame({"app_id": [10, 20], "status": "ok", "updated_at": [when, when]})
    old.to_parquet(tmp_path / "manifest.parquet")  # as written before the column existed
    assert sd.read_manifest(tmp_path)["first_seen"].eq(when).all()
    write_manifest(tmp_path, sd.read_manifest(tmp_path))
    assert pd.read_parquet(tmp_path / "manifest.parquet")["first_seen"].eq(when).all()


def test_bad_options_say_what_is_wrong(catalogue):
    data, _ = catalogue
    for kwargs, message in [
        ({"since": "last tuesday"}, "since must be a date"),
        ({"games": [999]}, "games not in the embeddings"),
        ({"k": 0}, "at least 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            sd.find_lookalikes(data, SETTING, **kwargs)


@pytest.mark.parametrize("results", [None, 100])  # 100: deeper searches in smaller blocks
def test_mutual_other_studio_pairs_match_numpy_brute_force(monkeypatch, results):
    from types import SimpleNamespace

    import steam_dinov2.lookalikes as lookalikes
    from steam_dinov2.lookalikes import _mutual_pairs

    if results:
        monkeypatch.setattr(lookalikes, "_RESULTS", results)

    rng = np.random.default_rng(0)
    n, big, k = 300, 200, 3
    # 200 games of one studio crowded together: their nearest 30 are their own studio's, so
    # finding 3 from other studios takes the deeper searches.
    vectors = rng.normal(size=(n, 32)).astype(np.float32)
    vectors[:big] += 4 * rng.normal(size=32).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = list(range(1000, 1000 + n))
    studios = {i: frozenset(["big"] if r < big else [f"own {r}"]) for r, i in enumerate(ids)}
    studios[ids[-1]] = frozenset(["big", "label"])  # a co-production shares the big studio
    emb = SimpleNamespace(ids=ids, vectors=vectors)

    cos = vectors @ vectors.T
    same = np.array([[bool(studios[a] & studios[b]) for b in ids] for a in ids])
    cos[same] = -np.inf  # itself included
    top = np.argsort(-cos, axis=1)[:, :k]
    want = {frozenset((ids[a], ids[b])): cos[a, b] for a in range(n) for b in top[a] if a in top[b]}
    table = _mutual_pairs(emb, list(range(n)), studios, None, k)
    got = {frozenset((a, b)): s for a, b, s in zip(table["id_a"], table["id_b"], table["score"])}
    assert got.keys() == want.keys() and any(ids.index(min(p)) < big for p in got)
    np.testing.assert_allclose([got[p] for p in want], list(want.values()), atol=1e-5)
