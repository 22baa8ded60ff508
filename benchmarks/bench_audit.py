"""Audit throughput on generated banners, and where the time goes.

    python benchmarks/bench_audit.py [--n 2000] [--embed-n 200]

CleanVision over N generated 224x336 JPEGs with 1 and 2 worker processes (all default issue
types), split into its phases: per-image scores (decode + properties), hashing for duplicates,
and the pandas aggregation afterwards. Then the embedding step of the audit: model forward
(dinov2_vits14, random weights; shared with `embed`, whose cache the audit reuses) and the
duplicate groups + nearest cosine on cached vectors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from synthetic import make_banner

from steam_dinov2.audit import audit
from steam_dinov2.core import layout

W, H = 224, 336


def make_banners(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_banner(seed * n + i, (W, H)).save(folder / f"{1000 + i}.jpg", quality=95)


class Timer:
    """Wall time spent inside chosen methods, summed per label."""

    def __init__(self):
        self.spent: dict[str, float] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        real = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)


def bench_cleanvision(data: Path, n: int) -> dict[int, float]:
    from cleanvision.issue_managers.duplicate_issue_manager import DuplicateIssueManager as D
    from cleanvision.issue_managers.image_property_issue_manager import (
        ImagePropertyIssueManager as P,
    )

    timer = Timer()
    timer.wrap(P, "find_issues", "properties (total)")
    timer.wrap(P, "_aggregate", "properties: results -> DataFrame")
    timer.wrap(P, "update_issues", "properties: scores + flags")
    timer.wrap(P, "update_info", "properties: info/statistics")
    timer.wrap(D, "find_issues", "duplicates (total)")
    timer.wrap(D, "_update_issues", "duplicates: score loop")
    rates = {}
    for jobs in (1, 2):
        timer.spent.clear()
        t = time.perf_counter()
        result = audit.audit_banners(
            data, near_dup_threshold=None, run=audit.AuditRun(n_jobs=jobs, progress=False)
        )
        wall = time.perf_counter() - t
        rates[jobs] = n / wall
        assert not result.reused and len(result.issues) == n
        print(f"\nCleanVision, n_jobs={jobs}: {wall:.1f} s, {n / wall:.0f} images/s")
        for label, s in timer.spent.items():
            print(f"  {label:<36} {s:7.2f} s  {s / wall:6.1%}")
        t = time.perf_counter()
        audit.audit_banners(
            data, near_dup_threshold=None, run=audit.AuditRun(n_jobs=jobs, progress=False)
        )
        print(f"  rerun (saved CleanVision results)    {time.perf_counter() - t:7.2f} s")
        layout.cleanvision_key_path(data).unlink()  # the next n_jobs computes again
    return rates


def bench_embedding(data: Path, n_embed: int) -> None:
    import torch

    from steam_dinov2 import load_model
    from steam_dinov2.embedding.embed import embed_images
    from steam_dinov2.search import build_index, find_duplicate_groups, search_index

    torch.set_num_threads(2)
    model = load_model("dinov2_vits14", pretrained=False, device="cpu")
    paths = sorted(layout.banners_dir(data).glob("*.jpg"))[:n_embed]
    t = time.perf_counter()
    embed_images(paths, model, progress=False)
    wall = time.perf_counter() - t
    print(f"\nembedding (dinov2_vits14, crop256, 2 threads): {n_embed / wall:.1f} images/s")
    rng = np.random.default_rng(0)
    for n in (2_000, 30_000):
        v = rng.standard_normal((n, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        t = time.perf_counter()
        find_duplicate_groups(v, audit.NEAR_DUP_THRESHOLD)
        groups = time.perf_counter() - t
        t = time.perf_counter()
        search_index(build_index(v), v, k=1, self_rows=np.arange(n))
        nearest = time.perf_counter() - t
        print(f"  N={n:>6}: duplicate groups {groups:6.2f} s, nearest cosine {nearest:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="generated banners")
    parser.add_argument("--embed-n", type=int, default=200, help="banners to embed for the rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        make_banners(layout.banners_dir(data), args.n)
        print(
            f"generated {args.n} banners in {time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs"
        )
        rates = bench_cleanvision(data, args.n)
        print(f"\nCleanVision 2 workers vs 1: {rates[2] / rates[1]:.2f}x")
        bench_embedding(data, args.embed_n)


if __name__ == "__main__":
    main()
