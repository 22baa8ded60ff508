"""faiss with its bundled OpenBLAS on this CPU's kernels.

faiss-cpu's wheels bundle their own OpenBLAS (0.3.15 in faiss-cpu 1.15.1), which does not know CPUs
newer than itself and falls back to its Prescott (SSE3) kernels on them: on this project's Xeon
with AVX-512 and AMX (Sapphire Rapids class) its sgemm, most of an exact search, ran 4-5 x slower
than numpy's OpenBLAS for the same product (a 4,096 x 20,000 x 384 IndexFlatIP search: 2.3 s of
CPU against 0.46 s for numpy's matmul; 0.85 s against 0.77 s once told SkylakeX; see
benchmarks/README.md). OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when the library loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# OpenBLAS's names for the widest x86 kernels whose instructions the CPU has (its
# driver/others/dynamic.c), widest first: SkylakeX needs these AVX-512 subsets, Haswell AVX2 + FMA.
_CORETYPES = (
    ("SkylakeX", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("Haswell", {"avx2", "fma"}),
)


def openblas_coretype(flags: set[str]) -> str | None:
    """The OpenBLAS kernel for a CPU with ``flags`` (``/proc/cpuinfo`` names), or None when it
    has none of the wide ones (OpenBLAS's own choice is then as good as any)."""
    return next((name for name, need in _CORETYPES if need <= flags), None)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: OpenBLAS picks on its own
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def import_faiss():
    """``import faiss``, its bundled OpenBLAS told this CPU's kernels (``OPENBLAS_CORETYPE``,
    set only while faiss loads and only when the user has not set it). A faiss loaded earlier
    is returned as it is."""
    if "faiss" in sys.modules:
        return sys.modules["faiss"]
    coretype = None if "OPENBLAS_CORETYPE" in os.environ else openblas_coretype(_cpu_flags())
    if coretype:
        os.environ["OPENBLAS_CORETYPE"] = coretype
    try:
        import faiss
    finally:
        if coretype:
            del os.environ["OPENBLAS_CORETYPE"]  # other libraries and child processes choose
    return faiss
