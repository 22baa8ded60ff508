"""Look-alikes against the match stage, side by side: ``lookalikes._mutual_pairs`` (mutual top-k
from other studios, with deeper searches for games crowded by their own studio) vs ``match_all``
(plain top-k), on the same random L2-normalised vectors, in rotated order, ``--rounds`` times.

Studios: ``--crowded`` of the games belong to 50 studios whose banners sit close together (a
publisher's house style), so their nearest neighbours are their own and the look-alike search has
to go deeper; the others have a studio each. Prints the median ratio and the CPU's SIMD flags.

    python benchmarks/bench_lookalikes.py            # ~1-2 min on 2 cores
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from steam_dinov2.lookalikes import _mutual_pairs
from steam_dinov2.search import match_all


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    return " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags) or "-"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--crowded", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    crowded = int(args.n * args.crowded)
    house = rng.integers(0, 50, crowded)
    centres = rng.normal(size=(50, args.dim)).astype(np.float32) * 3
    vectors[:crowded] += centres[house]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = list(range(1, args.n + 1))
    studios = {
        i: frozenset([f"house {house[r]}" if r < crowded else f"own {r}"])
        for r, i in enumerate(ids)
    }
    emb = SimpleNamespace(ids=ids, vectors=vectors, setting="bench")
    rows = list(range(args.n))
    runs = {
        "match_all": lambda: match_all(emb, k=args.k, progress=False),
        "lookalikes": lambda: _mutual_pairs(emb, rows, studios, None, args.k),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs)[r % 2 :] + list(runs)[: r % 2]
        for name in order:
            start = time.perf_counter()
            out = runs[name]()
            times[name].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times["lookalikes"], times["match_all"])]
    print(
        f"# bench_lookalikes  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}  "
        f"cpu flags: {cpu_flags()}  N={args.n} D={args.dim} k={args.k} crowded={args.crowded}"
    )
    for name, ts in times.items():
        print(
            f"{name:<11} median {statistics.median(ts):.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})"
        )
    print(f"pairs found: {len(out)}")
    print(f"TARGET lookalikes/match_all: {statistics.median(ratios):.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
