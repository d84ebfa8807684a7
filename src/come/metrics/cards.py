"""Memory Cards diagnostics: per-card errors and where the cursor is, read off rendered frames."""

from __future__ import annotations

import torch
from einops import rearrange

GRID = 4


def _cells(frames: torch.Tensor) -> torch.Tensor:
    """(...,3,H,W) in [-1,1] -> (...,4,4,3,s,s) in [0,1]."""
    x = (frames.float().clamp(-1, 1) + 1) / 2
    return rearrange(x, "... c (gh s1) (gw s2) -> ... gh gw c s1 s2", gh=GRID, gw=GRID)


def card_mse(pred: torch.Tensor, truth: torch.Tensor, margin: int = 1) -> torch.Tensor:
    """Mean squared error per card (pixels in [0,1]) inside the cursor margin: (...,4,4)."""
    p, t = _cells(pred), _cells(truth)
    s = p.shape[-1]
    b = max(1, s // 8) if margin else 0
    inner = (slice(None),) * (p.ndim - 2) + (slice(b, s - b), slice(b, s - b))
    return (p[inner] - t[inner]).pow(2).mean(dim=(-3, -2, -1))


def cursor_cell(frames: torch.Tensor) -> torch.Tensor:
    """(row, col) of the card whose outer ring is brightest, per frame: (...,2) long."""
    c = _cells(frames).mean(-3)  # (...,4,4,s,s) grey level
    s = c.shape[-1]
    b = max(1, s // 8)
    ring = torch.zeros(s, s, dtype=torch.bool, device=frames.device)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    score = c[..., ring].mean(-1).flatten(-2)  # (...,16)
    idx = score.argmax(-1)
    return torch.stack([idx // GRID, idx % GRID], dim=-1)
