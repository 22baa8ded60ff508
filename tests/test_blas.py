"""faiss's bundled OpenBLAS runs the CPU's own kernels, not its fallback for CPUs it does not know."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steam_dinov2.core.blas import _cpu_flags, openblas_coretype

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, os
from steam_dinov2.core.blas import import_faiss
import_faiss()
from threadpoolctl import threadpool_info
arch = [i.get("architecture") for i in threadpool_info() if "faiss" in i["filepath"]]
arch = [a for a in arch if a]  # the OpenMP entry has none
print(json.dumps({"arch": arch, "env": os.environ.get("OPENBLAS_CORETYPE")}))
"""


def _probe(**env) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"} | env
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kernel_chosen_from_the_cpu_flags():
    assert (
        openblas_coretype(
            {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
        )
        == "SkylakeX"
    )
    assert openblas_coretype({"avx2", "fma", "avx512f"}) == "Haswell"  # no AVX-512BW: not SkylakeX
    assert openblas_coretype({"sse4_2", "avx"}) is None


@pytest.mark.skipif(openblas_coretype(_cpu_flags()) is None, reason="no AVX2 here")
def test_faiss_openblas_runs_this_cpus_kernels_and_the_env_is_restored():
    got = _probe()
    if not got["arch"]:
        pytest.skip("this faiss build links no OpenBLAS of its own")
    assert got == {"arch": [openblas_coretype(_cpu_flags())], "env": None}


@pytest.mark.skipif(openblas_coretype(_cpu_flags()) is None, reason="no AVX2 here")
def test_a_coretype_the_user_set_is_kept():
    got = _probe(OPENBLAS_CORETYPE="Sandybridge")
    if not got["arch"]:
        pytest.skip("this faiss build links no OpenBLAS of its own")
    assert got == {"arch": ["Sandybridge"], "env": "Sandybridge"}
