"""Noise schedule and conversions between the network's parameterisations.

The schedule is diffusers' cosine "squaredcos_cap_v2" betas over 1000 training
levels, sampled by its ``DDIMScheduler`` (or a multistep solver); this module reads
its ``alphas_cumprod`` for training and converts v / x0 predictions to eps, the
space in which experts are composed.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from ..errors import InputError


SCHEDULERS = ("ddim", "dpm++", "unipc")  # the step rules make_scheduler builds (--sampler)


def make_scheduler(num_train_timesteps: int = 1000, sampler: str = "ddim") -> SchedulerMixin:
    """The sampler of the cosine levels: deterministic DDIM (eta=0, the default; Song et al. 2021), DPM-Solver++
    2M (Lu et al. 2022) or UniPC (Zhao et al. 2023), diffusers' schedulers over eps predictions; trailing
    spacing starts at the noisiest level.

    Level 0 is a clean frame everywhere (``alphas_cumprod[0]`` = 1): a network is given clean context
    frames at level 0, and a DDIM step that lands on level 0 (step counts that do not divide the
    levels) then ends clean too, where diffusers' own table (0.99996) leaves a little noise. The
    multistep solvers end on a clean frame of their own (``final_sigmas_type="zero"``).
    """
    if sampler not in SCHEDULERS:
        raise InputError(f"unknown sampler '{sampler}' (choose from {', '.join(SCHEDULERS)})")
    common = dict(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                  prediction_type="epsilon", timestep_spacing="trailing")
    if sampler == "dpm++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           final_sigmas_type="zero")
    if sampler == "unipc":
        return UniPCMultistepScheduler(**common, solver_order=2, final_sigmas_type="zero")
    scheduler = DDIMScheduler(**common, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True)
    scheduler.alphas_cumprod[0] = 1.0
    return scheduler


def alpha_bar(schedule: DDIMScheduler | torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """alpha_bar(t) for integer levels ``t`` of any shape (level 0 is perfectly clean).

    ``schedule`` is a scheduler or its ``alphas_cumprod`` tensor (as a network keeps it).
    """
    table = schedule if isinstance(schedule, torch.Tensor) else schedule.alphas_cumprod
    ab = table.to(t.device)[t.long().clamp(min=0)]
    return torch.where(t == 0, torch.ones_like(ab), ab)


def expand_like(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a`` (shaped like the leading dims of ``x``) with trailing unit dims, to broadcast over ``x``."""
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim)).to(x.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ab) x0 + sqrt(1-ab) eps, with ``ab`` shaped like the leading dims of x0."""
    return expand_like(ab.sqrt(), x0) * x0 + expand_like((1 - ab).sqrt(), x0) * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ab) eps - sqrt(1-ab) x0 (Salimans & Ho 2022)."""
    return expand_like(ab.sqrt(), x0) * noise - expand_like((1 - ab).sqrt(), x0) * x0


def to_eps(pred: torch.Tensor, x_t: torch.Tensor, ab: torch.Tensor, kind: str) -> torch.Tensor:
    """Convert a network output of ``kind`` ('v', 'x0' or 'eps') at x_t to eps."""
    if kind == "eps":
        return pred
    if kind == "v":
        return expand_like(ab.sqrt(), x_t) * pred + expand_like((1 - ab).sqrt(), x_t) * x_t
    if kind == "x0":
        return (x_t - expand_like(ab.sqrt(), x_t) * pred) / expand_like((1 - ab).clamp(min=1e-8).sqrt(), x_t)
    raise InputError(f"unknown prediction kind '{kind}' (choose from v, x0, eps)")


def v_to_x0(v: torch.Tensor, x_t: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Clean-frame estimate implied by a v prediction at x_t: sqrt(ab) x_t - sqrt(1-ab) v.

    Stable at every level (going through eps divides by sqrt(ab), about 5e-5 at the last level).
    """
    return expand_like(ab.sqrt(), x_t) * x_t - expand_like((1 - ab).sqrt(), x_t) * v
