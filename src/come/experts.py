"""The built-in memory experts, one entry each in :data:`EXPERTS`: what network it runs on, what it reads of
the history, its null, its default weight and its command-line options.

A :class:`~come.world.WorldModel` builds every expert it has from this table, at each :meth:`imagine`, over the
history it observed; the command line gives each expert that runs on a network of its own an option
``--NAME RUN`` and each expert a weight ``--w-NAME``. A new built-in expert is one :func:`register_expert`
call with its builder (your own one-off expert needs none of this: ``WorldModel(experts=[Expert(...)])``)::

    register_expert(BuiltinExpert(
        "recent", "recent-frames model", weight=0.5, option="A model over the last 8 frames.",
        build=lambda world: dict(denoiser=world.denoisers["recent"], context=8), reads=lambda world: 8))

The table is plain data (no torch), so the command line reads it without loading any model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import InputError

if TYPE_CHECKING:  # the world builds its experts from this table; the table only reads the world
    import torch

    from .presets import TrainConfig
    from .world import WorldModel


def _fits_anything(network: torch.nn.Module, cfg: TrainConfig) -> str | None:
    return None


@dataclass(frozen=True)
class BuiltinExpert:
    """A built-in memory expert (see the module docstring)."""

    name: str
    label: str  # what messages call its model: "short-term memory"
    weight: float  # its default contrast weight w_i (a dataset may change it: DatasetSpec.weights)
    # the expert over the world's history: the fields of its come.compose.Expert but its name and weight (the
    # world's weights[name])
    build: Callable[[WorldModel], dict]
    reads: Callable[[WorldModel], int | None]  # history frames it reads while imagining (None: any of them)
    option: str | None = None  # help of its --NAME RUN option; None: it runs on the base model (the LTM)
    memorized: bool = False  # fitted on each history at test time: its network gets LoRA adapters of its own
    misfit: Callable[[torch.nn.Module, TrainConfig], str | None] = _fits_anything  # what a network lacks for it
    base_serves: bool = False  # with no network of its own, a base model that fits serves as this expert too
    pose: str | None = None  # the pose source its model must be trained on, when it needs one
    check_history: Callable[[WorldModel, torch.Tensor, torch.Tensor | None], None] | None = None  # at observe()

    @property
    def own_network(self) -> bool:
        return self.option is not None


EXPERTS: dict[str, BuiltinExpert] = {}
# variants that are no one expert (come.variants): the prior alone, history guidance, the compositions
NOT_EXPERTS = ("base", "hg", "come", "poe")


def register_expert(expert: BuiltinExpert) -> BuiltinExpert:
    """Add a built-in expert (or replace one of the same name): worlds build it, variants and the command
    line name it."""
    if expert.name in NOT_EXPERTS or not expert.name.isidentifier():
        raise InputError(f"expert name '{expert.name}' is taken by a variant, or is not a name")
    EXPERTS[expert.name] = expert
    return expert


def memorized_experts() -> tuple[str, ...]:
    """The experts whose memory is fitted at test time (memorize())."""
    return tuple(n for n, e in EXPERTS.items() if e.memorized)


def _ltm(world: WorldModel) -> dict:
    return dict(denoiser=world.base, context=world.cfg.context, adapter=world.episode_adapters, null="adapters_off")


def _stm(world: WorldModel) -> dict:
    # its null keeps the prior's own frames: the contrast is what the older frames add
    return dict(denoiser=world.denoisers["stm"], context=min(world.configs["stm"].context, len(world.frames[0])),
                null_keep=world.cfg.context)


def _place(world: WorldModel) -> dict:
    return dict(denoiser=world.denoisers["place"], context=world.cfg.context, views=True, null="views_drop")


def _sltm(world: WorldModel) -> dict:
    # its own memorized adapters, against the same adapters without the pose (or the pose unmemorized)
    return dict(denoiser=world.denoisers["sltm"], context=world.configs["sltm"].context,
                adapter=world.episode_adapters, null=world.sltm_null)


def _needs_pose(world: WorldModel, frames: torch.Tensor, pose: torch.Tensor | None) -> None:
    if pose is None:
        raise InputError("the spatial expert (sltm) needs the history's poses")


def _needs_places(world: WorldModel, frames: torch.Tensor, pose: torch.Tensor | None) -> None:
    if pose is None or pose.shape[-1] != 4:
        raise InputError("the place memory needs the history's absolute poses (x, y, cos yaw, sin yaw)")
    if frames.shape[1] - world.cfg.context < world.place_views:
        raise InputError(f"the place memory takes {world.place_views} views from before the base context; "
                         f"a history of {frames.shape[1]} frames has {frames.shape[1] - world.cfg.context}")


register_expert(BuiltinExpert(
    "ltm", "long-term memory", weight=1.0, build=_ltm, reads=lambda w: w.cfg.context, memorized=True))
register_expert(BuiltinExpert(
    "stm", "short-term memory", weight=1.0, build=_stm, reads=lambda w: w.configs["stm"].context,
    option="Short-term memory model run (a longer context window, e.g. preset cards-stm or maze-stm)."))
register_expert(BuiltinExpert(
    "place", "place memory", weight=2.0, build=_place, reads=lambda w: None, base_serves=True, pose="absolute",
    misfit=lambda net, cfg: None if net.config.views else "the place memory must be a model that takes place views "
                                                           "(views > 0, e.g. maze-place)",
    check_history=_needs_places,
    option="Place memory model run (preset maze-place): given the history frames seen from the nearest poses "
           "[default: the base model when it takes place views, as the shipped maze-place does]."))
register_expert(BuiltinExpert(
    "sltm", "spatial memory", weight=1.0, build=_sltm, reads=lambda w: w.configs["sltm"].context, memorized=True,
    pose="absolute", check_history=_needs_pose,
    misfit=lambda net, cfg: None if net.config.pose_dim else "the spatial expert (sltm) must be a pose-conditioned "
                                                             "model (pose_dim > 0)",
    option="Spatial memory model run (absolute pose, e.g. preset maze-sltm)."))
