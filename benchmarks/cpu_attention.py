"""Attention forward and backward at a memorization step's shape on the CPU: the bf16 kernel against the fp32
one that ``come.models.dit.attend`` runs under bf16 autocast.

    python benchmarks/cpu_attention.py --batch 64 --tokens 48

Each figure is the median of ``--repeats`` timings after two untimed ones.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from come.runtime import median_seconds


def measure(batch: int, heads: int, tokens: int, head_dim: int, dtype: torch.dtype, repeats: int) -> float:
    """Seconds of one attention forward and backward on random (batch, heads, tokens, head_dim) inputs."""
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, dtype=dtype, requires_grad=True) for _ in range(3))

    def step():
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    return median_seconds(step, warmup=2, repeats=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="Windows a memorization step (the cards recipe: 64).")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48, help="Tokens a window (cards-tiny: 3 frames of 16).")
    parser.add_argument("--head-dim", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, {args.heads} heads, {args.tokens} tokens")
    for dtype in (torch.bfloat16, torch.float32):
        s = measure(args.batch, args.heads, args.tokens, args.head_dim, dtype, args.repeats)
        print(f"{str(dtype).removeprefix('torch.'):>8}: {s * 1e3:.1f} ms forward and backward")


if __name__ == "__main__":
    main()
