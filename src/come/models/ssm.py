"""Mamba blocks between a VideoDiT's attention layers: the transformer-with-state-space-layers baseline of the
paper's Table 2 (``DiTConfig.ssm_layers``).

A selective state-space model (Mamba: Gu & Dao 2023) reads the tokens in frame order, history then future, so
a token's output depends on the frames before it and never on those after: what is older than the attention
window reaches the future through a fixed-size state instead of through attention over every frame. As in
block-wise SSM video world models (Po et al. 2025, "Long-Context State-Space Video World Models"), each frame is
cut into blocks of ``block`` x ``block`` tokens and the tokens of a block are scanned on their own across the
frames: a scan of frames x block tokens instead of one over the whole clip, each image region keeping its own
state. ``block`` equal to the frame's side in tokens scans the whole clip as one sequence.

The mixer is transformers' ``MambaMixer``: the mamba-ssm and causal-conv1d kernels where they are installed
(CUDA); elsewhere mambapy's parallel scan where mambapy is installed (the ``baselines`` extra), else transformers'
reference scan, which steps through the sequence one position at a time and whose backward pass grows with the
square of the scan length. Both CPU scans hold every state of the sequence in memory (frames x block tokens x
2 width x 16 values a sequence), which is why the CPU presets scan short blocks (docs/models.md, "The baselines
of the paper's Table 2").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .dit import gate, modulate


def mamba_mixer(width: int, state: int = 16) -> nn.Module:
    """transformers' Mamba mixer over ``width`` features, with Mamba's defaults (expansion 2, a causal
    convolution over 4 positions, a state of ``state`` per channel), with mambapy's scan where it is installed.
    Imported here: transformers takes seconds to load, and only these models need it."""
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    config = MambaConfig(hidden_size=width, state_size=state, num_hidden_layers=1, use_mambapy=True)
    return MambaMixer(config, layer_idx=0)


class SSMBlock(nn.Module):
    """A Mamba mixer over the clip's tokens in frame order, block by block, with adaLN-Zero conditioning per
    frame (shift, scale and gate, as the attention half of a DiT block)."""

    def __init__(self, width: int, side: int, block: int, state: int = 16):
        super().__init__()
        self.side, self.block = side, block  # tokens per side of a frame, and of a scanned block
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mixer = mamba_mixer(width, state)
        self.ada = nn.Linear(width, 3 * width)

    def reset_parameters(self) -> None:
        """Mamba's own initialisation of the scan (its time steps and decay rates), and a zero gate: the block
        starts as the identity, as every DiT block does."""
        self.mixer.init_mamba_weights()
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """The mixer over x (B, F*N, D), the tokens of F frames in raster order, each block scanned on its own."""
        s, b = self.side // self.block, self.block
        seq = rearrange(x, "n (f gh bh gw bw) d -> (n gh gw) (f bh bw) d", gh=s, bh=b, gw=s, bw=b)
        out = self.mixer(seq)
        return rearrange(out, "(n gh gw) (f bh bw) d -> n (f gh bh gw bw) d", gh=s, bh=b, gw=s, bw=b)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, F*N, D) tokens of F frames, c (B, F, D) each frame's conditioning."""
        shift, scale, g = self.ada(F.silu(c)).chunk(3, dim=-1)
        return x + gate(self.scan(modulate(self.norm(x), shift, scale)), g)
