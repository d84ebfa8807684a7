"""Memorization recipes: how a memory is fitted on an episode at test time (:class:`Recipe`), the one each
dataset's protocol uses (:data:`RECIPES`), and the command line's ``--memorize name=value,...`` changes to them
(:func:`parse_settings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .diffusion.loss import NoiseLevels
from .errors import InputError

# learning-rate factor at step i of n
LR_SCHEDULES = {"constant": lambda i, n: 1.0, "cosine": lambda i, n: 0.5 * (1 + math.cos(math.pi * i / max(n, 1)))}
WINDOW_WEIGHTINGS = ("change", "surprise")  # how memorize draws the history's windows


@dataclass(frozen=True)
class Recipe:
    """How a memory is fitted on an episode at test time: the settings of
    :meth:`~come.memory.LoRAMemory.memorize` that a dataset's protocol fixes (the other noise levels and the
    loss weights come from each network's training config)."""

    steps: int = 50
    lr: float = 1e-3
    batch_size: int = 8
    weighting: str = "change"
    boost: float = 4.0
    p_context_dropout: float = 0.0
    p_pose_dropout: float = 0.0
    lr_schedule: str = "constant"
    context: int | None = None  # clean frames before each window's targets (None: the network's training context)
    undo: bool = False  # memorize the history followed by its undoing (come.memory.undone_history)
    views: bool = False  # windows carry their place views (a place memory network): come.memory.window_views

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1:
            raise InputError(f"memorization needs steps >= 0 and batch_size >= 1 (got {self.steps}, {self.batch_size})")
        if self.context is not None and self.context < 1:
            raise InputError(f"memorization context must be at least 1 frame, got {self.context}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"memorization lr must be a positive number, got {self.lr}")
        if not all(0 <= p <= 1 for p in (self.p_context_dropout, self.p_pose_dropout)):
            raise InputError("memorization p_context_dropout and p_pose_dropout must lie in [0, 1]")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"unknown lr_schedule '{self.lr_schedule}' (choose from {', '.join(LR_SCHEDULES)})")
        if self.weighting not in WINDOW_WEIGHTINGS:
            raise InputError(f"unknown window weighting '{self.weighting}' (choose from "
                             f"{', '.join(WINDOW_WEIGHTINGS)})")

    def with_overrides(self, **overrides) -> dict:
        """The recipe's settings as keyword arguments, with ``overrides`` (None values ignored) on top."""
        return {**asdict(self), **{k: v for k, v in overrides.items() if v is not None}}

    @staticmethod
    def split(settings: dict) -> tuple[dict, dict, dict]:
        """``settings`` as (recipe fields, :class:`NoiseLevels` fields, the other arguments of
        :meth:`~come.memory.LoRAMemory.memorize`); a name that is none of them is an error."""
        recipe = {f.name for f in fields(Recipe)}
        levels = {f.name for f in fields(NoiseLevels)} - recipe
        others = set(OTHER_SETTINGS)
        unknown = set(settings) - recipe - levels - others
        if unknown:
            raise InputError(f"unknown memorization setting(s) {', '.join(sorted(unknown))} (choose from "
                             f"{', '.join(sorted(recipe | levels | others))})")
        return tuple({k: v for k, v in settings.items() if k in names} for names in (recipe, levels, others))


# memorize's settings beside the recipe's and the noise levels', with their types (see parse_settings)
OTHER_SETTINGS = {"grad_clip": "float | None", "first_frames": "bool"}


def _parse_value(name: str, kind: str, text: str):
    """``text`` as a value of type ``kind`` (a field's annotation: int, float, str, bool, float | None)."""
    if kind.endswith("| None") and text.lower() == "none":
        return None
    kind = kind.removesuffix(" | None")
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise InputError(f"memorization setting {name}={text}: expected true or false")
        return text.lower() == "true"
    try:
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError:
        raise InputError(f"memorization setting {name}={text}: expected a number ({kind})") from None


def parse_settings(text: str) -> dict:
    """Memorization settings from ``"name=value,..."`` (``--memorize`` on the command line): fields of
    :class:`Recipe` and :class:`NoiseLevels`, ``grad_clip`` and ``first_frames``, each read as its field's type
    and checked as the recipe checks it."""
    settings = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not value:
            raise InputError(f"memorization setting '{item}': expected name=value, e.g. lr=0.05")
        settings[name] = value
    recipe, levels, _ = Recipe.split(settings)  # unknown names are refused here
    kinds = {**{f.name: f.type for c in (Recipe, NoiseLevels) for f in fields(c)}, **OTHER_SETTINGS}
    parsed = {name: _parse_value(name, kinds[name], value) for name, value in settings.items()}
    Recipe(**{k: parsed[k] for k in recipe})  # the recipe's and the noise levels' own checks of the values
    NoiseLevels(**{k: parsed[k] for k in levels})
    return parsed


RECIPES = {
    # Memory Cards: the small place memory at a high learning rate on 128 windows a step, drawn by the base
    # model's surprise (a reveal, not a cursor move), each with one context frame, not the network's two: a
    # window then costs two frames, not three, and at the same time per episode more of them memorize more
    # cards. The history is memorized with its undoing: an episode that starts face up only ever covers its
    # cards, and a memory fitted on that alone draws a card's back where the recall uncovers it; undone, each
    # card is uncovered too (BENCHMARKS.md, "Recall past 0.80").
    "cards": Recipe(steps=20, lr=1e-1, batch_size=128, weighting="surprise", boost=20.0, context=1, undo=True),
    # Memory Cards in play, where cards are covered again: windows drawn by frame change, which covering a card
    # has as much as uncovering it; drawn by surprise, the memory rarely sees a card covered and leaves a ghost
    # of its object there (BENCHMARKS.md, "Playing").
    "cards-play": Recipe(steps=50, lr=1e-1, batch_size=64, weighting="change", boost=20.0, p_context_dropout=0.1),
    # Memory Maze: the best of the settings tried on dev revisit windows (BENCHMARKS.md, "Memory Maze: the
    # LTM and the spatial expert on an x0 base model").
    "maze": Recipe(steps=50, lr=1e-2, batch_size=16, weighting="change", lr_schedule="cosine"),
}
