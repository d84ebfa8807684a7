"""Per-frame image metrics (torchmetrics) on frames in [-1, 1], shape (..., C, H, W)."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) / 2).reshape(-1, *x.shape[-3:])


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame (pixels mapped to [0, 1]); returns the leading shape."""
    p, t = _unit(pred), _unit(target)
    out = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return out.reshape(pred.shape[:-3])


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (pixels mapped to [0, 1]); returns the leading shape."""
    p, t = _unit(pred), _unit(target)
    out = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none", kernel_size=7)
    return out.reshape(pred.shape[:-3])
