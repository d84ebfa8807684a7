"""WorldModel: observe a history, memorize it, imagine the future with composed memory experts.

    world = WorldModel(base, base_cfg, stm=(stm, stm_cfg), sltm=(sltm, sltm_cfg))
    world.observe(frames, action, pose)      # (B,N,C,H,W), (B,N,A), (B,N,P)
    world.memorize(steps=50)                  # one LoRA memory per episode of the batch (and per expert)
    future = world.imagine(future_action, future_pose, variant="come")

Variants (the ablation table): ``base`` (prior alone), ``ltm`` (+ long-term
memory: adapters on vs off), ``stm`` (+ short-term memory: long context vs
noised), ``sltm`` (+ spatial memory: a pose-conditioned model with its own
memorized adapters, pose given vs dropped or adapters off: ``sltm_null``), ``place`` (+ place
memory: a model given the history frames seen from the poses nearest each frame it generates,
views given vs left out; no memorization; ``place=(base, cfg)`` makes the base its own place memory), each pair
(``ltm+stm``, ``ltm+place``...: any ``+``-joined set of experts), ``come`` (every expert of ``come_experts`` the
world has, contrastive), ``poe`` (the naive product of the same experts) and ``hg``
(history guidance HG-v on the base). The built-in experts are :data:`come.experts.EXPERTS` (each entry
builds its expert over the history: a new one is one entry), the variants :mod:`come.variants`. Your own experts
(``experts=[Expert(...)]``, any :class:`~come.compose.Denoiser`, :mod:`come.denoisers` for diffusers
models) are variants of their own name and join ``come`` and ``poe``.

One pose track serves every expert: a base model without a pose input ignores
it (Memory Maze: the absolute pose, for the SLTM), a Memory Cards base reads it
as the cursor.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from .compose import RULES, DiTDenoiser, Expert, History, composed_eps_fn, history_guidance
from .data.places import nearest_views, relative_view_pose
from .diffusion.sampling import autoregress
from .diffusion.schedule import make_scheduler
from .errors import InputError
from .memory import LoRAMemory
from .datasets import DATASETS, dataset_spec
from .experts import EXPERTS
from .recipes import RECIPES, Recipe
from .models.dit import VideoDiT
from .presets import TrainConfig
from .variants import COMPOSITIONS, experts_of, variant_experts

# the spatial expert's baseline: its memorized adapters with the pose dropped, or the pose kept and the adapters off
SLTM_NULLS = ("pose_drop", "adapters_off")
HG_WEIGHT = 1.5  # the history-guidance scale


class ExpertWeights(dict):
    """Contrast weights ``w_i`` by expert name, and the history-guidance scale ``hg``: each expert's default
    (:data:`come.experts.EXPERTS`; the place memory's 2 gained more than 1 and 1.5 on dev revisit windows) where
    not given; :meth:`of_dataset` starts from a dataset's own (``DatasetSpec.weights``)."""

    def __init__(self, **weights: float):
        unknown = set(weights) - set(EXPERTS) - {"hg"}
        if unknown:
            raise InputError(f"no expert named {', '.join(sorted(unknown))} to weigh (choose from "
                             f"{', '.join([*EXPERTS, 'hg'])})")
        super().__init__({**{name: e.weight for name, e in EXPERTS.items()}, "hg": HG_WEIGHT, **weights})

    @classmethod
    def of_dataset(cls, dataset: str | None, **weights: float) -> "ExpertWeights":
        """The weights of a dataset's worlds (its DatasetSpec.weights over the experts' defaults), then ``weights``;
        None values are left out."""
        own = DATASETS[dataset].weights if dataset in DATASETS else {}
        return cls(**{**own, **{k: w for k, w in weights.items() if w is not None}})


def _check_experts(come_experts, experts, sltm_null: str, networks: dict) -> None:
    """Refuse a world's expert settings before any network is wrapped with memory adapters."""
    if not set(come_experts) <= set(EXPERTS):
        raise InputError(f"come_experts {list(come_experts)}: choose from {', '.join(EXPERTS)}")
    clash = [e.name for e in experts if e.name in set(EXPERTS) | set(variant_experts())]
    if clash:
        raise InputError(f"expert name(s) {', '.join(clash)} are taken by come's own experts or variants")
    if sltm_null not in SLTM_NULLS:
        raise InputError(f"unknown sltm_null '{sltm_null}' (choose from {', '.join(SLTM_NULLS)})")
    for name, (network, cfg) in networks.items():
        if name not in EXPERTS or not EXPERTS[name].own_network:
            raise InputError(f"no expert '{name}' runs on a network of its own (those that do: "
                             f"{', '.join(n for n, e in EXPERTS.items() if e.own_network)})")
        problem = EXPERTS[name].misfit(network, cfg)
        if problem:
            raise InputError(problem)


class WorldModel:
    """A base world model with memory experts (see module docstring)."""

    def __init__(
        self,
        base: VideoDiT,
        base_cfg: TrainConfig,
        rank: int = 32,
        weights: ExpertWeights | None = None,
        steps: int = 20,
        bf16: bool = False,
        targets: tuple[str, ...] | None = None,
        sltm_null: str = "pose_drop",
        come_experts: tuple[str, ...] | None = None,
        experts: Sequence[Expert] = (),
        sampler: str = "ddim",
        compile: bool = False,
        **networks: tuple[VideoDiT, TrainConfig] | None,
    ):
        """``networks``: the network and training config of each built-in expert that runs on one of its own
        (``stm=(model, cfg)``, ``sltm=...``, ``place=...``: :data:`come.experts.EXPERTS`); None leaves it out.
        ``experts``: your own :class:`~come.compose.Expert` objects. ``targets``: the modules LoRA adapts.
        ``compile``: sample through ``torch.compile``d networks (:func:`come.runtime.compiled`)."""
        networks = {name: net for name, net in networks.items() if net is not None}
        _check_experts(come_experts or (), experts, sltm_null, networks)
        self.come_experts = tuple(EXPERTS) if come_experts is None else tuple(come_experts)
        # your own experts: each is a variant of its own (the prior and it) and joins come and poe
        self.outside = {e.name: e for e in experts}
        self.cfg, self.sltm_null = base_cfg, sltm_null
        self.sampler, self.scheduler = sampler, make_scheduler(base.config.num_train_timesteps, sampler)
        self.configs = {"ltm": base_cfg} | {name: cfg for name, (_, cfg) in networks.items()}
        self.memories = {name: LoRAMemory(net, rank=rank, targets=targets, adapter=name)
                         for name, (net, _) in {"ltm": (base, base_cfg), **networks}.items()
                         if EXPERTS[name].memorized}
        self.memory = self.memories["ltm"]  # the long-term memory, on the base model
        self.base = DiTDenoiser(self.memory.model, compile)
        # an expert whose network is the base shares its denoiser: its null is then the prior's own pass, and
        # at w = 1 it costs one pass (the place memory of a base that takes views)
        self.denoisers = {"ltm": self.base} | {
            name: self.base if net is base else DiTDenoiser(self.memories[name].model if name in self.memories
                                                            else net.eval(), compile)
            for name, (net, _) in networks.items()}
        self.weights = weights or ExpertWeights.of_dataset(base_cfg.dataset)
        self.steps, self.bf16 = steps, bf16
        self.device = next(base.parameters()).device  # the experts' networks are on it too
        self.frames = self.action = self.pose = None
        self.memorized: set[str] = set()  # the memories fitted on the current history

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: torch.device | str = "cpu",
                        **kwargs) -> "WorldModel":
        """A world on a shipped model (by name: ``cards-tiny``, ``maze-place``) or a run folder, with each
        built-in expert's network given by its name (``stm=``, ``sltm=``, ``place=``) as a shipped name or run
        folder too (or as ``(model, config)``); a base that fits an expert that a base may serve (a place memory)
        is also that expert; every network is loaded onto ``device``. Other ``kwargs`` go to the constructor."""
        from .checkpoint import load_model, model_path

        base, cfg = load_model(name_or_path, device)
        runs = {name: kwargs.pop(name) for name in EXPERTS if name in kwargs}
        networks = {}
        for name, run in runs.items():
            if isinstance(run, (str, Path)) and model_path(run).resolve() == model_path(name_or_path).resolve():
                run = (base, cfg)
            networks[name] = load_model(run, device) if isinstance(run, (str, Path)) else run
            expert = EXPERTS[name]
            if networks[name] is not None and expert.pose and networks[name][1].pose != expert.pose:
                raise InputError(f"{run}: the {expert.label} must be trained on the {expert.pose} pose")
        for name, expert in EXPERTS.items():
            if expert.base_serves and networks.get(name) is None and not expert.misfit(base, cfg):
                networks[name] = (base, cfg)
        return cls(base, cfg, **networks, **kwargs)

    @property
    def place_views(self) -> int:
        """The views the place memory takes (0: the world has none)."""
        return self.denoisers["place"].config.views if "place" in self.denoisers else 0

    def observe(self, frames: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None = None,
                keep_memory: bool = False) -> None:
        """Set the history (B,N,C,H,W) with its actions (B,N,A) and poses (B,N,P).

        Forgets earlier memory unless ``keep_memory`` (streaming: the same episodes, later frames).
        """
        if frames.ndim != 5 or action.shape[:2] != frames.shape[:2]:
            raise InputError(f"history frames (B,N,C,H,W) {tuple(frames.shape)} and actions (B,N,A) "
                             f"{tuple(action.shape)} do not match")
        if len(frames[0]) < self.cfg.context:
            raise InputError(
                f"a history of {len(frames[0])} frames is shorter than the base context {self.cfg.context}")
        if keep_memory and self.frames is not None and len(frames) != len(self.frames):
            raise InputError(f"keep_memory needs the same {len(self.frames)} episodes, got {len(frames)}")
        for name in self.denoisers:
            if EXPERTS[name].check_history is not None:
                EXPERTS[name].check_history(self, frames, pose)
        self.frames, self.action = frames.to(self.device), action.to(self.device)
        self.pose = None if pose is None else pose.to(self.device)
        if not keep_memory:
            for memory in self.memories.values():
                memory.reset()
            self.memorized = set()

    @property
    def episode_adapters(self) -> tuple[str, ...]:
        return tuple(f"episode{b}" for b in range(len(self.frames)))

    def memorize(self, recipe: str | Recipe | None = None, seed: int = 0, progress: bool = False,
                 recent: int | None = None, experts=None, **overrides) -> list[list[float]]:
        """Memorize each episode of the history (its last ``recent`` frames, if given) into its own adapter,
        in every memory (LTM, and SLTM when there is one) or those of ``experts``; returns the loss curves,
        per memory then per episode.

        ``recipe`` names the settings (:data:`~come.recipes.RECIPES`: ``cards``, ``cards-play`` or ``maze``; by
        default the one of the base model's dataset), or is a :class:`~come.recipes.Recipe`; ``overrides`` change any
        field of the recipe (``steps``, ``lr``, ``batch_size``...), of the noise levels (``high_min``...; by
        default those each memory's network was trained with), ``grad_clip`` or ``first_frames``.
        """
        if self.frames is None:
            raise InputError("observe() a history before memorize()")
        recipe = recipe or dataset_spec(self.cfg.dataset, "the base model").recipe
        if isinstance(recipe, str):
            if recipe not in RECIPES:
                raise InputError(f"unknown memorization recipe '{recipe}' (choose from {', '.join(RECIPES)})")
            recipe = RECIPES[recipe]
        recipe_changes, level_changes, others = Recipe.split(overrides)
        recipe = replace(recipe, **recipe_changes)
        chosen = {e: m for e, m in self.memories.items() if experts is None or e in experts}
        curves = []
        part = slice(-recent if recent else None, None)
        for expert, memory in chosen.items():
            cfg = self.configs[expert]
            levels = replace(cfg.noise_levels(), **level_changes)
            inverse_actions = dataset_spec(cfg.dataset, f"the {expert} model").inverse_actions if recipe.undo else None
            for b, name in enumerate(self.episode_adapters):
                curves.append(memory.memorize(
                    self.frames[b, part], self.action[b, part], None if self.pose is None else self.pose[b, part],
                    recipe, cfg.context, cfg.future, levels, bf16=self.bf16, seed=seed + b, progress=progress,
                    adapter=name, inverse_actions=inverse_actions, **others))
        self.memorized |= set(chosen)
        return curves

    def save_memories(self, folder: str | Path, expert: str = "ltm") -> list[Path]:
        """Save what ``expert`` memorized of each episode of the history: ``folder/<expert>_<b>.safetensors``."""
        memory = self._memorized(expert)
        return [memory.save(Path(folder) / f"{expert}_{b}.safetensors", name)
                for b, name in enumerate(self.episode_adapters)]

    def load_memories(self, folder: str | Path, expert: str = "ltm") -> None:
        """Load the memories :meth:`save_memories` wrote, one per episode of the observed history, instead of
        memorizing it again."""
        if self.frames is None:
            raise InputError("observe() a history before load_memories()")
        if expert not in self.memories:
            raise InputError(f"this world has no {expert} memory (has: {', '.join(self.memories)})")
        for b, name in enumerate(self.episode_adapters):
            self.memories[expert].load(Path(folder) / f"{expert}_{b}.safetensors", name)
        self.memorized.add(expert)

    def memory_states(self) -> dict[str, list[dict[str, torch.Tensor]]]:
        """What each memory memorized of each observed episode, {expert: [its adapter's weights per episode]}:
        :meth:`set_memory_states` gives them to these episodes again after another :meth:`observe`."""
        return {e: [self._memorized(e).state(name) for name in self.episode_adapters] for e in self.memorized}

    def set_memory_states(self, states: dict[str, list[dict[str, torch.Tensor]]]) -> None:
        """Give each observed episode the memories ``states`` (as :meth:`memory_states` returns them, one per
        episode) instead of memorizing its history."""
        if self.frames is None:
            raise InputError("observe() a history before set_memory_states()")
        for expert, per_episode in states.items():
            if expert not in self.memories or len(per_episode) != len(self.frames):
                raise InputError(f"set_memory_states: {expert} needs one memory per observed episode "
                                 f"({len(self.frames)}), got {len(per_episode)}")
            for state, name in zip(per_episode, self.episode_adapters):
                self.memories[expert].set_state(state, name)
            self.memorized.add(expert)

    def _memorized(self, expert: str) -> LoRAMemory:
        if expert not in self.memorized:
            raise InputError(f"{expert} has memorized nothing yet: memorize() or load_memories() first")
        return self.memories[expert]

    def members(self, variant: str) -> tuple[str, ...]:
        """The experts a variant composes on top of the prior (the variant table, ``come.variants``)."""
        if variant in self.outside:
            return (variant,)
        names = experts_of(variant)
        if names is None:
            known = ", ".join((*variant_experts(), *self.outside))
            raise InputError(f"unknown variant '{variant}' (choose from {known}, or experts joined by +)")
        if variant in COMPOSITIONS:
            return tuple(e for e in names if e in self.come_experts and e in self.denoisers) + tuple(self.outside)
        missing = [e for e in names if e not in self.denoisers]
        if missing:
            raise InputError(f"variant '{variant}' needs a {' and a '.join(EXPERTS[e].label for e in missing)} model")
        return names

    def predict(self, frames: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None,
                future_action: torch.Tensor, future_pose: torch.Tensor | None, variants, seed: int = 0,
                progress: bool = False, **memorize) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """:meth:`observe` a history, :meth:`memorize` it (with the ``memorize`` settings) when a variant needs
        memory, and :meth:`imagine` the future under each variant (once per :meth:`composition`); returns the
        predictions per variant and the seconds spent memorizing (``memorize``) and in each variant."""
        self.observe(frames, action, pose)
        seconds = {}
        needed = self.memories_for(variants)
        if needed:
            t0 = time.time()
            self.memorize(seed=seed, progress=progress, experts=needed, **memorize)
            seconds["memorize"] = time.time() - t0
        preds, spent = self.imagine_variants(future_action, future_pose, variants, seed, progress)
        return {v: pred.to(frames.device) for v, pred in preds.items()}, seconds | spent

    def imagine_variants(self, action: torch.Tensor, pose: torch.Tensor | None, variants, seed: int = 0,
                         progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """:meth:`imagine` the future under each variant, once per :meth:`composition`; returns the predictions
        and the seconds per variant."""
        preds, seconds, first_of = {}, {}, {}
        for v in variants:
            same = first_of.setdefault(self.composition(v), v)  # e.g. come when it composes the place memory alone
            if same != v:
                preds[v], seconds[v] = preds[same], seconds[same]
                continue
            t0 = time.time()
            preds[v] = self.imagine(action, pose, variant=v, seed=seed, progress=progress)
            seconds[v] = time.time() - t0
        return preds, seconds

    def frames_read(self) -> int | None:
        """The most history frames an expert reads while imagining: the longest context, or None (any of them)
        with a place memory, which looks its views up anywhere in the history, or an expert of yours whose
        context counts from the history's start."""
        contexts = [e.context for e in self.outside.values()] + [e.null_context for e in self.outside.values()
                                                                 if e.null_context is not None]
        reads = [EXPERTS[name].reads(self) for name in self.denoisers]
        if None in reads or any(not isinstance(c, int) and max(c) >= 0 for c in contexts):
            return None
        last = [c if isinstance(c, int) else -min(c) for c in contexts]
        return max(self.cfg.context, *reads, *last)

    def composition(self, variant: str) -> tuple:
        """What a variant computes: two variants with the same composition draw the same frames."""
        if variant == "hg":
            return ("hg",)
        return ("poe" if variant == "poe" else "contrastive", self.members(variant))

    def memories_for(self, variants) -> set[str]:
        """The experts that memorize() fits which these variants compose."""
        return {e for v in variants for e in self.members(v) if e in self.memories}

    def experts(self, variant: str) -> tuple[Expert, list[Expert], str]:
        """(prior, experts, rule) of a variant."""
        w, k = self.weights, self.cfg.context
        if variant == "hg":
            return (*history_guidance(self.base, k, weight=w["hg"]), "contrastive")
        names = self.members(variant)
        missing = [e for e in names if e in self.memories and e not in self.memorized]
        if missing:
            raise InputError(f"variant '{variant}' needs memorize() first (of {', '.join(missing)})")
        experts = [self.outside[e] if e in self.outside else Expert(e, weight=self.weights[e], **EXPERTS[e].build(self))
                   for e in names]
        return Expert("base", self.base, k), experts, ("poe" if variant == "poe" else "contrastive")

    @torch.no_grad()
    def imagine(self, action: torch.Tensor, pose: torch.Tensor | None = None, variant: str = "come",
                seed: int = 0, progress: bool = False, stats: dict | None = None) -> torch.Tensor:
        """Generate one frame per future action (B,F,A), ``future`` frames at a time; returns (B,F,C,H,W)."""
        if self.frames is None:
            raise InputError("observe() a history before imagine()")
        prior, experts, rule = self.experts(variant)
        all_action = torch.cat([self.action, action.to(self.device)], dim=1)
        all_pose = torch.cat([self.pose, pose.to(self.device)], dim=1) if self.pose is not None and pose is not None \
            else None
        gen = torch.Generator().manual_seed(seed)

        def eps_for(frames: torch.Tensor, f: int):
            N = frames.shape[1]
            history = History(frames, all_action[:, : N + f], None if all_pose is None else all_pose[:, : N + f],
                              context_noise=torch.randn(frames.shape, generator=gen).to(frames.device),
                              context_level=self.cfg.context_noise_level)
            if any(e.views for e in experts):
                history.views, history.view_pose = self.place_views_for(all_pose[:, N + f - 1])
            return composed_eps_fn(prior, experts, history, self.scheduler, rule, self.bf16, stats)

        return autoregress(eps_for, self.frames, action.shape[1], self.cfg.future, self.scheduler, self.steps, gen,
                           progress, f"imagine {variant}", sampler=RULES[rule])

    def place_views_for(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The place views (B,R,C,H,W) for frames to be seen from ``target`` (B,4), with their relative
        poses (B,R,4): the observed frames before the base context nearest in pose (come.data.places),
        as in training, where they come from before the clip."""
        end = self.frames.shape[1] - self.cfg.context
        views, poses = [], []
        for frames, pose, t in zip(self.frames, self.pose, target):
            idx = torch.from_numpy(nearest_views(pose[:end].cpu().numpy(), t[None].cpu().numpy(), self.place_views)[0])
            views.append(frames[idx])
            poses.append(relative_view_pose(pose[idx], t))
        return torch.stack(views), torch.stack(poses)

    def stream(
        self,
        frames: torch.Tensor,
        action: torch.Tensor,
        pose: torch.Tensor | None = None,
        start: int = 50,
        window: int = 50,
        updates: int = 25,
        horizon: int = 4,
        iterations: int = 11,
        variant: str = "come",
        seed: int = 0,
        progress: bool = False,
        **memorize,
    ) -> list[dict]:
        """Streaming memory over whole episodes (B,T,...): the memory keeps learning as frames arrive.

        From frame ``start``, ``iterations`` times: observe every frame so far (the place memory
        retrieves from all of them), memorize the last ``window`` for ``updates`` steps (the
        adapters carry over from the previous iteration; skipped for variants without memory),
        predict the next ``horizon`` frames, then move on by ``horizon`` observed frames.
        ``memorize`` changes settings of the memorization recipe (:meth:`memorize`).
        Returns per iteration ``position``, ``prediction`` and ``truth`` (B,h,C,H,W).
        """
        end = start + iterations * horizon
        if frames.shape[1] < end or start < self.cfg.context:
            raise InputError(f"streaming from frame {start} for {iterations} x {horizon} frames needs "
                             f"{end} frames and start >= {self.cfg.context}; the episodes have {frames.shape[1]}")
        needed = self.memories_for([variant])
        out = []
        for i in tqdm(range(iterations), desc=f"stream {variant}", unit="iter", disable=not progress):
            pos = start + i * horizon
            self.observe(frames[:, :pos], action[:, :pos], None if pose is None else pose[:, :pos], keep_memory=i > 0)
            if needed:
                self.memorize(seed=seed + i, recent=window, experts=needed, **{**memorize, "steps": updates})
            nxt = slice(pos, pos + horizon)
            pred = self.imagine(action[:, nxt], None if pose is None else pose[:, nxt], variant=variant, seed=seed + i)
            pred = pred.to(frames.device)
            out.append({"position": pos, "prediction": pred, "truth": frames[:, nxt]})
        return out

