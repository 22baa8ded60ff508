"""The floating-point precision a model embeds in: chosen from the device, or asked for.

A reduced precision is only worth it where the hardware runs it natively: on a CPU with AMX or
AVX512-BF16, bf16 measured 3x fp32 (``benchmarks/README.md``), while on an AVX2-only CPU bf16
autocast was 6x *slower* than fp32 (emulated). A T4 (Colab's free GPU, compute capability 7.5)
has fp16 tensor cores and no fast bf16; Ampere (8.0) and later run both.

How each precision runs (``autocast_dtype``, ``weights_dtype``): on a CPU, bf16 casts the weights
and the input (68 vs 56 img/s for autocast in the issue's measurement; fidelity of both in
``benchmarks/README.md``); fp16 on a CPU and any reduced precision on CUDA run under
``torch.autocast`` with fp32 weights (layer norms and softmax stay in fp32), as the fp16 caches
made on CUDA before this module always did. Pooled vectors always come out float32.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
CHOICES = ("auto", *PRECISIONS)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of CPU cores that multiply bf16 matrices in hardware: AMX tiles (Intel
# Sapphire Rapids and later) and AVX512-BF16 (Intel Cooper Lake, AMD Zen 4).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")
# Compute capability from which CUDA GPUs have bf16 tensor cores (Ampere, 8.0).
CUDA_BF16_MAJOR = 8


def cpu_flags() -> frozenset[str]:
    """The feature flags of this machine's CPU (Linux ``/proc/cpuinfo``); empty where that file
    is absent or unreadable (macOS, Windows): no bf16 is then assumed."""
    try:
        with CPUINFO.open(encoding="ascii", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def choose_precision(device: torch.device) -> tuple[str, str]:
    """The precision ``device`` embeds fastest in without losing the neighbours, and why.

    Returns:
        ``(precision, reason)``: "bf16" on a CPU with AMX or AVX512-BF16; on CUDA, "bf16" from
        compute capability 8.0 (Ampere: bf16 at fp16's speed, with fp32's exponent range, so no
        overflow) and "fp16" below it (a T4: fp16 tensor cores, bf16 emulated); "fp32" elsewhere.
    """
    device = torch.device(device)
    if device.type == "cpu":
        have = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
        if have:
            return "bf16", f"the CPU has {' and '.join(have)}: bf16 matrix products run in hardware"
        return "fp32", "the CPU has neither AMX nor AVX512-BF16: bf16 would be emulated (slower)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} asked for, but CUDA is not available here")
        major, minor = torch.cuda.get_device_capability(device)
        gpu = f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
        if major >= CUDA_BF16_MAJOR:
            return "bf16", f"{gpu} runs bf16 as fast as fp16, with fp32's range (no overflow)"
        return "fp16", f"{gpu} has fp16 tensor cores but no fast bf16"
    return "fp32", f"{device.type} embeds in fp32"


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``(precision, reason)``: ``choose_precision(device)`` for "auto" (logged), else
    ``precision`` itself once ``device`` can run it; ValueError naming the choices otherwise."""
    device = torch.device(device)
    if precision == "auto":
        chosen, why = choose_precision(device)
        logger.info("precision %s on %s: %s", chosen, device.type, why)
        return chosen, why
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; available: {', '.join(CHOICES)}")
    if precision != "fp32" and device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"precision {precision} runs on a CPU or a CUDA GPU; {device.type} embeds in fp32"
        )
    return precision, "asked for"


def weights_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a model's weights are cast to for ``precision`` on ``device``."""
    return torch.bfloat16 if precision == "bf16" and device.type == "cpu" else torch.float32


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of ``precision`` on ``device``; None: no autocast."""
    if precision == "fp32" or weights_dtype(precision, device) != torch.float32:
        return None
    return DTYPES[precision]
