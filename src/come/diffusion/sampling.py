"""Sampling: a deterministic DDIM loop with an eps hook, and autoregressive rollouts.

``sample_ddim`` follows k-diffusion's shape: a pure function of an eps function,
the initial noise and a schedule, with a per-step callback. The eps function is
the hook where experts are composed (``come.compose``); the step itself is
diffusers' ``DDIMScheduler.step`` with eta = 0 (Song et al. 2021, "Denoising
Diffusion Implicit Models", eq. 12). An optional unadjusted Langevin corrector
(Song et al. 2021, "Score-Based Generative Modeling through SDEs", predictor-
corrector sampling) runs after each step at the level just reached: a composed
score is not the score of the noised composed distribution, and a few Langevin
steps pull the samples towards what the composed score describes at that level.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from diffusers import DDIMScheduler
from tqdm import tqdm

from .schedule import add_noise, alpha_bar, to_eps

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""eps_fn(x_t, t) -> eps: predicted noise for the frames being generated at level t."""


def sample_ddim(
    eps_fn: EpsFn,
    x: torch.Tensor,
    scheduler: DDIMScheduler,
    steps: int,
    callback: Callable[[dict], None] | None = None,
    langevin_steps: int = 0,
    langevin_size: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``steps`` deterministic DDIM steps from noise ``x``; returns the clean sample.

    With ``langevin_steps`` > 0, each step but the last is followed by that many
    unadjusted Langevin steps at the new level ``t``:
    ``x <- x + d * score + sqrt(2 d) z`` with ``score = -eps / sqrt(1 - ab_t)``
    and ``d = langevin_size * (1 - ab_t)`` (off by default).
    """
    if langevin_steps < 0 or langevin_size <= 0:
        raise ValueError(f"langevin_steps must be >= 0 and langevin_size > 0, got {langevin_steps}, {langevin_size}")
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    for i, t in enumerate(timesteps):
        if t == 0:  # (667 steps or more) level 0 is a clean frame: the last step's clean estimate is the sample
            x = clean
            break
        eps = eps_fn(x, t).float()
        step = scheduler.step(eps, t, x, eta=0.0)
        x, clean = step.prev_sample, step.pred_original_sample
        if langevin_steps and i + 1 < len(timesteps) and timesteps[i + 1] > 0:
            x = langevin(eps_fn, x, timesteps[i + 1], scheduler, langevin_steps, langevin_size, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": eps})
    return x


def langevin(
    eps_fn: EpsFn,
    x: torch.Tensor,
    t: int,
    scheduler: DDIMScheduler,
    n: int,
    size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` unadjusted Langevin steps on the score implied by ``eps_fn`` at level ``t``."""
    var = 1 - float(alpha_bar(scheduler, torch.tensor(t)))
    d = size * var
    for _ in range(n):
        score = -eps_fn(x, t).float() / var**0.5
        z = torch.randn(x.shape, generator=generator).to(x.device)
        x = x + d * score + (2 * d) ** 0.5 * z
    return x


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bf16 autocast on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def model_eps(
    model: torch.nn.Module,
    scheduler: DDIMScheduler,
    context: torch.Tensor,
    action: torch.Tensor,
    pose: torch.Tensor | None = None,
    prediction: str = "v",
    bf16: bool = False,
    context_level: int = 0,
    generator: torch.Generator | None = None,
) -> EpsFn:
    """eps function of one network conditioned on ``context`` frames (B,K,C,H,W).

    ``action`` and ``pose`` cover context and generated frames, (B,K+F,·). With
    ``context_level`` > 0 the context is noised once at that level (and the network
    told so), as for a model trained with context noise augmentation.
    """
    k = context.shape[1]
    context = noise_context(context, context_level, scheduler, generator)

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        B, F = x.shape[:2]
        levels = torch.cat(
            [torch.full((B, k), context_level, dtype=torch.long), torch.full((B, F), t, dtype=torch.long)], dim=1
        ).to(x.device)
        with autocast(bf16, x.device):
            out = model(torch.cat([context, x], dim=1), levels, action, pose, context=k)[:, k:]
        return to_eps(out.float(), x, alpha_bar(scheduler, levels[:, k:]), prediction)

    return eps_fn


def noise_context(frames: torch.Tensor, level: int, scheduler: DDIMScheduler,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Context frames noised at ``level`` (unchanged at level 0) with ``noise`` or fresh noise."""
    if level == 0:
        return frames
    if noise is None:
        noise = torch.randn(frames.shape, generator=generator).to(frames.device)
    return add_noise(frames, noise, alpha_bar(scheduler, torch.tensor(level)).to(frames.device))


@torch.no_grad()
def rollout(
    model: torch.nn.Module,
    scheduler: DDIMScheduler,
    frames: torch.Tensor,
    action: torch.Tensor,
    pose: torch.Tensor | None,
    context: int,
    n_frames: int,
    chunk: int,
    steps: int = 20,
    bf16: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
    context_level: int = 0,
) -> torch.Tensor:
    """Generate ``n_frames`` after the first ``context`` of ``frames`` (B,>=K,C,H,W), ``chunk`` at a time.

    ``action``/``pose`` (B, K+n_frames, ·) are the episode's, frame-aligned with
    ``frames``. Each chunk is conditioned on the last ``context`` frames known so
    far (given or generated): a sliding context window, noised at ``context_level``.
    """
    if action.shape[1] < context + n_frames:
        raise ValueError(f"need actions for {context + n_frames} frames, got {action.shape[1]}")
    history = frames[:, :context]
    bar = tqdm(total=n_frames, desc="rollout", unit="frame", disable=not progress)
    while history.shape[1] < context + n_frames:
        pos = history.shape[1]
        f = min(chunk, context + n_frames - pos)
        sl = slice(pos - context, pos + f)
        eps_fn = model_eps(model, scheduler, history[:, -context:], action[:, sl],
                           None if pose is None else pose[:, sl], bf16=bf16, context_level=context_level,
                           generator=generator)
        noise = torch.randn((history.shape[0], f) + history.shape[2:], generator=generator).to(history.device)
        new = sample_ddim(eps_fn, noise, scheduler, steps)
        history = torch.cat([history, new], dim=1)
        bar.update(f)
    bar.close()
    return history[:, context:]
