"""Where and in which precision to run: bf16 only where the hardware makes it fast."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from .errors import InputError


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them PyTorch emulates bf16 matmuls, which on an AVX2-only CPU is
    20x slower than fp32 to train (BENCHMARKS.md, "Speed").
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Resolve 'auto' | 'bf16' | 'fp32' to whether bf16 autocast is used on ``device``."""
    if precision not in ("auto", "bf16", "fp32"):
        raise InputError(f"precision must be auto, bf16 or fp32, got '{precision}'")
    if precision != "auto":
        return precision == "bf16"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def median_seconds(fn, repeats: int = 3, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones (for benchmarks)."""
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
