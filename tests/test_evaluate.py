"""evaluate on a catalogue the tests make: near-copy franchise, planted copies, brute force, reuse."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import make_banner
from PIL import Image, ImageEnhance

from steam_dinov2 import embed_folder, load_embeddings
from steam_dinov2.cli import main
from steam_dinov2.core import layout
from steam_dinov2.evaluation.evaluate import copy_model, evaluate_settings
from steam_dinov2.evaluation.metrics import random_average_precision_at_k
from steam_dinov2.evaluation.scoreboard import (
    RANDOM,
    describe_best,
    plot_agreement,
    plot_evaluation,
    rank_settings,
)
from steam_dinov2.steam.metadata import write_metadata

DISTINCT = list(range(101, 116))  # 15 unrelated banners
TWINS = list(range(201, 206))  # one franchise whose banners are near-copies of each other
SETTINGS = ["dinov2_vits14__crop256__cls__random", "dinov2_vits14__crop224__gem__random"]


def _twin(i: int) -> Image.Image:
    """Variation ``i`` of one base banner: a touch brighter, shifted by a pixel or two."""
    img = ImageEnhance.Brightness(make_banner(500)).enhance(1 + 0.02 * i)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, i % 3, 0, 1, i % 2))


def _metadata(franchise_of_101="Scattered") -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for a in DISTINCT + TWINS:
        tags = rng.choice(np.arange(1, 12), size=int(rng.integers(0, 5)), replace=False)
        rows.append(
            {
                "app_id": a,
                "developers": ["Dev T"] if a in TWINS else [f"Dev {a % 3}"] * (a != 115),
                "publishers": ["Pub X", "Pub Y"] if a % 5 == 0 else ["Pub X"] * (a % 7 != 0),
                "franchises": ["Twins"] if a in TWINS else ["Scattered"] * (a <= 105),
                "tagids": tags.tolist(),
                "tag_weights": rng.integers(1, 1000, len(tags)).tolist(),
                "updated_at": pd.Timestamp.now("UTC"),
            }
        )
    rows[0]["franchises"] = [franchise_of_101] if franchise_of_101 else []
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, vits14):
    data = tmp_path_factory.mktemp("eval") / "data"
    folder = layout.banners_dir(data)
    folder.mkdir(parents=True)
    for a in DISTINCT:
        make_banner(a).save(folder / f"{a}.jpg", quality=95)
    for i, a in enumerate(TWINS):
        _twin(i).save(folder / f"{a}.jpg", quality=90)
    write_metadata(data, _metadata())
    for setting in SETTINGS:
        embed_folder(folder, data, setting=setting, model=vits14, progress=False)
    assert layout.list_settings(data) == sorted(SETTINGS)
    return data


def test_a_near_copy_franchise_scores_far_above_its_baseline(catalogue):
    result = evaluate_settings(catalogue, SETTINGS[:1], truths=["franchise"])
    rows = result.per_query[result.per_query.metric == "map@10"].set_index("query_id")
    twins, scattered = rows.loc[TWINS], rows.loc[[101, 102, 103]]
    assert (twins.n_relevant == 4).all() and (scattered.n_relevant == 4).all()
    assert twins.value.mean() > 0.9 and twins.baseline.max() < 0.3
    assert twins.value.mean() > scattered.value.mean() + 0.5
    recall1 = result.per_query[result.per_query.metric == "recall@1"].set_index("query_id")
    assert (recall1.loc[TWINS, "value"] == 1).all()
    summary = result.summary.set_index("metric")
    assert summary.loc["map@10", "n_queries"] == 10  # Twins and Scattered, 5 each


def test_planted_copies_come_back_first(catalogue):
    ids = DISTINCT + TWINS
    result = evaluate_settings(
        catalogue,
        SETTINGS[:1],
        truths=["copy"],
        copies=10,
        variants=("jpeg30", "half"),
        device="cpu",
    )
    per = result.per_query
    assert set(per.truth) == {"copy:jpeg30", "copy:half"}
    sample = per[per.truth == "copy:jpeg30"].query_id.astype(int)
    assert len(set(sample)) == 10 and set(sample) <= set(ids)
    assert sorted(per[per.truth == "copy:half"].query_id.astype(int)) == sorted(sample)
    assert (per.first_rank == 1).all() and (per.value == 1).all()  # every sample, both kinds
    overall = result.summary.set_index("truth").loc["copy"]
    assert overall.value == 1 and overall.n_queries == 20
    assert overall.baseline == pytest.approx(1 / len(ids))


def _brute_force(data, setting, metadata, k):
    """Every figure recomputed with plain numpy loops from the cached vectors."""
    emb = load_embeddings(data, setting)
    v = emb.vectors.astype(np.float64)
    n, m, sims = len(emb.ids), len(emb.ids) - 1, v @ v.T
    meta = metadata.set_index(metadata.app_id.astype("int64"))
    tops = []
    for q in range(n):
        s = sims[q].copy()
        s[q] = -np.inf
        tops.append(np.lexsort((np.arange(n), -s))[: min(k, m)])
    out = {}
    for truth, col in (
        ("franchise", "franchises"),
        ("developer", "developers"),
        ("publisher", "publishers"),
    ):
        labels = [set(meta.loc[i, col]) for i in emb.ids]
        r1, rk, ap, b1, bk, bap = [], [], [], [], [], []
        for q in range(n):
            rel = [bool(labels[q] & labels[j]) for j in tops[q]]
            r = sum(bool(labels[q] & labels[j]) for j in range(n) if j != q)
            if r == 0:
                continue
            hits, total = 0, 0.0
            for i, x in enumerate(rel, 1):
                hits += x
                total += x * hits / i
            r1.append(rel[0])
            rk.append(any(rel))
            ap.append(total / min(k, r))
            b1.append(r / m)
            bk.append(1 - math.comb(m - r, min(k, m)) / math.comb(m, min(k, m)))
            bap.append(random_average_precision_at_k([r], m, k)[0])  # checked in test_metrics
        out[(truth, "recall@1")] = (np.mean(r1), np.mean(b1), len(r1))
        out[(truth, f"recall@{k}")] = (np.mean(rk), np.mean(bk), len(r1))
        out[(truth, f"map@{k}")] = (np.mean(ap), np.mean(bap), len(r1))
    weights = [dict(zip(meta.loc[i, "tagids"], meta.loc[i, "tag_weights"])) for i in emb.ids]

    def cos(a, b):
        dot = sum(w * b.get(t, 0) for t, w in a.items())
        norm = math.sqrt(sum(w * w for w in a.values()) * sum(w * w for w in b.values()))
        return dot / norm if norm else 0.0

    nd, bnd = [], []
    disc = [1 / math.log2(i + 2) for i in range(k)]
    for q in range(n):
        gains = [cos(weights[q], weights[j]) for j in range(n)]
        others = sorted((g for j, g in enumerate(gains) if j != q), reverse=True)
        idcg = sum(g * d for g, d in zip(others, disc))
        if idcg <= 0:
            continue
        nd.append(sum(gains[j] * d for j, d in zip(tops[q], disc)) / idcg)
        bnd.append(np.mean(others) * sum(disc[: min(k, m)]) / idcg)
    out[("tags", f"ndcg@{k}")] = (np.mean(nd), np.mean(bnd), len(nd))
    return out, {emb.ids[q]: {emb.ids[j] for j in tops[q]} for q in range(n)}


def test_summary_matches_brute_force_and_reruns_reuse(catalogue):
    k, truths = 4, ["franchise", "developer", "publisher", "tags"]
    result = evaluate_settings(catalogue, truths=truths, k=k)
    summary = pd.read_parquet(layout.evaluation_summary_path(catalogue))
    assert list(summary.columns) == ["setting", "truth", "metric", "value", "baseline", "n_queries"]
    pd.testing.assert_frame_equal(summary, result.summary)
    metadata = _metadata()
    tops = {}
    for setting in SETTINGS:
        expected, tops[setting] = _brute_force(catalogue, setting, metadata, k)
        got = summary[summary.setting == setting].set_index(["truth", "metric"])
        assert len(got) == len(expected) == 10
        for key, (value, baseline, count) in expected.items():
            assert got.loc[key, "value"] == pytest.approx(value, abs=1e-6), key
            assert got.loc[key, "baseline"] == pytest.approx(baseline, abs=1e-6), (
                key
            )  # float32 tags
            assert got.loc[key, "n_queries"] == count, key
    agreement = pd.read_parquet(layout.evaluation_agreement_path(catalogue))
    a, b = SETTINGS
    jaccard = np.mean(
        [len(tops[a][i] & tops[b][i]) / len(tops[a][i] | tops[b][i]) for i in tops[a]]
    )
    assert agreement.loc[0, ["setting_a", "setting_b"]].tolist() == sorted(SETTINGS)
    assert agreement.loc[0, "jaccard@4"] == pytest.approx(jaccard)
    per_query = pd.read_parquet(layout.evaluation_queries_path(catalogue))
    assert len(per_query) == sum(
        c for s in SETTINGS for *_, c in _brute_force(catalogue, s, metadata, k)[0].values()
    )

    # Rerun: nothing changed, nothing recomputed; new franchise labels: only that truth again.
    cache = layout.evaluation_cache_path(catalogue, SETTINGS[0], "franchise").parent
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    evaluate_settings(catalogue, truths=truths, k=k)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    write_metadata(catalogue, _metadata(franchise_of_101=None))
    again = evaluate_settings(catalogue, truths=truths, k=k)
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert [n for n in before if after[n] != before[n]] == ["franchise.parquet"]
    franchise = again.summary[
        (again.summary.truth == "franchise") & (again.summary.metric == "map@4")
    ]
    assert (franchise.n_queries == 9).all()  # 101 left "Scattered"
    write_metadata(catalogue, _metadata())


def test_ranked_table_and_figures(catalogue, capsys):
    result = evaluate_settings(catalogue, truths=["developer", "tags"], k=3)
    ranked = rank_settings(result.summary)
    assert list(ranked.columns) == ["developer map@3", "tags ndcg@3", "lift"]
    assert ranked["lift"].is_monotonic_decreasing and set(ranked.index) == {*SETTINGS, RANDOM}
    baselines = result.summary.groupby("metric").baseline.mean()
    assert ranked.loc[RANDOM, "tags ndcg@3"] == pytest.approx(baselines["ndcg@3"])
    assert ranked.loc[RANDOM, "lift"] == 0 and baselines["map@3"] > 0
    primary = result.summary[result.summary.metric.isin(["map@3", "ndcg@3"])]
    lift = (primary.value - primary.baseline) / (1 - primary.baseline)
    best = lift.groupby(primary.setting).mean().idxmax()
    assert ranked.loc[best, "lift"] == pytest.approx(lift.groupby(primary.setting).mean().max())
    assert f"Best setting by the numbers: {best}" in describe_best(ranked)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    argv = ["evaluate", "--data", str(catalogue), "--truth", "developer", "tags", "--k", "3"]
    assert main(argv) == 0  # the command line prints the same ranking
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == [
        s if s != RANDOM else "(random" for s in ranked.index
    ]
    bars = plot_evaluation(result.summary)
    assert sum(ax.has_data() for ax in bars.axes) == 2
    odd = result.agreement.assign(setting_a="a $x$ b")  # a name from the data folder
    FigureCanvasAgg(plot_agreement(odd)).draw()
    FigureCanvasAgg(bars).draw()


def test_copy_model_only_from_the_registry(catalogue, tmp_path):
    reason = copy_model({"model": "hub:evil/repo:entry", "weights": "pretrained"})[1]
    assert "not a registry name" in reason
    assert "weights file" in copy_model({"model": "dinov2_vits14", "weights": "w-0123"})[1]
    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    folder = layout.embeddings_dir(data, SETTINGS[0])
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(meta | {"model": "hub:/tmp/evil:entry"}))
    result = evaluate_settings(data, SETTINGS[:1], truths=["copy", "developer"], copies=3)
    assert "not a registry name" in result.skipped[f"{SETTINGS[0]}/copy"]
    assert set(result.summary.truth) == {"developer"}  # the rest carries on


def test_without_metadata_and_bad_input(catalogue, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    layout.metadata_path(data).unlink()
    shutil.rmtree(layout.evaluation_dir(data), ignore_errors=True)
    result = evaluate_settings(data, truths=["franchise", "tags"])
    assert result.summary.empty and len(result.skipped) == 4
    assert all("run `python -m steam_dinov2 metadata" in r for r in result.skipped.values())
    assert layout.evaluation_summary_path(data).is_file()
    with pytest.raises(ValueError, match="no cached setting 'nope'.*cached: dinov2_vits14"):
        evaluate_settings(data, ["nope"])
    with pytest.raises(ValueError, match="unknown truth or variant 'colour'"):
        evaluate_settings(data, truths=["colour"])
    assert main(["evaluate", "--data", str(data), "--k", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --k is the number of neighbours") and err.count("\n") == 1
    assert main(["evaluate", "--data", str(data), "--truth", "developer", "--copies", "0"]) == 0
    out = capsys.readouterr().out
    assert "skipped dinov2_vits14__crop256__cls__random/developer: no metadata" in out


def test_own_images_skip_the_label_truths_saying_only_copy_applies(tmp_path, vits14, capsys):
    from steam_dinov2.collection.folder import import_folder

    src, data = tmp_path / "photos", tmp_path / "data"
    src.mkdir()
    for i in range(4):
        make_banner(300 + i).save(src / f"{i}.png")
    import_folder(src, data, progress=False)
    embed_folder(layout.banners_dir(data), data, setting=SETTINGS[0], model=vits14, progress=False)
    # `metadata` fetched 0 apps (own images have no store page): it wrote no table.
    argv = ["evaluate", "--data", str(data), "--truth", "franchise", "tags", "copy"]
    assert main([*argv, "--copies", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for truth in ("franchise", "tags"):
        assert f"skipped {SETTINGS[0]}/{truth}: the collection holds no Steam apps (own " in out
    assert (
        "only the copy truth applies" in out and "run `python -m steam_dinov2 metadata" not in out
    )
    summary = pd.read_parquet(layout.evaluation_summary_path(data))
    assert "copy" in set(summary.truth) and summary.truth.str.startswith("copy").all()


def test_metadata_without_labels_for_the_collection_says_so(catalogue, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    others = _metadata().assign(app_id=lambda df: df.app_id + 10_000)  # other apps only
    write_metadata(data, others)
    result = evaluate_settings(data, SETTINGS[:1], truths=["developer", "tags"], copies=0)
    n = len(DISTINCT + TWINS)
    for truth in ("developer", "tags"):
        reason = result.skipped[f"{SETTINGS[0]}/{truth}"]
        assert reason == (
            f"metadata has no row for the collection's {n} Steam apps: "
            "run `python -m steam_dinov2 metadata --data DATA`"
        )
    bare = _metadata().assign(developers=[[]] * n, publishers=[[]] * n, franchises=[[]] * n)
    write_metadata(data, bare.assign(tagids=[[]] * n, tag_weights=[[]] * n))
    result = evaluate_settings(data, SETTINGS[:1], truths=["developer", "tags"], copies=0)
    assert result.summary.empty and len(result.skipped) == 2
    assert all(
        r.startswith("metadata holds no labels for the collection's Steam apps (the store lists")
        for r in result.skipped.values()
    )


def test_a_tampered_cache_is_ranked_again(catalogue, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    first = evaluate_settings(data, SETTINGS[:1], truths=["developer"], k=3)
    path = layout.evaluation_cache_path(data, SETTINGS[0], "neighbors")
    table = pq.read_table(path)
    bad = pa.array([[10**9, -5, 2]] * table.num_rows, pa.list_(pa.int64()))
    pq.write_table(
        table.set_column(1, "neighbors", bad).replace_schema_metadata(table.schema.metadata), path
    )
    (layout.evaluation_cache_path(data, SETTINGS[0], "developer")).unlink()
    again = evaluate_settings(data, SETTINGS[:1], truths=["developer"], k=3)
    pd.testing.assert_frame_equal(again.summary, first.summary)


def test_a_swap_in_the_collection_is_scored_again(catalogue, tmp_path):
    """One banner leaves the collection and another comes back: the same count of rows from the
    same cache, but other rows, so no cached neighbour list may be reused."""
    from steam_dinov2.core.manifest import write_manifest

    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    ids = DISTINCT + TWINS

    def queries_with(error: int) -> set[int]:
        status = ["error" if a == error else "ok" for a in ids]
        write_manifest(data, pd.DataFrame({"app_id": ids, "name": "x", "status": status}))
        result = evaluate_settings(data, SETTINGS[:1], truths=["developer"], copies=0)
        return set(result.per_query["query_id"])

    assert 201 not in queries_with(201)
    second = queries_with(202)
    assert 201 in second and 202 not in second
