"""The datasets come knows, each declared once: its actions, pose source, inverse actions, memorization recipe,
the evaluation protocols that apply to it and the training presets of its world models.

A world model's config names its dataset (``TrainConfig.dataset``); code that depends on the dataset reads
its :class:`DatasetSpec` (:func:`dataset_spec`), never the shape of the actions or the pose. A new dataset is
one :func:`register_dataset` call::

    register_dataset(DatasetSpec("lines", "a dot on a line", actions=("left", "right"), recipe="maze",
                                 presets={"lines-micro": dict(model=dict(resolution=16, patch=8, width=32,
                                                                         depth=2, heads=2, max_frames=4))}))

after which ``come train --preset lines-micro --data FOLDER`` trains a model of it (the episodes' format:
``come.data.episodes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import cards, maze, re10k, recon, teco
from .errors import InputError
from .recipes import Recipe

PROTOCOLS = ("recall", "maze")  # the dataset-specific protocols of come eval (rollouts and sample fit any dataset)


@dataclass(frozen=True)
class DatasetSpec:
    """What a world model of a dataset needs to know about it (see the module docstring)."""

    name: str
    about: str
    actions: tuple[str, ...]  # action names, in the order of the one-hot ``action`` arrays of its episodes
    recipe: str | Recipe  # how its histories are memorized: a name in come.recipes.RECIPES, or a Recipe
    presets: dict[str, dict] = field(default_factory=dict)  # training presets: TrainConfig fields by name
    pose: str | None = None  # where it is (come.data.clips.POSE_SOURCES) when a model or protocol needs a pose
    inverse_actions: tuple[int, ...] | None = None  # the action undoing each action, where every one can be undone
    protocols: tuple[str, ...] = ()  # of PROTOCOLS
    weights: dict[str, float] = field(default_factory=dict)  # contrast weights other than the experts' defaults

    def __post_init__(self):
        if not self.actions:
            raise InputError(f"dataset '{self.name}': declare its actions")
        if self.inverse_actions is not None and sorted(self.inverse_actions) != list(range(len(self.actions))):
            raise InputError(f"dataset '{self.name}': inverse_actions must map each of its {len(self.actions)} "
                             f"actions to one of them, got {list(self.inverse_actions)}")
        unknown = set(self.protocols) - set(PROTOCOLS)
        if unknown:
            raise InputError(f"dataset '{self.name}': unknown protocol(s) {', '.join(sorted(unknown))}")

    @property
    def action_dim(self) -> int:
        return len(self.actions)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset (or replace one of the same name); its presets join ``come train --preset``."""
    taken = {p: d.name for d in DATASETS.values() if d.name != spec.name for p in d.presets}
    clash = sorted(set(spec.presets) & set(taken))
    if clash:
        raise InputError(f"dataset '{spec.name}': preset(s) {', '.join(clash)} belong to another dataset")
    DATASETS[spec.name] = spec
    return spec


def dataset_spec(name: str | None, what: str = "this model") -> DatasetSpec:
    """The registered dataset of that name; a clear error naming ``what`` needed it when there is none."""
    if name is None:
        raise InputError(f"{what} names no dataset (its config has no 'dataset'; train it with a dataset's preset)")
    if name not in DATASETS:
        raise InputError(f"{what}: unknown dataset '{name}' (registered: {', '.join(DATASETS)})")
    return DATASETS[name]


def require_protocol(name: str | None, protocol: str, what: str) -> DatasetSpec:
    """The dataset ``name`` when ``protocol`` applies to it; else one line saying which datasets it fits."""
    spec = dataset_spec(name, what)
    if protocol not in spec.protocols:
        fits = [d.name for d in DATASETS.values() if protocol in d.protocols]
        raise InputError(f"{what} is a model of {spec.name}; the {protocol} protocol needs one of "
                         f"{', '.join(fits)}")
    return spec


def preset_dataset(preset: str) -> str | None:
    """The dataset whose presets include ``preset`` (None: a preset of no one dataset)."""
    return next((d.name for d in DATASETS.values() if preset in d.presets), None)


# Memory Cards, 32x32: one token per card, the cursor as pose (model presets: come.presets.MODEL_PRESETS).
_CARDS_MODEL = dict(context=2, future=1, pose="cursor", high_level_fraction=0.5, high_level_min=800,
                    max_loss_weight=5.0)
register_dataset(DatasetSpec(
    "cards", "Memory Cards: a 4x4 grid of 8 object pairs and a cursor (come data cards)",
    actions=cards.ACTIONS, recipe="cards", pose="cursor", inverse_actions=cards.INVERSE_ACTIONS,
    protocols=("recall",),
    # at 1 the STM's term pulls cards the LTM draws right towards those it saw last; at 0.25 CoME recalls as much as
    # the LTM alone (BENCHMARKS.md, "Memory Cards recall with the short-term memory")
    weights={"stm": 0.25},
    presets={
        "cards-tiny": dict(_CARDS_MODEL, model="cards-tiny", batch_size=64, steps=4000, lr=1.5e-3, sample_every=1000),
        # Short-term memory: 32 context frames; best warm-started from cards-tiny (come train --init, which re-times
        # the positions), with cards-tiny's recipe for learning what actions do.
        # A quarter of the clips keep only cards-tiny's 2 context frames: the STM's null in the composition.
        "cards-stm": dict(_CARDS_MODEL, model="cards-stm", context=32, batch_size=16, steps=600, lr=5e-4,
                          short_context=2, p_short_context=0.25, sample_every=500),
        # A few-second model for tests and smoke runs.
        "test-micro": dict(
            model=dict(resolution=32, patch=8, width=32, depth=2, heads=2, max_frames=6, pose_dim=2),
            context=2, future=2, pose="cursor", batch_size=4, steps=10, warmup=2, ckpt_every=5, sample_every=10,
            log_every=1, sample_steps=2,
        ),
    },
))

# Memory Maze (come data maze, or the public dataset's folders), frames resized to 32x32.
_MAZE_MODEL = dict(context=3, future=1, batch_size=32, steps=20000, lr=1e-3, high_level_fraction=0.5,
                   high_level_min=800, max_loss_weight=5.0, sample_every=1000)
register_dataset(DatasetSpec(
    "maze", "Memory Maze: the real 3-D environment, walked by a scripted explorer (come data maze)",
    actions=maze.ACTIONS, recipe="maze", pose="absolute", protocols=("maze",),
    # chosen on dev revisit windows of seeds 1 and 11 over 2, 3 and 4 (docs/findings.md, "The place memory's weight")
    weights={"place": 3.0},
    presets={
        "maze-tiny": dict(_MAZE_MODEL, model="maze-tiny"),
        "maze-sltm": dict(_MAZE_MODEL, model="maze-sltm", pose="absolute"),
        # Place memory and base model in one network: half the clips keep their views (come.data.places).
        "maze-place": dict(_MAZE_MODEL, model="maze-place", pose="absolute", p_pose_dropout=0.0),
        # Short-term memory: 16 context frames at 16 tokens each; a quarter of the clips keep only the base's 3
        # context frames (its null in the composition).
        "maze-stm": dict(_MAZE_MODEL, model="maze-stm", context=16, short_context=3, p_short_context=0.25),
        # The paper's Table 2 baselines (come.presets.MODEL_PRESETS): single models with a long memory, 16 context
        # frames each, trained alike and evaluated as base models (come eval maze --variants base).
        "maze-full": dict(_MAZE_MODEL, model="maze-full", context=16),
        "maze-swa": dict(_MAZE_MODEL, model="maze-stm", context=16),
        "maze-ssm": dict(_MAZE_MODEL, model="maze-ssm", context=16),
        # The SLTM's pose encoder: per-step motion from frame pairs and actions; a clip is context+future frames.
        "maze-pose": dict(network="pose-encoder", model=dict(resolution=32, width=32, hidden=128,
                                                             motion_scale=[0.1, 0.02, 0.2]),
                          context=1, future=7, pose="relative", batch_size=32, steps=3000, lr=1e-3, sample_every=500),
        "test-pose": dict(network="pose-encoder", model=dict(resolution=32, width=8, hidden=32),
                          context=1, future=3, pose="relative", batch_size=4, steps=10, warmup=2, ckpt_every=5,
                          sample_every=10, log_every=1),
    },
))


# The published datasets the paper also evaluates on, read in their own layouts as downloaded (come.data.teco,
# come.data.re10k, come.data.recon; docs/datasets.md). NAME-tiny: 32x32 for the CPU, maze-tiny's network; the other
# preset of each: the frames' full size for a GPU, DiT-S widths and 256 tokens a frame.
_TINY = dict(model=dict(resolution=32, patch=4, width=192, depth=6, heads=4, max_frames=4, prediction="x0"),
             context=3, future=1, batch_size=32, steps=20000, lr=1e-3, sample_every=1000)


def _full(resolution: int, **settings) -> dict:
    return dict(model=dict(resolution=resolution, patch=resolution // 16, width=384, depth=12, heads=6, max_frames=8,
                           prediction="x0"), context=4, future=4, batch_size=32, steps=100000, lr=1e-4,
                sample_every=5000, **settings)


# DFoT's configurations keep every 2nd DMLab frame and every 4th Minecraft frame.
register_dataset(DatasetSpec(
    "dmlab", "DMLab-40k in TECO's layout: random walks through 3-D mazes, 300 frames of 64x64 each, 3 action ids",
    actions=teco.DMLAB_ACTIONS, recipe="maze",
    presets={"dmlab-tiny": dict(_TINY, frame_skip=2), "dmlab-64": _full(64, frame_skip=2)},
))
register_dataset(DatasetSpec(
    "minecraft", "Minecraft-200k in TECO's layout: random walks in Minecraft, 300 frames of 128x128 each, 4 action "
    "ids (start, forward, turn left, turn right)",
    actions=teco.MINECRAFT_ACTIONS, recipe="maze",
    presets={"minecraft-tiny": dict(_TINY, frame_skip=4), "minecraft-128": _full(128, frame_skip=4)},
))
register_dataset(DatasetSpec(
    "re10k", "RealEstate10K in DFoT's layout: walks through houses filmed for sale, with a camera per frame; the "
    "action is each camera's motion from the one before (translation, rotation vector)",
    actions=re10k.ACTIONS, recipe="maze", presets={"re10k-tiny": dict(_TINY), "re10k-256": _full(256)},
))
register_dataset(DatasetSpec(
    "recon", "RECON in NWM's layout: a wheeled robot driving off-road; the action is its motion (dx, dy, dyaw) in its "
    "own frame, the pose planar (x, y, cos yaw, sin yaw); reading it unpickles (--allow-pickle)",
    actions=recon.ACTIONS, recipe="maze", pose="planar", presets={"recon-tiny": dict(_TINY), "recon-224": _full(224)},
))
