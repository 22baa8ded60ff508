"""Evaluation time at N=30,000 from cached vectors, without re-embedding.

Two settings of N synthetic vectors (d=384, loose clusters, like ``bench_search.py``) are written
as embedding caches, with synthetic catalogue labels in ``metadata.parquet``: franchises of 2-6
apps for a fifth of the apps, developers and publishers drawn from skewed (Zipf-like) pools, and
up to 20 of 400 tags with weights per app. ``evaluate_settings`` then scores both settings on
franchise, developer, publisher and tags, with agreement between them (``copy`` embeds images
again, so it is left out here: its cost is the model's, see ``bench_embed.py``). Every figure gets
its 95% bootstrap interval over queries (1,000 resamples) inside ``evaluate_settings``; the paired
ranking of the settings (``rank_settings``, another bootstrap) is timed on its own. Timed cold
(empty ``evaluation/`` cache: one setting, then the second with agreement) and again warm (a rerun
that reuses everything).

Run: ``python benchmarks/bench_evaluate.py [--n 30000] [--d 384]`` (about a minute on 2 cores).
Ends with ``TARGET <name>: <measured> (target <goal>)`` lines.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--n", type=int, default=30_000)
ap.add_argument("--d", type=int, default=384)
ap.add_argument("--threads", type=int, default=2)
ARGS = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from steam_dinov2.core import layout  # noqa: E402
from steam_dinov2.embedding.cache import write_cache as _write_cache  # noqa: E402
from steam_dinov2.evaluation.evaluate import evaluate_settings, summarize  # noqa: E402
from steam_dinov2.evaluation.scoreboard import describe_best, rank_settings  # noqa: E402
from steam_dinov2.steam.metadata import write_metadata  # noqa: E402


def make_vectors(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), d), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)]
    x += 0.8 * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_metadata(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    franchises: list[list[str]] = [[] for _ in range(n)]
    start = 0
    while start < n // 5:
        size = int(rng.integers(2, 7))
        for a in range(start, min(start + size, n)):
            franchises[a] = [f"Franchise {start}"]
        start += size
    perm = rng.permutation(n)
    franchises = [franchises[i] for i in perm]
    dev = np.minimum(rng.zipf(1.6, n), 8000)
    pub = np.minimum(rng.zipf(1.4, n), 3000)
    tagids, weights = [], []
    for _ in range(n):
        t = rng.choice(400, size=int(rng.integers(5, 21)), replace=False, p=None)
        tagids.append((t + 1).tolist())
        weights.append(sorted(rng.integers(10, 5000, len(t)).astype(float).tolist())[::-1])
    return pd.DataFrame(
        {
            "app_id": np.arange(1, n + 1),
            "developers": [[f"Dev {x}"] for x in dev],
            "publishers": [[f"Pub {x}"] for x in pub],
            "franchises": franchises,
            "tagids": tagids,
            "tag_weights": weights,
            "updated_at": pd.Timestamp.now("UTC"),
        }
    )


def main() -> None:
    n, d = ARGS.n, ARGS.d
    with tempfile.TemporaryDirectory() as tmp:
        ids = [str(i) for i in range(1, n + 1)]
        for seed, name in enumerate(("synthetic_a__crop256__cls", "synthetic_b__full__gem")):
            folder = layout.embeddings_dir(tmp, name)
            folder.mkdir(parents=True)
            model, preset, pooling = name.split("__")
            meta = {"model": model, "weights": "pretrained", "preset": preset, "pooling": pooling}
            meta["dim"] = d
            _write_cache(folder, meta, ids, [[0, 0]] * n, make_vectors(n, d, seed), {})
        write_metadata(tmp, make_metadata(n))
        truths = ["franchise", "developer", "publisher", "tags"]
        names = layout.list_settings(tmp)
        t0 = time.perf_counter()
        evaluate_settings(tmp, names[:1], truths=truths, k=10, progress=False)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = evaluate_settings(tmp, truths=truths, k=10, progress=False)
        second = time.perf_counter() - t0
        t0 = time.perf_counter()
        summarize(result.per_query)
        with_intervals = time.perf_counter() - t0
        t0 = time.perf_counter()
        result.per_query.groupby(["setting", "truth", "metric"])[["value", "baseline"]].mean()
        means_only = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranked = rank_settings(result)
        ranking = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate_settings(tmp, truths=truths, k=10, progress=False)
        warm = time.perf_counter() - t0
    print(f"N={n}, d={d}, 2 settings, {ARGS.threads} threads, {os.cpu_count()} CPUs")
    print(result.summary.round(4).to_string(index=False))
    print(result.agreement.round(4).to_string(index=False))
    print(ranked.round(4).to_string())
    print(describe_best(ranked))
    print(
        f"first setting cold {one:.1f} s; second setting cold + agreement (first reused) "
        f"{second:.1f} s; both again, nothing changed {warm:.1f} s; paired ranking of the two {ranking:.1f} s"
    )
    print(
        f"summary of both settings: with 95% intervals {with_intervals:.2f} s, means only "
        f"{means_only:.2f} s (the same per-query table, side by side)"
    )
    print(
        f"TARGET evaluation at N={n}, one setting, 4 truths, intervals on, cold: {one:.1f} s "
        "(target < 60 s)"
    )
    print(f"TARGET rerun with nothing changed: {warm:.1f} s (target: a fraction of a cold run)")


if __name__ == "__main__":
    main()
