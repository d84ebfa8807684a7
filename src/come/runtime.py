"""Where and in which precision to run: bf16 only where the hardware makes it fast."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


@functools.cache
def _cpuinfo() -> str:
    """The text of /proc/cpuinfo ("" where there is none: not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them PyTorch emulates bf16 matmuls, which on an AVX2-only CPU is
    20x slower than fp32 to train (BENCHMARKS.md, "Speed").
    """
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(name: str = "auto") -> torch.device:
    """The device to run on: ``auto`` takes CUDA, then Apple's MPS, then the CPU; a named device that this
    machine lacks is refused."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise InputError(f"--device: choose from {', '.join(DEVICES)} (or cuda:N), got '{name}'")
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if has[d]))
    kind = name.split(":")[0]
    if not has[kind]:
        raise InputError(f"--device {name}: this machine has no {kind.upper()} device (try --device auto or cpu)")
    return torch.device(name)


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


def compiled(network: torch.nn.Module):
    """``network`` compiled for sampling with ``torch.compile`` (TorchInductor: fused C++ kernels on the CPU), one
    graph per input shape; the network itself, with a one-line notice, where no C++ compiler is found. Compiling
    takes 10-60 s per shape and then sampled the shipped maze model 5-23% faster on 2 CPU cores (BENCHMARKS.md,
    "Compiled sampling"): it pays on long runs only."""
    import os
    import shutil
    import sys

    if shutil.which(os.environ.get("CXX") or "g++") is None and shutil.which("c++") is None:
        print("compile: no C++ compiler found (set CXX); sampling uncompiled", file=sys.stderr)
        return network
    return torch.compile(network, dynamic=False)


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


def describe_device(device: torch.device) -> str:
    """The device in words, for a benchmark's table: the GPU's name, or the CPU's model and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    import platform

    return f"{names[0] if names else platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
