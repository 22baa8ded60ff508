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
from steam_dinov2.evaluation.evaluate import Evaluation, copy_model, evaluate_settings, summarize
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
    recall1 = result.per_query[result.per_query.metric == "hit_rate@1"].set_index("query_id")
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
    """Every baseline and query count recomputed with plain numpy loops from the cached vectors
    (the values themselves are checked against ranx and scikit-learn below)."""
    emb = load_embeddings(data, setting)
    v = emb.vectors.astype(np.float64)
    n, m, sims = len(emb.ids), len(emb.ids) - 1, v @ v.T
    meta = metadata.set_index(metadata.app_id.astype("int64"))
    tops = []
    for q in range(n):
        s = sims[q].copy()
        s[q] = -np.inf
        tops.append(np.lexsort((np.arange(n), -s)))  # every other row, best first
    disc = [1 / math.log2(i + 2) for i in range(k)]
    out = {}
    for truth, col in (
        ("franchise", "franchises"),
        ("developer", "developers"),
        ("publisher", "publishers"),
    ):
        labels = [set(meta.loc[i, col]) for i in emb.ids]
        b1, bk, brec, bap, bnd = [], [], [], [], []
        for q in range(n):
            r = sum(bool(labels[q] & labels[j]) for j in range(n) if j != q)
            if r == 0:
                continue
            b1.append(r / m)
            bk.append(1 - math.comb(m - r, min(k, m)) / math.comb(m, min(k, m)))
            brec.append(min(k, m) / m)
            bap.append(random_average_precision_at_k([r], m, k)[0])  # checked in test_metrics
            bnd.append(r / m * sum(disc[: min(k, m)]) / sum(disc[: min(k, r)]))
        count = len(b1)
        out[(truth, "hit_rate@1")] = (np.mean(b1), count)
        out[(truth, f"hit_rate@{k}")] = (np.mean(bk), count)
        out[(truth, f"recall@{k}")] = (np.mean(brec), count)
        out[(truth, f"map@{k}")] = (np.mean(bap), count)
        out[(truth, f"ndcg@{k}")] = (np.mean(bnd), count)
    gains = _tag_gains(meta, emb.ids)
    bnd = []
    for q in range(n):
        others = sorted((g for j, g in enumerate(gains[q]) if j != q), reverse=True)
        idcg = sum(g * d for g, d in zip(others, disc))
        if idcg > 0:
            bnd.append(np.mean(others) * sum(disc[: min(k, m)]) / idcg)
    out[("tags", f"ndcg@{k}")] = (np.mean(bnd), len(bnd))
    return out, {emb.ids[q]: [emb.ids[j] for j in tops[q]] for q in range(n)}


def _tag_gains(meta: pd.DataFrame, ids) -> np.ndarray:
    """(N, N) cosine of the apps' tag-weight vectors, by plain loops."""
    weights = [dict(zip(meta.loc[i, "tagids"], meta.loc[i, "tag_weights"])) for i in ids]

    def cos(a, b):
        dot = sum(w * b.get(t, 0) for t, w in a.items())
        norm = math.sqrt(sum(w * w for w in a.values()) * sum(w * w for w in b.values()))
        return dot / norm if norm else 0.0

    return np.array([[cos(a, b) for b in weights] for a in weights])


def test_every_figure_equals_ranx_and_scikit_learn_per_query(catalogue):
    """hit_rate, recall, map, ndcg of the label truths equal ranx's per query (relevant =
    shares a label; the run is a plain numpy ranking); the tags' graded nDCG equals
    scikit-learn's ``ndcg_score`` over every candidate."""
    import warnings

    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate
    from sklearn.metrics import ndcg_score

    k = 4
    truths = ["franchise", "developer", "publisher", "tags"]
    per = evaluate_settings(catalogue, SETTINGS[:1], truths=truths, k=k, copies=0).per_query
    metadata = _metadata().set_index("app_id")
    _, ranking = _brute_force(catalogue, SETTINGS[0], _metadata(), k)
    ids = list(ranking)
    names = ["hit_rate@1", f"hit_rate@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
    for truth, col in (
        ("franchise", "franchises"),
        ("developer", "developers"),
        ("publisher", "publishers"),
    ):
        labels = {i: set(metadata.loc[i, col]) for i in ids}
        qrels = {str(q): {str(j): 1 for j in ids if j != q and labels[q] & labels[j]} for q in ids}
        qrels = {q: rel for q, rel in qrels.items() if rel}
        run = {q: {str(j): float(k - r) for r, j in enumerate(ranking[int(q)][:k])} for q in qrels}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's type-safety chatter
            expected = ranx_evaluate(Qrels(qrels), Run(run), names, return_mean=False)
        mine = per[per.truth == truth].pivot(index="query_id", columns="metric", values="value")
        order = sorted(qrels)  # ranx answers in its sorted order of query ids
        assert sorted(mine.index) == sorted(int(q) for q in qrels)
        for name in names:
            got = mine.loc[[int(q) for q in order], name].to_numpy()
            np.testing.assert_allclose(got, expected[name], atol=1e-9, err_msg=f"{truth} {name}")
    gains = _tag_gains(metadata, ids)
    tags = per[per.truth == "tags"].set_index("query_id")["value"]
    checked = 0
    for q, i in enumerate(ids):
        others = [j for j in range(len(ids)) if j != q]
        if gains[q, others].max() <= 0:
            assert i not in tags.index  # no game shares a tag: not a query
            continue
        position = {x: p for p, x in enumerate(ranking[i])}
        score = [-position[ids[j]] for j in others]  # the ranking, without ties
        want = ndcg_score([gains[q, others]], [score], k=k)
        assert tags[i] == pytest.approx(want, abs=1e-6)  # float32 tag vectors
        checked += 1
    assert checked == len(tags) > 10


def test_summary_matches_brute_force_and_reruns_reuse(catalogue):
    k, truths = 4, ["franchise", "developer", "publisher", "tags"]
    result = evaluate_settings(catalogue, truths=truths, k=k)
    summary = pd.read_parquet(layout.evaluation_summary_path(catalogue))
    assert list(summary.columns) == [
        *["setting", "truth", "metric", "value", "ci_low", "ci_high", "baseline", "n_queries"],
        *["exclusions", "n_excluded"],
    ]
    assert (summary.exclusions == "applied").all() and (summary.n_excluded == 0).all()
    pd.testing.assert_frame_equal(summary, result.summary)
    metadata = _metadata()
    tops = {}
    for setting in SETTINGS:
        expected, ranking = _brute_force(catalogue, setting, metadata, k)
        tops[setting] = {q: set(r[:k]) for q, r in ranking.items()}
        got = summary[summary.setting == setting].set_index(["truth", "metric"])
        assert len(got) == len(expected) == 16
        for key, (baseline, count) in expected.items():
            assert got.loc[key, "baseline"] == pytest.approx(baseline, abs=1e-6), key
            assert got.loc[key, "n_queries"] == count, key
        assert (got.ci_low <= got.value).all() and (got.value <= got.ci_high).all()
        assert (got.ci_low < got.ci_high).any()
    agreement = pd.read_parquet(layout.evaluation_agreement_path(catalogue))
    a, b = SETTINGS
    jaccard = np.mean(
        [len(tops[a][i] & tops[b][i]) / len(tops[a][i] | tops[b][i]) for i in tops[a]]
    )
    assert agreement.loc[0, ["setting_a", "setting_b"]].tolist() == sorted(SETTINGS)
    assert agreement.loc[0, "jaccard@4"] == pytest.approx(jaccard)
    per_query = pd.read_parquet(layout.evaluation_queries_path(catalogue))
    assert len(per_query) == sum(
        c for s in SETTINGS for _, c in _brute_force(catalogue, s, metadata, k)[0].values()
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


def _made_up(values: dict, n: int, seed: int = 0, baseline: float = 0.1) -> Evaluation:
    """An evaluation of ``n`` developer queries whose per-query ndcg@10 is ``values[setting]``
    (an array, or a number) plus noise, with ``baseline``."""
    rng = np.random.default_rng(seed)
    parts = []
    for setting, v in values.items():
        v = np.clip(np.broadcast_to(v, (n,)) + rng.normal(0, 0.2, n), 0, 1)
        parts.append(
            pd.DataFrame(
                {
                    **{"setting": setting, "truth": "developer", "query_id": np.arange(n)},
                    **{"n_relevant": 3, "first_rank": 1, "metric": "ndcg@10"},
                    **{"value": v, "baseline": baseline},
                }
            )
        )
    per_query = pd.concat(parts, ignore_index=True)
    return Evaluation(summarize(per_query), pd.DataFrame(), per_query, {})


def test_a_best_setting_is_named_only_when_the_paired_interval_says_so():
    base = np.random.default_rng(9).random(300) * 0.6
    clear = rank_settings(_made_up({"a": base + 0.3, "b": base, "c": base + 0.02}, 300))
    assert list(clear.index[:3]) == ["a", "c", "b"] and clear.loc["a", "lift_low"] > 0
    text = describe_best(clear)
    assert text.startswith("Best setting: a (mean lift over random 0.") and "ahead of c by" in text
    # c leads b by about 0.02 on the same 300 queries, while their own intervals overlap widely:
    # paired, not told apart? The per-query noise (sd 0.2) decides; what matters is agreement
    # between the interval and the sentence.
    close = rank_settings(_made_up({"b": base, "c": base + 0.002}, 300))
    assert close.loc[close.index[1], "tied"] and close.loc[close.index[1], "diff_low"] < 0
    assert describe_best(close).startswith("No single best setting: c, b are tied")
    flat = describe_best(rank_settings(_made_up({"a": 0.5, "b": 0.5}, 300, baseline=0.5)))
    assert "a random ranking" in flat  # lifts around 0: said so, whichever leads
    few = rank_settings(_made_up({"a": base[:8] + 0.3, "b": base[:8]}, 8))
    assert few.attrs["too_few"] == {"developer": 8} and few["lift"].drop(RANDOM).isna().all()
    assert describe_best(few) == (
        "No truth has enough queries to rank settings. Too few queries to tell (under 30): "
        "developer (8), shown but not ranked."
    )


def test_ranked_table_cli_and_figures(catalogue, capsys):
    result = evaluate_settings(catalogue, truths=["developer", "tags", "copy"], k=3, copies=3)
    ranked = rank_settings(result, min_queries=5)
    assert list(ranked.columns[:3]) == ["developer ndcg@3", "tags ndcg@3", "copy hit_rate@1"]
    assert ranked["lift"].is_monotonic_decreasing and set(ranked.index) == {*SETTINGS, RANDOM}
    assert ranked.loc[RANDOM, "lift"] == 0
    for s in SETTINGS:
        assert ranked.loc[s, "lift_low"] <= ranked.loc[s, "lift"] <= ranked.loc[s, "lift_high"]
    # The fake catalogue has 20 apps: under the default 30 queries, nothing is ranked.
    assert "Too few queries to tell" in describe_best(rank_settings(result))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    argv = ["evaluate", "--data", str(catalogue), "--truth", "developer", "tags", "--k", "3"]
    assert main([*argv, "--copies", "0"]) == 0  # the command line prints every figure
    out = capsys.readouterr().out
    assert "audit exclusions applied: 0 excluded" in out
    table = out.split("each figure: mean over queries [95% bootstrap interval]\n")[1]
    header = table.splitlines()[0].split()
    assert header == ["hit_rate@1", "hit_rate@3", "recall@3", "map@3", "ndcg@3", "queries"]
    summary = result.summary.set_index(["setting", "truth", "metric"])
    row = summary.loc[(SETTINGS[0], "developer", "recall@3")]
    assert f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]" in out
    assert "too few" in out and "No truth has enough queries to rank settings." in out
    bars = plot_evaluation(result.summary, order=list(ranked.index))
    assert sum(ax.has_data() for ax in bars.axes) == 4  # developer, tags, copy, copy by variant
    FigureCanvasAgg(bars).draw()
    bars.savefig("/tmp/honest_evaluation.png", dpi=80)
    odd = result.agreement.assign(setting_a="a $x$ b")  # a name from the data folder
    FigureCanvasAgg(plot_agreement(odd)).draw()
    plot_agreement(result.agreement).savefig("/tmp/honest_agreement.png", dpi=80)


def test_the_audits_exclusions_apply_unless_included(catalogue, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    exclusions = {"202": ["near_duplicate_of:201"], "203": ["dark"]}
    layout.exclusions_path(data).parent.mkdir(parents=True, exist_ok=True)
    layout.exclusions_path(data).write_text(json.dumps(exclusions))
    shown = evaluate_settings(data, SETTINGS[:1], truths=["franchise"], copies=0)
    per = shown.per_query
    assert not {202, 203} & set(per.query_id) and set(shown.exclusions) == {202, 203}
    twins = per[(per.metric == "hit_rate@1") & per.query_id.isin(TWINS)]
    assert (twins.n_relevant == 2).all()  # 201, 204, 205: two others each, not four
    assert (shown.summary.exclusions == "applied").all() and (shown.summary.n_excluded == 2).all()
    every = evaluate_settings(
        data, SETTINGS[:1], truths=["franchise"], copies=0, include_excluded=True
    )
    assert {202, 203} <= set(every.per_query.query_id) and not every.exclusions
    assert (every.summary.exclusions == "included").all() and (every.summary.n_excluded == 0).all()
    on_disk = pd.read_parquet(layout.evaluation_summary_path(data))
    assert (on_disk.exclusions == "included").all()


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
    capsys.readouterr()  # the progress bars so far
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


def test_a_forged_piece_under_the_right_key_is_scored_again(catalogue, tmp_path, caplog):
    """A cached piece is reused only when its rows hold up, whatever key it carries."""
    import logging

    from steam_dinov2.core import files

    data = tmp_path / "data"
    shutil.copytree(catalogue, data)
    honest = evaluate_settings(data, SETTINGS[:1], truths=["developer"], copies=0).per_query
    path = layout.evaluation_cache_path(data, SETTINGS[0], "developer")
    piece = pd.read_parquet(path)
    for forged in (
        piece.assign(value=piece["value"] * 5),
        piece.assign(query_id=piece.query_id + 1),
    ):
        files.write_keyed_parquet(
            path,
            forged,
            files.read_parquet_key(path, name=b"steam_dinov2.evaluation_key"),
            name=b"steam_dinov2.evaluation_key",
        )
        with caplog.at_level(logging.WARNING):
            again = evaluate_settings(data, SETTINGS[:1], truths=["developer"], copies=0)
        assert "is damaged" in caplog.text
        pd.testing.assert_frame_equal(again.per_query, honest)
        caplog.clear()
