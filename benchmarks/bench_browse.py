"""Browser responsiveness on a 30,000-banner collection: how long a new query takes to show.

Builds a data folder with N ids (random unit vectors as the embedding cache, the all-pairs table
from ``match_all``, hard links to a few real 224x336 JPEGs as banners, a manifest of names), then
drives ``Browser`` from Python as the widgets would, timing each step.

    python benchmarks/bench_browse.py [--n 30000] [--dim 384] [--queries 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _build(data: Path, n: int, dim: int) -> None:
    from synthetic import make_banner

    from steam_dinov2.core import layout
    from steam_dinov2.embedding.cache import write_cache
    from steam_dinov2.search import match_all

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [str(10 * (i + 1)) for i in range(n)]
    setting = layout.setting_name("dinov2_vits14", "crop256", "cls")
    folder = layout.embeddings_dir(data, setting)
    meta = {
        "model": "dinov2_vits14",
        "weights": "pretrained",
        "preset": "crop256",
        "pooling": "cls",
    }
    write_cache(folder, {**meta, "dim": dim}, ids, [[0, 0]] * n, vectors, {})
    banners = layout.banners_dir(data)
    banners.mkdir(parents=True)
    seeds = []
    for s in range(8):
        seeds.append(data / f"seed{s}.jpg")
        make_banner(s).save(seeds[-1], quality=95)
    for i, app in enumerate(ids):
        os.link(seeds[i % 8], banners / f"{app}.jpg")
    words = ["Truck", "Portal", "Valley", "Knight", "Space", "Dungeon", "Racing", "Farm", "Hero"]
    names = [f"{words[i % 9]} {words[(i // 9) % 9]} Simulator {i}" for i in range(n)]
    pd.DataFrame({"app_id": [int(a) for a in ids], "name": names}).to_parquet(
        data / "manifest.parquet"
    )
    emb = __import__("steam_dinov2").load_embeddings(data, setting)
    match_all(emb, k=10, data=data, progress=False)


def _ms(samples) -> str:
    return f"median {statistics.median(samples) * 1e3:.1f} ms, max {max(samples) * 1e3:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    from steam_dinov2.browse.browser import Browser

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        _build(data, args.n, args.dim)
        print(
            f"built {args.n} banners, vectors and all-pairs table in {time.perf_counter() - t:.1f} s"
        )
        t = time.perf_counter()
        b = Browser(data, k=10)
        b.show("10")  # first query loads the cache and the neighbours table once
        print(f"open the browser and show the first game: {time.perf_counter() - t:.2f} s")
        rng = np.random.default_rng(1)
        picks = [str(10 * (int(i) + 1)) for i in rng.integers(0, args.n, args.queries)]
        shown, typed, clicked, live = [], [], [], []
        for app in picks:
            t = time.perf_counter()
            b.show(app)
            shown.append(time.perf_counter() - t)
            t = time.perf_counter()
            b.search.value = f"portal valley simulator {app[:-1]}"
            typed.append(time.perf_counter() - t)
            t = time.perf_counter()
            b.tiles[3].button.click()
            clicked.append(time.perf_counter() - t)
        b.k.value = 20  # beyond the precomputed 10: a live exact search per query
        for app in picks[:10]:
            t = time.perf_counter()
            b.show(app)
            live.append(time.perf_counter() - t)
        print(f"show a game (precomputed neighbours, 11 thumbnails): {_ms(shown)}")
        print(f"type a name (search over {args.n} names): {_ms(typed)}")
        print(f"click a neighbour: {_ms(clicked)}")
        print(f"show a game with k=20 (live faiss search): {_ms(live)}")
        worst = max(statistics.median(x) for x in (shown, typed, clicked, live))
        print(
            f"TARGET browser query latency at N={args.n}: {worst * 1e3:.0f} ms median, worst step (target < 250 ms)"
        )


if __name__ == "__main__":
    main()
