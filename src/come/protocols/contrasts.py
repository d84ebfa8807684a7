"""What each expert's contrast carries, measured one denoising step at a time on frames whose truth is known.

A rollout score says whether a composition helped; this says why. For each frame of a window (teacher-forced:
the history and the true frames before it are the context) and each level of the sampler, the true frame is
noised with a known ``eps``. The base model's error is ``r = eps - eps_0``; expert ``i``'s contrast is
``c_i = eps_i(x_t | C_i) - eps_i(x_t | null_i)``, the term it adds at weight 1. Summed over frames and windows,
per level:

* ``cos(c_i, r)``: whether the term points where the base is wrong (> 0: it helps at a small enough weight);
* ``|c_i| / |r|``: how large the term is against the base's error;
* the least-squares weights ``w`` minimising ``|r - sum_i w_i c_i|^2`` (each expert alone and all jointly), and
  the share of the base's squared error they remove; the share removed at the world's own weights;
* ``cos(c_i, c_j)``: whether two experts say the same (a composition then counts it twice).

The error is in eps; at one level an x0 error is the eps error times ``-sqrt((1 - ab) / ab)``, so every
cosine, weight and share is the same in x0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..compose import Expert, History, composed_eps_fn
from ..diffusion.schedule import add_noise, alpha_bar
from ..errors import InputError

RIDGE = 1e-6  # relative ridge of the joint fit: two experts that say the same share their weight


@dataclass
class ContrastSums:
    """Per window and level: the contrasts' inner products ``gram`` (B,L,E,E), their products with the base's
    error ``cross`` (B,L,E) and its squared norm ``error`` (B,L); ``levels`` (L,), ``experts`` (E,)."""

    experts: tuple[str, ...]
    levels: tuple[int, ...]
    gram: np.ndarray
    cross: np.ndarray
    error: np.ndarray

    def summary(self, weights: dict[str, float] | None = None) -> list[dict]:
        """One row per level, summed over windows (see the module docstring); ``weights``: the composition's
        weights, whose share of the error removed is reported as ``removed_at_weights``."""
        rows = []
        for i, level in enumerate(self.levels):
            g, c, e = self.gram[:, i].sum(0), self.cross[:, i].sum(0), float(self.error[:, i].sum())
            rows.append({"level": level, **_level_row(self.experts, g, c, e, weights)})
        return rows


def _level_row(experts, gram: np.ndarray, cross: np.ndarray, error: np.ndarray, weights) -> dict:
    diag = np.clip(np.diag(gram), 1e-30, None)
    joint = np.linalg.solve(gram + RIDGE * diag.mean() * np.eye(len(experts)), cross)
    row = {"cos": dict(zip(experts, cross / np.sqrt(diag * error))),
           "norm": dict(zip(experts, np.sqrt(diag / error))),
           "solo_weight": dict(zip(experts, cross / diag)),
           "solo_removed": dict(zip(experts, cross ** 2 / (diag * error))),
           "joint_weight": dict(zip(experts, joint)),
           "joint_removed": float(_removed(joint, gram, cross, error)),
           "pair_cos": {f"{a}|{b}": float(gram[i, j] / np.sqrt(diag[i] * diag[j]))
                        for i, a in enumerate(experts) for j, b in enumerate(experts) if i < j}}
    if weights is not None:
        row["removed_at_weights"] = float(_removed(np.array([weights[n] for n in experts]), gram, cross, error))
    return {k: ({n: float(x) for n, x in v.items()} if isinstance(v, dict) and k != "pair_cos" else v)
            for k, v in row.items()}


def _removed(w: np.ndarray, gram: np.ndarray, cross: np.ndarray, error: float) -> float:
    """Share of ``|r|^2`` that ``r - sum_i w_i c_i`` no longer has (negative: the terms add error)."""
    return (2 * w @ cross - w @ gram @ w) / error


def _unit_expert(world, name: str) -> Expert:
    """The expert of that name over the world's history (as its variant composes it), at weight 1: its term is
    its contrast."""
    if name not in world.denoisers and name not in world.outside:
        raise InputError(f"this world has no {name} expert (has: {', '.join([*world.denoisers, *world.outside])})")
    return replace(world.experts(name)[1][0], weight=1.0)


@torch.no_grad()
def contrast_sums(world, truth: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None,
                  experts: tuple[str, ...], levels: tuple[int, ...] | None = None, seed: int = 0) -> ContrastSums:
    """:class:`ContrastSums` of ``experts`` on the frames ``truth`` (B,F,C,H,W) that follow the world's observed
    history, with their actions (B,F,A) and poses; ``levels`` default to those the world's sampler visits."""
    if world.frames is None:
        raise InputError("observe() a history before measuring contrasts")
    if truth.shape[:2] != action.shape[:2]:
        raise InputError(f"{truth.shape[1]} true frames and {action.shape[1]} actions do not match")
    scheduler = world.scheduler
    if levels is None:
        scheduler.set_timesteps(world.steps)
        levels = tuple(int(t) for t in scheduler.timesteps)
    prior, members = world.experts("base")[0], [_unit_expert(world, n) for n in experts]
    truth, gen = truth.to(world.device), torch.Generator().manual_seed(seed)
    all_action = torch.cat([world.action, action.to(world.device)], 1)
    all_pose = None if world.pose is None or pose is None else torch.cat([world.pose, pose.to(world.device)], 1)
    B, E, L, chunk = len(truth), len(members), len(levels), world.cfg.future
    gram, cross, error = np.zeros((B, L, E, E)), np.zeros((B, L, E)), np.zeros((B, L))
    for f in range(0, truth.shape[1] - chunk + 1, chunk):
        frames, end = torch.cat([world.frames, truth[:, :f]], 1), world.frames.shape[1] + f + chunk
        history = History(frames, all_action[:, :end], None if all_pose is None else all_pose[:, :end],
                          context_noise=torch.randn(frames.shape, generator=gen).to(world.device),
                          context_level=world.cfg.context_noise_level)
        if any(e.views for e in members):
            history.views, history.view_pose = world.place_views_for(all_pose[:, end - 1])
        fns = [composed_eps_fn(prior, group, history, scheduler, bf16=world.bf16)
               for group in [[], *([e] for e in members)]]
        x0 = truth[:, f:f + chunk]
        for i, t in enumerate(levels):
            eps = torch.randn(x0.shape, generator=gen).to(world.device)
            x_t = add_noise(x0, eps, alpha_bar(scheduler, torch.full(x0.shape[:2], t, device=world.device)))
            base = fns[0](x_t, t)
            r = (eps - base).flatten(1).double()
            c = torch.stack([(fn(x_t, t) - base).flatten(1).double() for fn in fns[1:]], 1)  # (B,E,D)
            gram[:, i] += torch.einsum("bid,bjd->bij", c, c).cpu().numpy()
            cross[:, i] += torch.einsum("bid,bd->bi", c, r).cpu().numpy()
            error[:, i] += (r * r).sum(1).cpu().numpy()
    return ContrastSums(tuple(experts), tuple(levels), gram, cross, error)
