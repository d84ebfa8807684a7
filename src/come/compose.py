"""Composition of memory experts: the product of contrastive experts, evaluated in eps-space.

At every denoising step of the frames being generated, ``x_t`` at level ``t``:

    eps = eps_0(x_t | c_0) + sum_i w_i * (eps_i(x_t | C_i) - eps_i(x_t | null_i))

``eps_0`` is the prior (the base network on its short context), each expert ``i``
contributes its prediction with its memory ``C_i`` minus its own prediction
without it (``null_i``: context replaced by pure noise at the maximum level,
adapters off, or pose dropped). The naive product of experts,
``[eps_0 +] sum_i gamma_i * eps_i(x_t | C_i)``, is kept as an ablation; ``gamma``
tempers an expert (``p^gamma``). Every network output is converted to eps
before composing, so v-, x0- and eps-predicting networks mix freely.

:func:`compose_eps` is the one composition function; :func:`composed_eps_fn`
builds the eps hook for :func:`come.diffusion.sampling.run_sampler`, running all
passes through one network in a step as one batched forward (LoRA on and off in
one batch through peft's mixed-adapter batches), identical passes once, and passes whose terms
cancel not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import torch
from diffusers import DDIMScheduler

from .diffusion.sampling import EpsFn, autocast, noise_context
from .diffusion.schedule import alpha_bar, to_eps
from .errors import InputError
from .memory import BASE_ADAPTER
from .runtime import compiled

NULL_KINDS = ("noise", "adapters_off", "pose_drop", "views_drop")
CANCELLED = 1e-9  # a pass whose factors sum below this is left out
# each rule, and the sampler (come.diffusion.sampling.SAMPLERS) that samples what it composes
RULES = {"contrastive": "scheduler", "poe": "product"}


@runtime_checkable
class Denoiser(Protocol):
    """What an expert's network must be: any callable with this signature and two attributes.

    ``__call__(x, levels, action, pose, context, adapter_names)`` takes a clip
    ``x`` (B,T,C,H,W) whose first ``context`` frames are context (clean at level 0,
    noised at the history's ``context_level``, or pure noise at the maximum level when dropped) and the rest noisy at
    ``levels`` (B,T) (integer levels of the shared diffusers schedule), actions
    (B,T,A) and poses (B,T,P) or None; ``adapter_names`` is None or one peft
    adapter name per sample (``"__base__"`` for none); ``views`` is None or the place views
    ``(frames (B,R,C,H,W), relative poses (B,R,4), keep (B,) bool)`` of a place memory. It returns its
    prediction for every frame, of kind ``prediction`` ('v', 'eps' or 'x0').
    """

    prediction: str
    max_frames: int

    def __call__(self, x, levels, action, pose, context: int, adapter_names: list[str] | None = None,
                 views=None): ...


class DiTDenoiser:
    """:class:`Denoiser` over a :class:`~come.models.dit.VideoDiT` (optionally wrapped in a peft model)."""

    prediction = "v"

    def __init__(self, network: torch.nn.Module, compile: bool = False):
        """``compile``: sample through ``torch.compile``'s graph of the network (:func:`come.runtime.compiled`);
        the network itself, which memorization trains, stays as it is."""
        self.network = network
        self.forward = compiled(network) if compile else network
        base = network.get_base_model() if hasattr(network, "get_base_model") else network
        self.config = base.config  # the VideoDiT's architecture
        self.max_frames = base.config.max_frames
        self.has_adapters = hasattr(network, "peft_config")

    def __call__(self, x, levels, action, pose, context, adapter_names=None, views=None):
        names = adapter_names or [BASE_ADAPTER] * len(x)
        place = {} if views is None else dict(zip(("views", "view_pose", "view_keep"), views))
        if not self.has_adapters:
            if any(n != BASE_ADAPTER for n in names):
                raise InputError(f"adapters {sorted(set(names) - {BASE_ADAPTER})} requested on a network without any")
            return self.forward(x, levels, action, pose, context=context, **place)
        missing = set(names) - {BASE_ADAPTER} - set(self.network.peft_config)
        if missing:
            raise InputError(f"adapters {sorted(missing)} do not exist (has: {sorted(self.network.peft_config)})")
        # always name the adapters: without names peft would apply its active adapter to every sample
        return self.forward(x, levels, action, pose, context=context, adapter_names=list(names), **place)


@dataclass
class Expert:
    """A network, the slice of the past it sees, its weight, and how its own baseline is formed.

    ``context``: the last ``k`` history frames (int) or explicit history indices
    (a sequence; negative counts from the end, as for HG-t subsequences).
    ``null``: 'noise' (context frames replaced by pure noise at the maximum
    level), 'adapters_off' (same context, adapter off), 'pose_drop' (pose zeroed) or
    'views_drop' (the place views left out).
    ``views``: the conditional pass sees the history's place views (a place memory).
    ``null_context``: the history its null pass sees, when not its own (HG-t: one null for every
    subsequence), as ``context``.
    ``adapter``: the peft adapter active on the conditional pass (None: none),
    or one adapter name per episode of the batch (each episode its own memory).
    ``null_keep``: with null 'noise', the last ``null_keep`` context frames stay as they are on the
    null pass. A long-context expert (the STM) whose null keeps the prior's own frames contrasts only
    what its older frames add; with every frame noised its null also loses the last frame the prior
    already draws from, and the contrast adds that frame a second time.
    """

    name: str
    denoiser: Denoiser
    context: int | Sequence[int]
    weight: float = 1.0
    null: str = "noise"
    adapter: str | Sequence[str] | None = None
    use_pose: bool = True
    gamma: float = 1.0
    null_keep: int = 0
    views: bool = False
    null_context: int | Sequence[int] | None = None

    def __post_init__(self):
        if self.adapter is not None and not isinstance(self.adapter, str):
            self.adapter = tuple(self.adapter)
        if self.null not in NULL_KINDS:
            raise InputError(f"expert '{self.name}': null must be one of {NULL_KINDS}, got '{self.null}'")
        if not math.isfinite(self.weight) or not math.isfinite(self.gamma):
            raise InputError(f"expert '{self.name}': weight {self.weight} and gamma {self.gamma} must be finite")
        if self.null == "views_drop" and not self.views:
            raise InputError(f"expert '{self.name}': null 'views_drop' needs place views on its conditional pass")
        if self.null == "adapters_off" and self.adapter is None:
            raise InputError(f"expert '{self.name}': null 'adapters_off' needs an adapter on its conditional pass")
        if isinstance(self.context, int) and self.context < 1:
            raise InputError(f"expert '{self.name}': context must be at least one frame")
        if self.null_context is not None and self.null != "noise":
            raise InputError(f"expert '{self.name}': null_context needs null 'noise'")
        if self.null_keep < 0 or (self.null_keep and self.null != "noise"):
            raise InputError(f"expert '{self.name}': null_keep {self.null_keep} needs null 'noise' and must be >= 0")

    def indices(self, n_history: int, null: bool = False) -> tuple[int, ...]:
        """History indices this expert sees (on its null pass if ``null``), in time order."""
        context = self.null_context if null and self.null_context is not None else self.context
        if isinstance(context, int):
            if context > n_history:
                raise InputError(f"expert '{self.name}' sees the last {context} frames; the history has {n_history}")
            return tuple(range(n_history - context, n_history))
        idx = tuple(sorted({i % n_history for i in context}))  # (-1 and N-1 are one frame)
        if not idx or any(not -n_history <= i < n_history for i in context):
            raise InputError(f"expert '{self.name}': context indices {list(context)} fall outside a history of "
                             f"{n_history}")
        return idx


def compose_eps(
    prior: torch.Tensor | None,
    cond: Sequence[torch.Tensor],
    null: Sequence[torch.Tensor | None],
    weights: Sequence[float],
    rule: str = "contrastive",
    gammas: Sequence[float] | None = None,
) -> torch.Tensor:
    """The composition, in eps-space.

    contrastive: ``prior + sum_i w_i (cond_i - null_i)`` (needs a prior and every null_i);
    poe (naive product of experts): ``[prior +] sum_i gamma_i cond_i``.
    """
    if rule not in RULES:
        raise InputError(f"rule must be one of {', '.join(RULES)}, got '{rule}'")
    if len(cond) != len(null) or len(cond) != len(weights):
        raise InputError("cond, null and weights must have one entry per expert")
    if any(not math.isfinite(w) for w in weights):
        raise InputError(f"expert weights must be finite, got {list(weights)}")
    gammas = [1.0] * len(cond) if gammas is None else list(gammas)
    if rule == "contrastive":
        if any(g != 1 for g in gammas):
            raise InputError(f"gamma {list(gammas)} tempers an expert in the naive product (poe) only; "
                             "the contrastive rule weighs each expert by its weight w")
        if prior is None:
            raise InputError("the contrastive composition needs a prior eps_0")
        out = prior.clone()
        for c, n, w in zip(cond, null, weights):
            if n is None:
                raise InputError("the contrastive composition needs every expert's null prediction")
            out = out + w * (c - n)
        return out
    terms = [g * c for c, g in zip(cond, gammas)]
    if prior is not None:
        terms.insert(0, prior)
    if not terms:
        raise InputError("nothing to compose")
    return torch.stack(terms).sum(0)


@dataclass(frozen=True)
class _Pass:
    """One network evaluation needed at a step; equal passes are evaluated once."""

    net: int  # id of the denoiser
    indices: tuple[int, ...]
    noised: int  # leading context frames replaced by pure noise
    adapter: str | tuple[str, ...] | None
    pose: bool
    views: bool = False


@dataclass
class History:
    """What the experts can see: clean frames (B,N,C,H,W), and actions/poses for history + future (B,N+F,·)."""

    frames: torch.Tensor
    action: torch.Tensor
    pose: torch.Tensor | None = None
    context_noise: torch.Tensor | None = field(default=None, repr=False)  # noise for dropped or noised context
    context_level: int = 0  # level at which the experts see the context (0: clean; a model's context_noise_level)
    views: torch.Tensor | None = None  # place views (B,R,C,H,W) for the frames being generated
    view_pose: torch.Tensor | None = None  # where they were seen from, relative to those frames (B,R,4)

    def __post_init__(self):
        if self.frames.ndim != 5:
            raise InputError(f"history frames must be (B,N,C,H,W), got {tuple(self.frames.shape)}")


def _passes(expert: Expert, n_history: int, with_null: bool) -> tuple[_Pass, _Pass | None]:
    idx = expert.indices(n_history)
    net = id(expert.denoiser)
    cond = _Pass(net, idx, 0, expert.adapter, expert.use_pose, expert.views)
    if not with_null:
        return cond, None
    if expert.null == "noise":
        nidx = expert.indices(n_history, null=True)
        null = _Pass(net, nidx, max(len(nidx) - expert.null_keep, 0), expert.adapter, expert.use_pose, expert.views)
    elif expert.null == "adapters_off":
        null = _Pass(net, idx, 0, None, expert.use_pose, expert.views)
    elif expert.null == "views_drop":
        null = _Pass(net, idx, 0, expert.adapter, expert.use_pose, False)
    else:
        null = _Pass(net, idx, 0, expert.adapter, False, expert.views)
    return cond, null


def pass_coefficients(prior: _Pass | None, pairs: Sequence[tuple[_Pass, _Pass | None]], experts: Sequence[Expert],
                      rule: str) -> dict[_Pass, float]:
    """The factor of each distinct pass (the prior's, then each expert's conditional and null pass) in the
    composed eps, in first-use order. Passes whose terms cancel (factor 0) need no network evaluation: an
    expert at ``w = 1`` whose null is the prior's own pass (the LTM with its adapters off, a place memory
    without its views) is that expert alone."""
    factors: dict[_Pass, float] = {} if prior is None else {prior: 1.0}
    for (cond, null), e in zip(pairs, experts):
        w = e.weight if rule == "contrastive" else e.gamma
        factors[cond] = factors.get(cond, 0.0) + w
        if null is not None:
            factors[null] = factors.get(null, 0.0) - w
    return factors


def _pass_inputs(p: _Pass, x: torch.Tensor, t: int, history: History, noise: torch.Tensor, seen: torch.Tensor,
                 num_levels: int) -> tuple:
    """One pass's clip (its context, dropped frames as pure noise, then ``x``), levels, actions, poses and
    per-sample adapter names."""
    B, F, N, idx = len(x), x.shape[1], history.frames.shape[1], list(p.indices)
    ctx = torch.cat([noise[:, idx[:p.noised]], seen[:, idx[p.noised:]]], dim=1)
    levels = torch.full((B, len(idx) + F), t, dtype=torch.long, device=x.device)
    levels[:, :len(idx)] = history.context_level
    levels[:, :p.noised] = num_levels - 1
    action = torch.cat([history.action[:, idx], history.action[:, N:N + F]], dim=1)
    pose = None
    if history.pose is not None:
        pose = torch.cat([history.pose[:, idx], history.pose[:, N:N + F]], dim=1)
        pose = pose if p.pose else torch.zeros_like(pose)
    if isinstance(p.adapter, tuple) and len(p.adapter) != B:
        raise InputError(f"{len(p.adapter)} adapter names for a batch of {B} episodes")
    adapters = list(p.adapter) if isinstance(p.adapter, tuple) else [p.adapter or BASE_ADAPTER] * B
    return torch.cat([ctx, x], dim=1), levels, action, pose, adapters


def _evaluate_passes(net: Denoiser, passes: list[_Pass], x: torch.Tensor, t: int, history: History,
                     noise: torch.Tensor, seen: torch.Tensor, scheduler: DDIMScheduler,
                     bf16: bool) -> list[torch.Tensor]:
    """The eps of each pass of one network, in one batched forward call."""
    B, F, k = len(x), x.shape[1], len(passes[0].indices)
    if k + F > net.max_frames:
        raise InputError(f"an expert gives its network {k} context + {F} frames; it accepts {net.max_frames}")
    clips, levels, actions, poses, adapters = zip(*(_pass_inputs(p, x, t, history, noise, seen,
                                                                 scheduler.config.num_train_timesteps) for p in passes))
    place = {}  # a denoiser without a place memory never sees views
    if any(p.views for p in passes):  # one batch: the views masked out where a pass leaves them out
        keep = torch.tensor([p.views for p in passes], device=x.device).repeat_interleave(B)
        place["views"] = (history.views.repeat(len(passes), 1, 1, 1, 1),
                          history.view_pose.repeat(len(passes), 1, 1), keep)
    with autocast(bf16, x.device):
        out = net(torch.cat(clips), torch.cat(levels), torch.cat(actions),
                  torch.cat(poses) if poses[0] is not None else None, k, sum(adapters, []), **place)
    ab = alpha_bar(scheduler, torch.full((B * len(passes), F), t, device=x.device))
    eps = to_eps(out[:, k:].float(), x.repeat(len(passes), 1, 1, 1, 1), ab, net.prediction)
    return list(eps.split(B))


def composed_eps_fn(
    prior: Expert | None,
    experts: Sequence[Expert],
    history: History,
    scheduler: DDIMScheduler,
    rule: str = "contrastive",
    bf16: bool = False,
    stats: dict | None = None,
) -> EpsFn:
    """The eps hook that composes ``prior`` and ``experts`` at every step (see module docstring).

    ``stats``, if given, receives ``passes`` (distinct network evaluations per
    step, those that cancel left out: :func:`pass_coefficients`) and ``forwards`` (batched forward
    calls per step).
    """
    frames = history.frames
    N, shape = frames.shape[1], frames.shape[2:]
    members = ([prior] if prior is not None else []) + list(experts)
    nets = {id(e.denoiser): e.denoiser for e in members}
    for e in members:
        e.indices(N)
        if e.views and history.views is None:
            raise InputError(f"expert '{e.name}' sees place views; the history has none")
    if history.action.shape[1] < N + 1:
        raise InputError(f"actions cover {history.action.shape[1]} frames; the history alone has {N}")
    noise = history.context_noise
    if noise is None:
        noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(0)).to(frames.device)
    seen = noise_context(frames, history.context_level, scheduler, noise=noise)

    prior_pass = _passes(prior, N, with_null=False)[0] if prior is not None else None
    pairs = [_passes(e, N, with_null=(rule == "contrastive")) for e in experts]
    coefficients = pass_coefficients(prior_pass, pairs, experts, rule)
    groups: dict[tuple[int, int], list[_Pass]] = {}  # one forward call per network and context length
    for p, c in coefficients.items():
        if abs(c) > CANCELLED:
            groups.setdefault((p.net, len(p.indices)), []).append(p)
    if stats is not None:
        stats["passes"], stats["forwards"] = sum(map(len, groups.values())), len(groups)

    def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        if x.shape[2:] != shape:
            raise InputError(f"generated frames {tuple(x.shape[2:])} do not match the history's {tuple(shape)}")
        cancelled = torch.zeros_like(x)  # a pass whose terms cancel: any value gives the same sum
        results = dict.fromkeys(coefficients, cancelled)
        for (net_id, _), passes in groups.items():
            results.update(zip(passes, _evaluate_passes(nets[net_id], passes, x, t, history, noise, seen, scheduler,
                                                        bf16)))
        return compose_eps(
            results[prior_pass] if prior is not None else None,
            [results[c] for c, _ in pairs],
            [results[n] if n is not None else None for _, n in pairs],
            [e.weight for e in experts],
            rule,
            [e.gamma for e in experts],
        )

    return eps_fn


def history_guidance(
    denoiser: Denoiser,
    context: int | Sequence[int],
    weight: float = 1.5,
    subsets: Sequence[Sequence[int]] | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[Expert, list[Expert]]:
    """History guidance of DFoT (Song et al. 2025, "History-Guided Video Diffusion") as (prior, experts).

    HG-v (``subsets`` None): ``eps(null) + w (eps(h) - eps(null))``.
    HG-t: ``eps(null) + sum_i w_i (eps(h_Si) - eps(null))`` over history subsequences ``S_i``, with one
    ``null`` shared by every term: all the frames of the subsequences replaced by pure noise.
    Both are written in the composition's own terms: the prior is the first view ``eps(h_S1)`` and
    that view enters again with weight ``w_1 - 1``, which expands to the formulas above (tested).
    ``context`` is the history the HG-v view sees (last k frames or indices).
    """
    if subsets is None:
        views, ws = [context], [weight]
    else:
        if not subsets:
            raise InputError("HG-t needs at least one history subsequence")
        views = [tuple(s) for s in subsets]
        ws = list(weights) if weights is not None else [weight / len(views)] * len(views)
        if len(ws) != len(views):
            raise InputError("HG-t needs one weight per history subsequence")
    shared = None
    if subsets is not None:
        shared = sorted({i for v in views for i in v})
    prior = Expert("hg-prior", denoiser, views[0])
    experts = [Expert(f"hg-{i}", denoiser, v, weight=w - (i == 0), null="noise", null_context=shared)
               for i, (v, w) in enumerate(zip(views, ws))]
    return prior, experts
