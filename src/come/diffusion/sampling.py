"""Sampling: a scheduler's loop with an eps hook, and autoregressive rollouts.

Every sampler follows k-diffusion's shape: a pure function of an eps function, the
initial noise, a scheduler and its number of steps, with keyword-only ``generator``
and ``callback``; :data:`SAMPLERS` names them (``scheduler``: :func:`run_sampler`,
``product``: :func:`sample_product`). The eps function is
the hook where experts are composed (``come.compose``); the step itself is a
diffusers scheduler's: ``DDIMScheduler.step`` with eta = 0 by default (Song et al.
2021, "Denoising Diffusion Implicit Models", eq. 12), or DPM-Solver++ or UniPC.
An optional unadjusted Langevin corrector (Song et al. 2021, "Score-Based
Generative Modeling through SDEs", predictor-corrector sampling) runs after each
step at the level just reached: a composed score is not the score of the noised
composed distribution, and a few Langevin steps pull the samples towards what the
composed score describes at that level.

``sample_product`` samples a naive product of experts, whose summed eps is the
score of no noised distribution a DDIM step can follow (at high noise the sum
is about K times x and every step throws the sample to the clip): annealed
Langevin dynamics on the summed score, level by level down to level 1 (Song &
Ermon 2019, Algorithm 1; Du et al. 2023 sample products of diffusion models
with such MCMC steps).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm import tqdm

from ..errors import InputError
from .schedule import add_noise, alpha_bar, expand_like

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""eps_fn(x_t, t) -> eps: predicted noise for the frames being generated at level t."""


def run_sampler(
    eps_fn: EpsFn,
    x: torch.Tensor,
    scheduler: SchedulerMixin,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    langevin_steps: int = 0,
    langevin_size: float = 0.1,
) -> torch.Tensor:
    """Run ``steps`` steps of ``scheduler`` from noise ``x``; returns the clean sample.

    The scheduler is deterministic DDIM or another diffusers scheduler whose step takes an eps prediction
    (:func:`~come.diffusion.schedule.make_scheduler`: DPM-Solver++, UniPC). With ``langevin_steps`` > 0,
    each step but the last is followed by that many unadjusted Langevin steps at the new level ``t``:
    ``x <- x + d * score + sqrt(2 d) z`` with ``score = -eps / sqrt(1 - ab_t)`` and
    ``d = langevin_size * (1 - ab_t)`` (off by default).
    """
    if langevin_steps < 0 or langevin_size <= 0:
        raise InputError(f"langevin_steps must be >= 0 and langevin_size > 0, got {langevin_steps}, {langevin_size}")
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    ddim, clean = isinstance(scheduler, DDIMScheduler), x
    for i, t in enumerate(timesteps):
        if t == 0:  # (667 steps or more) level 0 is a clean frame: the last step's clean estimate is the sample
            x = clean
            break
        eps = eps_fn(x, t).float()
        if i + 1 < len(timesteps) and timesteps[i + 1] == 0:  # the clean estimate the loop ends on
            ab = float(alpha_bar(scheduler, torch.tensor(t)))
            clean = ((x - (1 - ab) ** 0.5 * eps) / ab**0.5).clamp(-1, 1)
        x = scheduler.step(eps, t, x, **({"eta": 0.0} if ddim else {})).prev_sample
        if langevin_steps and i + 1 < len(timesteps) and timesteps[i + 1] > 0:
            x = langevin(eps_fn, x, timesteps[i + 1], scheduler, langevin_steps, langevin_size, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": eps})
    return x if ddim else x.clamp(-1, 1)  # DDIM clips each clean estimate, the multistep solvers do not


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


def sample_product(
    eps_fn: EpsFn,
    x: torch.Tensor,
    scheduler: SchedulerMixin,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    langevin_steps: int = 5,
    langevin_size: float = 0.3,
) -> torch.Tensor:
    """Sample the product whose summed eps ``eps_fn`` gives, from noise ``x``; returns the clean sample.

    Levels: the scheduler's ``steps`` levels, then halving down to level 1, where the product of the noised
    experts is the product of the clean ones to within the level's noise (std 0.01). At each level,
    ``langevin_steps`` Langevin steps ``x <- x + d * score + sqrt((2 - c) d) z``, per item
    ``d = c / k`` with ``c = langevin_size`` and ``k`` the secant curvature of its score over its last
    move (Barzilai & Borwein 1988): a fixed share of the product's own variance, which at low noise is far
    above the level's noise variance. The ``(2 - c)`` makes the chain's stationary variance exact on a
    Gaussian product (plain ULA inflates it by ``1 / (1 - c/2)``).
    """
    if langevin_steps < 1 or not 0 < langevin_size <= 1:
        raise InputError(f"langevin_steps must be >= 1 and langevin_size in (0, 1], got {langevin_steps}, "
                         f"{langevin_size}")
    scheduler.set_timesteps(steps)
    levels = [int(t) for t in scheduler.timesteps if int(t) > 0]
    while levels[-1] > 1:
        levels.append(levels[-1] // 2)
    step = None
    for i, t in enumerate(levels):
        sd = (1 - float(alpha_bar(scheduler, torch.tensor(t)))) ** 0.5
        score = -eps_fn(x, t).float() / sd
        step = torch.full(x.shape[:1], langevin_size * sd**2, device=x.device) if step is None else step
        for _ in range(langevin_steps):
            z = torch.randn(x.shape, generator=generator).to(x.device)
            moved = x + expand_like(step, x) * score + expand_like((2 - langevin_size) * step, x).sqrt() * z
            new_score = -eps_fn(moved, t).float() / sd
            step = langevin_size / _secant_curvature(moved - x, new_score - score)
            x, score = moved, new_score
        if callback is not None:
            callback({"i": i, "t": t, "x": x})
    return x.clamp(-1, 1)


Sampler = Callable[..., torch.Tensor]
"""sampler(eps_fn, x, scheduler, steps, *, generator=None, callback=None) -> the clean sample."""

SAMPLERS: dict[str, Sampler] = {
    "scheduler": run_sampler,  # the scheduler's own steps (DDIM, DPM-Solver++, UniPC): a composition of scores
    "product": sample_product,  # annealed Langevin dynamics: a naive product of experts
}


def _secant_curvature(dx: torch.Tensor, dscore: torch.Tensor) -> torch.Tensor:
    """|d score| / |d x| per item (leading dim), at least 1: a product of experts on [-1, 1] is no wider than that."""
    dscore, dx = dscore.reshape(len(dscore), -1), dx.reshape(len(dx), -1)
    return (dscore.norm(dim=1) / dx.norm(dim=1).clamp_min(1e-12)).clamp_min(1.0)


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bf16 autocast on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def noise_context(frames: torch.Tensor, level: int, scheduler: DDIMScheduler,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Context frames noised at ``level`` (unchanged at level 0) with ``noise`` or fresh noise."""
    if level == 0:
        return frames
    if noise is None:
        noise = torch.randn(frames.shape, generator=generator).to(frames.device)
    return add_noise(frames, noise, alpha_bar(scheduler, torch.tensor(level)).to(frames.device))


@torch.no_grad()
def autoregress(eps_for, frames: torch.Tensor, n_new: int, chunk: int, scheduler: SchedulerMixin, steps: int,
                generator: torch.Generator | None = None, progress: bool = False,
                desc: str = "rollout", sampler: str = "scheduler") -> torch.Tensor:
    """Generate ``n_new`` frames after ``frames`` (B,N,C,H,W), ``chunk`` at a time, each chunk sampled
    under ``eps_for(known, f)``: the eps function for ``f`` new frames after the ``known`` ones (given
    and generated so far), by the sampler of that name in :data:`SAMPLERS`.
    Returns the new frames (B,n_new,C,H,W)."""
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler '{sampler}' (choose from {', '.join(SAMPLERS)})")
    known, start = frames, frames.shape[1]
    bar = tqdm(total=n_new, desc=desc, unit="frame", disable=not progress, leave=False)
    while known.shape[1] < start + n_new:
        f = min(chunk, start + n_new - known.shape[1])
        eps_fn = eps_for(known, f)
        x = torch.randn((len(known), f) + known.shape[2:], generator=generator).to(known.device)
        sample = SAMPLERS[sampler](eps_fn, x, scheduler, steps, generator=generator)
        known = torch.cat([known, sample], dim=1)
        bar.update(f)
    bar.close()
    return known[:, start:]
