"""LPIPS (Zhang et al. 2018), the perceptual distance, through torchmetrics, where it can run.

It needs torchvision and the AlexNet weights in the local torch hub cache: ``come`` never downloads them.
Where either is missing, :func:`lpips_network` says so in one line and the metric is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"  # torchvision's file name for the ImageNet AlexNet


def lpips_network(device: torch.device | str = "cpu") -> tuple[Callable | None, str]:
    """(the LPIPS network of torchmetrics: ``net(a, b)`` per image of frames in [-1, 1], a description),
    or (None, why it is left out)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return None, "LPIPS left out: torchvision is not installed"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if not weights.is_file():
        return None, f"LPIPS left out: the AlexNet weights are not in {weights.parent}"
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    metric = LearnedPerceptualImagePatchSimilarity(net_type="alex").to(device).eval()
    return metric.net, "LPIPS (AlexNet, torchmetrics)"


@torch.no_grad()
def lpips(pred: torch.Tensor, target: torch.Tensor, net: Callable) -> torch.Tensor:
    """LPIPS per frame of frames in [-1, 1], shape (..., C, H, W); returns the leading shape."""
    flat = [x.float().clamp(-1, 1).reshape(-1, *x.shape[-3:]) for x in (pred, target)]
    return net(*flat).reshape(pred.shape[:-3])
