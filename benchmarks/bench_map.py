"""Catalogue map: 2D layout of N synthetic 384-d vectors with several libraries, timed once each.

The vectors are clustered like real embeddings (planted groups plus noise, L2-normalised), so the
neighbour graphs these methods build are realistic in size. Each method gets the same PCA-50 input
that ``catalog_map.compute_layout`` feeds it (PCA time is reported separately), at 2 threads.

    python benchmarks/bench_map.py                  # N=30,000; ~25 min, scikit-learn most of it
    python benchmarks/bench_map.py --n 5000 --methods opentsne sklearn
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402


def synthetic(n: int, d: int, groups: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, d)).astype(np.float32)
    x = centres[rng.integers(0, groups, n)] + 1.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--methods", nargs="+", default=["opentsne", "umap", "sklearn"])
    args = ap.parse_args()

    from steam_dinov2.views.map import compute_layout, reduce_dims

    x = synthetic(args.n, args.d, groups=60)
    t = time.perf_counter()
    reduce_dims(x)
    pca = time.perf_counter() - t
    print(f"N={args.n} d={args.d}; PCA to 50 dims: {pca:.1f} s")
    results = {}
    for method in args.methods:
        t = time.perf_counter()
        xy = compute_layout(x, method=method, seed=0, threads=2)
        results[method] = time.perf_counter() - t
        assert xy.shape == (args.n, 2) and np.isfinite(xy).all()
        print(f"{method:<9} {results[method]:7.1f} s (PCA included)")
    for method, s in results.items():
        print(f"TARGET map layout {method} at N={args.n}: {s:.0f} s (target < 120 s)")


if __name__ == "__main__":
    main()
