"""Search benchmark: all-pairs top-k (``match_all``) against the GEMM bound, and its peak memory.

All-pairs exact cosine top-k over N vectors of d dims costs at least one N x N x d matrix product,
2*N*N*d flops. The bound is that count at the machine's sgemm rate, measured in the same run (the
best of numpy and torch, on the shape ``match_all`` hands faiss and on faiss's own 4096 x 1024 tile),
round by round, interleaved with the timed ``match_all`` calls. Peak memory is the rise of this
process's peak RSS (VmHWM, reset before each call) over its RSS before the call.

Also printed, to explain the figure: faiss's search alone, the rate of the OpenBLAS that faiss-cpu
bundles, the cost of faiss's SIMD level (this wheel loads its generic module), and a torch
matmul + topk equivalent.

Run: ``python benchmarks/bench_search.py`` (about 1-2 minutes on 2 cores at N=30,000, d=384).
Ends with one ``TARGET <name>: <measured> (target <goal>)`` line per target.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import statistics
import time
from pathlib import Path

MIB = 1 << 20


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=30_000, help="vectors (default 30000)")
    ap.add_argument("--d", type=int, default=384, help="dimensions (default 384, ViT-S)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (default 2)")
    return ap.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before numpy/faiss/torch load their BLAS.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

from steam_dinov2.core.blas import import_faiss  # noqa: E402

faiss = import_faiss()  # its bundled OpenBLAS on this CPU's kernels, as the package loads it
import numpy as np  # noqa: E402
import torch  # noqa: E402

from steam_dinov2.embedding.embed import Embeddings  # noqa: E402
from steam_dinov2.search import BLOCK, build_index, match_all  # noqa: E402


def make_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows in loose clusters (like embeddings, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), d), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)]
    x += 0.8 * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def best_seconds(f, reps: int = 3) -> float:
    f()  # warm-up: page faults of the output, thread pool start
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def faiss_cblas_sgemm():
    """cblas_sgemm of the OpenBLAS bundled in the faiss-cpu wheel (what IndexFlatIP calls)."""
    libs = Path(faiss.__file__).parent.parent / "faiss_cpu.libs"
    found = sorted(glob.glob(str(libs / "libopenblas*.so*")))
    if not found:
        return None, "not found"
    lib = ctypes.CDLL(found[0])
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    about = f"{lib.openblas_get_config().decode()}, core {lib.openblas_get_corename().decode()}"
    f32p = ctypes.POINTER(ctypes.c_float)
    i, f = ctypes.c_int, ctypes.c_float
    lib.cblas_sgemm.argtypes = [i, i, i, i, i, i, f, f32p, i, f32p, i, f, f32p, i]

    def sgemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:  # out = a @ b.T, row-major
        m, k = a.shape
        n = b.shape[0]
        ptr = [x.ctypes.data_as(f32p) for x in (a, b, out)]
        lib.cblas_sgemm(101, 111, 112, m, n, k, 1.0, ptr[0], k, ptr[1], k, 0.0, ptr[2], n)

    return sgemm, about


def gemm_rates(x: np.ndarray) -> dict[str, float]:
    """GFLOP/s of q @ x.T for q a block of queries, on two shapes, numpy and torch, output reused."""
    n, d = x.shape
    rates = {}
    for cols in (n, 1024):  # what match_all hands faiss; faiss's internal tile (4096 x 1024)
        q, b = x[: min(BLOCK, n)], x[: min(cols, n)]
        out = np.empty((len(q), len(b)), np.float32)
        flops = 2 * len(q) * len(b) * d
        t = best_seconds(lambda q=q, b=b, out=out: np.matmul(q, b.T, out=out))
        rates[f"numpy {len(q)}x{d} @ {d}x{len(b)}"] = flops / t / 1e9
        tq, tb, to = torch.from_numpy(q), torch.from_numpy(b), torch.from_numpy(out)
        t = best_seconds(lambda tq=tq, tb=tb, to=to: torch.mm(tq, tb.T, out=to))
        rates[f"torch {len(q)}x{d} @ {d}x{len(b)}"] = flops / t / 1e9
        del out, to
    return rates


def time_match_all(emb: Embeddings, k: int) -> tuple[float, float, int]:
    """(seconds, peak MiB above the RSS before the call, rows) of one match_all."""
    reset_peak_rss()
    before = rss_mib("VmRSS")
    t0 = time.perf_counter()
    table = match_all(emb, k=k, progress=False)
    seconds = time.perf_counter() - t0
    peak = rss_mib("VmHWM") - before
    rows = len(table)
    del table
    return seconds, peak, rows


def time_faiss_only(x: np.ndarray, k: int) -> float:
    index = build_index(x)
    t0 = time.perf_counter()
    for start in range(0, len(x), BLOCK):
        index.search(x[start : start + BLOCK], k + 1)
    return time.perf_counter() - t0


def time_torch_topk(x: np.ndarray, k: int) -> float:
    """The same all-pairs top-(k+1) with torch: block @ all.T, then topk."""
    tx = torch.from_numpy(x)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(x), BLOCK):
            torch.topk(tx[start : start + BLOCK] @ tx.T, k + 1, dim=1)
    return time.perf_counter() - t0


def main() -> None:
    args = ARGS
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    n, d, k = args.n, args.d, args.k
    simd = faiss.SIMDConfig
    print(
        f"# bench_search  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}"
        f"  cores={os.cpu_count()}  threads={args.threads}  faiss={faiss.__version__}"
        f" ({faiss.get_compile_options().strip()}; running {simd.get_level_name()})"
        f"  numpy={np.__version__}  torch={torch.__version__}  loadavg={os.getloadavg()[0]:.2f}"
    )
    x = make_vectors(n, d)
    emb = Embeddings("bench", [str(10 * (i + 1)) for i in range(n)], x, {})
    bound_flops = 2 * n * n * d
    can_reset = reset_peak_rss()
    match_all(Embeddings("warm-up", ["1", "2"], x[:2], {}), k=k, progress=False)  # lazy imports
    print(f"N={n} d={d} k={k}: GEMM bound counts {bound_flops / 1e12:.2f} TFLOP")

    ratios, peaks, rows = [], [], 0
    for r in range(args.rounds):
        rates = gemm_rates(x)
        best_rate = max(rates.values())
        seconds, peak, rows = time_match_all(emb, k)
        bound = bound_flops / (best_rate * 1e9)
        ratios.append(seconds / bound)
        peaks.append(peak)
        detail = ", ".join(f"{name} {v:.0f}" for name, v in rates.items())
        print(f"round {r + 1}/{args.rounds}: sgemm GFLOP/s: {detail}")
        print(
            f"  match_all {seconds:.2f} s, bound {bound:.2f} s at {best_rate:.0f} GFLOP/s "
            f"-> {seconds / bound:.2f} x; peak +{peak:.0f} MiB; {rows} rows"
        )

    # What the time is made of, measured once each.
    t_faiss = time_faiss_only(x, k)
    print(f"\nfaiss IndexFlatIP.search alone (k+1, blocks of {BLOCK}): {t_faiss:.2f} s")
    sgemm, about = faiss_cblas_sgemm()
    if sgemm is not None:
        q, b = x[:BLOCK], x[:1024]
        out = np.empty((len(q), len(b)), np.float32)
        t = best_seconds(lambda: sgemm(q, b, out))
        print(
            f"faiss-cpu's bundled BLAS ({about}): "
            f"{2 * len(q) * len(b) * d / t / 1e9:.0f} GFLOP/s on its 4096x{d} @ {d}x1024 tile"
        )
    index = build_index(x)
    level = simd.get_level()
    block = x[:BLOCK]
    t_level = best_seconds(lambda: index.search(block, k + 1), reps=2)
    simd.set_level(faiss.SIMDLevel_NONE)
    t_none = best_seconds(lambda: index.search(block, k + 1), reps=2)
    simd.set_level(level)
    print(
        f"faiss SIMD level, one block of {BLOCK} queries: {simd.get_level_name()} {t_level:.2f} s,"
        f" NONE {t_none:.2f} s (flat search is BLAS-bound; the generic module costs nothing here)"
    )
    t_torch = time_torch_topk(x, k)
    print(f"torch block @ all.T + topk, same work: {t_torch:.2f} s")

    print(f"loadavg at the end: {os.getloadavg()[0]:.2f} (other processes skew every figure)")
    dense = n * n * 4 / MIB
    data = x.nbytes / MIB
    print()
    print(
        f"TARGET all-pairs top-{k} N={n} d={d} vs GEMM bound: {statistics.median(ratios):.2f} x "
        f"(target <= 1.3 x)"
    )
    peak_note = "" if can_reset else " [VmHWM could not be reset: includes earlier peaks]"
    print(
        f"TARGET all-pairs top-{k} peak memory: +{max(peaks):.0f} MiB over the "
        f"{data:.0f} MiB of vectors (target bounded, <= 512 MiB; the dense N x N scores "
        f"would be {dense:.0f} MiB){peak_note}"
    )


if __name__ == "__main__":
    main()
