"""Training loss: v-prediction with per-frame noise levels and context dropout.

Context frames are clean (level 0); every future frame gets its own level, and
in half the clips all future frames share one level (the case the sampler
meets). A fraction ``high_fraction`` of the clips draws its future levels from
``[high_min, N)`` only: there the noisy frame hides what changed, so only the
actions can tell it, and a cards model learned to use its actions only once
these levels got enough of the updates (measured in BENCHMARKS.md). With
probability ``p_context_dropout`` a clip's context frames are
replaced by pure noise at the maximum level, so the same network is also its
own unconditional expert. With ``context_noise_max`` > 0 the context frames of
each clip are noised at a random level in ``[0, context_noise_max]`` (the network
is told the level), the usual remedy for a rollout that feeds the model its own
slightly wrong frames (noise augmentation, as in GameNGen, Valevski et al. 2024); on
Memory Cards it did not reduce drift (BENCHMARKS.md). The loss is the plain v-MSE on future frames, i.e. the
clean-frame error weighted by ``SNR + 1`` (Salimans & Ho 2022): unlike min-SNR
weighting it does not vanish at the noisiest levels, where a sampler decides
the layout of the scene (measured: with min-SNR-5 a cards model's DDIM samples
were worse than copying the last frame although its one-step errors were good).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from ..errors import InputError
from .schedule import add_noise, alpha_bar, velocity


@dataclass(frozen=True)
class NoiseLevels:
    """How the loss draws and weighs noise levels: a ``high_fraction`` of the clips at levels >= ``high_min``
    only, the clean-frame weight capped at ``max_weight``, the context noised up to ``context_noise_max``.
    Training and test-time memorization of a network share them (``TrainConfig.noise_levels``)."""

    high_fraction: float = 0.0
    high_min: int = 700
    max_weight: float | None = None
    context_noise_max: int = 0

    def __post_init__(self):
        if not 0 <= self.high_fraction <= 1:
            raise InputError(f"high_fraction must lie in [0, 1], got {self.high_fraction}")


def sample_levels(batch: int, frames: int, context: int, num_levels: int, p_context_dropout: float,
                  generator: torch.Generator | None = None, high_fraction: float = 0.0,
                  high_min: int = 700, context_noise_max: int = 0,
                  drop_context: torch.Tensor | None = None, short_context: int = 0,
                  p_short_context: float = 0.0) -> torch.Tensor:
    """Integer noise level per frame (B,T): context 0, or one level per clip in [0, context_noise_max],
    or max when dropped (at random, or where the bool mask ``drop_context`` (B,) says so); future
    in [1, N) (in [high_min, N) for a ``high_fraction`` of the clips). A ``p_short_context`` share of
    the clips drops all but the last ``short_context`` context frames: a short-term memory meets there
    the null it is composed with (the prior's own frames, the older ones noised)."""
    levels = torch.randint(1, num_levels, (batch, frames), generator=generator)
    shared = torch.rand(batch, generator=generator) < 0.5
    levels[shared] = levels[shared, context:context + 1].expand(-1, frames)
    if high_fraction > 0:
        high = torch.rand(batch, generator=generator) < high_fraction
        levels[high] = torch.randint(high_min, num_levels, (int(high.sum()), frames), generator=generator)
    levels[:, :context] = 0
    if context_noise_max > 0:  # (no draw otherwise: runs without it keep their random stream)
        levels[:, :context] = torch.randint(0, context_noise_max + 1, (batch, 1), generator=generator)
    dropped = torch.rand(batch, generator=generator) < p_context_dropout
    if drop_context is not None:
        dropped |= drop_context.cpu()
    levels[dropped, :context] = num_levels - 1
    if p_short_context > 0 and short_context < context:  # (no draw otherwise, as above)
        short = torch.rand(batch, generator=generator) < p_short_context
        levels[short, :context - short_context] = num_levels - 1
    return levels


def diffusion_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    context: int,
    scheduler: DDIMScheduler,
    p_context_dropout: float = 0.1,
    p_pose_dropout: float = 0.1,
    generator: torch.Generator | None = None,
    levels: NoiseLevels = NoiseLevels(),
    drop_context: torch.Tensor | None = None,
    p_view_dropout: float = 0.0,
    short_context: int = 0,
    p_short_context: float = 0.0,
    shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """Mean weighted v-MSE over the future frames of a batch of clips (context frames are never targets).

    ``levels.max_weight`` caps the clean-frame weight ``SNR + 1`` of the v-MSE (the v-MSE is the
    clean-frame MSE times ``1 / (1 - alpha_bar)``, over 1000 at the lowest levels).
    ``drop_context`` (B,) bool drops the context of those clips whatever ``p_context_dropout`` draws
    (memorization: windows whose context lies before the history's first frame). A batch with place
    ``views`` drops them in a ``p_view_dropout`` share of the clips, so the place memory is also
    its own base model (its contrastive baseline). ``short_context`` and ``p_short_context``: see
    :func:`sample_levels`. ``shard`` (index, count): the batch is that share of a global batch split
    across processes, and every random draw is made for the global batch and sliced, so the processes
    together draw what one process would (``drop_context`` is for one process).
    """
    frames = batch["frames"]
    B, T = frames.shape[:2]
    device = frames.device
    index, count = shard
    if count > 1 and drop_context is not None:
        raise ValueError("drop_context is for a batch on one process")
    rows = slice(index * B, (index + 1) * B)
    drawn = sample_levels(B * count, T, context, scheduler.config.num_train_timesteps, p_context_dropout, generator,
                          levels.high_fraction, levels.high_min, levels.context_noise_max, drop_context,
                          short_context, p_short_context)[rows].to(device)
    noise = torch.randn((B * count, *frames.shape[1:]), generator=generator)[rows].to(device)
    ab = alpha_bar(scheduler, drawn)
    x_t = add_noise(frames, noise, ab)
    pose = batch.get("pose")
    if pose is not None and p_pose_dropout > 0:
        keep = (torch.rand(B * count, generator=generator)[rows] >= p_pose_dropout).to(device)
        pose = pose * keep[:, None, None]
    views = {}
    if "views" in batch:
        dropped = torch.rand(B * count, generator=generator)[rows] < p_view_dropout
        keep = batch["view_keep"].to(device) & ~dropped.to(device)
        views = {"views": batch["views"], "view_pose": batch["view_pose"], "view_keep": keep}
    pred = model(x_t, drawn, batch["action"], pose, context=context, **views).float()
    target = velocity(frames, noise, ab)
    mse = (pred - target).pow(2).mean(dim=(2, 3, 4))  # (B,T)
    weight = torch.ones_like(mse)
    weight[:, :context] = 0
    if levels.max_weight is not None:
        weight = weight * (levels.max_weight * (1 - ab.to(device))).clamp(max=1.0)
    return (mse * weight).sum() / (drawn[:, context:].numel())
