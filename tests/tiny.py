"""The tiny world model every test builds on (imported by the test modules: ``from tiny import tiny_dit``)."""

import torch

from come.models.dit import DiTConfig, VideoDiT

TINY = dict(resolution=32, patch=8, width=32, depth=2, heads=2, max_frames=4, action_dim=5)


def tiny_dit(seed: int = 0, jitter: float = 0.0, gates_only: bool = True, **config) -> VideoDiT:
    """A small :class:`VideoDiT` (``TINY``, changed by ``config``) in eval mode. ``jitter`` moves its weights
    off adaLN-Zero's identity start, as training would (the gates and the output layer only, or every
    weight without ``gates_only``), so that every block and input changes the output."""
    torch.manual_seed(seed)
    net = VideoDiT(DiTConfig(**{**TINY, **config}))
    if jitter:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if not gates_only or "ada" in name or "final" in name:
                    p.add_(torch.randn_like(p) * jitter)
    return net.eval()
