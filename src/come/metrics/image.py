"""Per-frame image metrics (torchmetrics) on frames in [-1, 1], shape (..., C, H, W).

torchmetrics is imported where a metric is computed: importing it loads every metric it has (and transformers
under its text metrics), seconds that a command which scores nothing should not wait for.
"""

from __future__ import annotations

import torch


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) / 2).reshape(-1, *x.shape[-3:])


PSNR_MAX = 100.0  # identical frames score this instead of infinity


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame (pixels mapped to [0, 1], at most ``PSNR_MAX``); returns the leading shape."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _unit(pred), _unit(target)
    out = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return out.clamp(max=PSNR_MAX).reshape(pred.shape[:-3])


def window_psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of the mean squared error over a whole window of frames (pixels in [0, 1])."""
    mse = (_unit(pred) - _unit(target)).pow(2).mean().clamp(min=10 ** (-PSNR_MAX / 10))
    return float(-10 * torch.log10(mse))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (pixels mapped to [0, 1]); returns the leading shape."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _unit(pred), _unit(target)
    out = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none", kernel_size=7)
    return out.reshape(pred.shape[:-3])
