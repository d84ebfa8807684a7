"""Named configurations: model presets (``build_model``) and training presets, a model preset plus how to
train it (clip layout, batch, steps...); each dataset declares its own (``come.datasets``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .datasets import DATASETS, dataset_spec
from .diffusion.loss import NoiseLevels
from .errors import InputError
from .models.dit import DiTConfig, VideoDiT

NETWORKS = ("dit", "pose-encoder")


@dataclass
class TrainConfig:
    """Everything ``come train`` needs besides the data folder (saved as ``config.json`` in the run)."""

    preset: str
    model: dict = field(default_factory=dict)
    dataset: str | None = None  # its name in come.datasets.DATASETS (None: a model of no declared dataset)
    network: str = "dit"  # dit (a VideoDiT world model) | pose-encoder (come.models.pose_encoder)
    context: int = 2  # clean context frames per clip
    future: int = 4  # noised frames per clip (also the rollout chunk)
    frame_skip: int = 1
    pose: str | None = None  # pose source from come.data.clips.POSE_SOURCES
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 100
    steps: int = 4000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_context_dropout: float = 0.1
    p_pose_dropout: float = 0.1
    p_view_dropout: float = 0.5  # place memory: share of clips trained without their views (the base model)
    view_gap: int = 40  # place memory: views end 0 to this many frames before the clip (come.data.clips)
    high_level_fraction: float = 0.0  # share of clips whose future frames are noised at levels >= high_level_min
    high_level_min: int = 700
    max_loss_weight: float | None = None  # cap on the clean-frame weight SNR+1 of the v-MSE (None: no cap)
    context_noise_max: int = 0  # context frames noised at a random level in [0, this] (rollout robustness)
    context_noise_level: int = 0  # level at which samplers noise the context (0: clean)
    short_context: int = 0  # short-term memory: the prior's context length, which its contrastive null keeps
    p_short_context: float = 0.0  # share of clips that keep only their last short_context context frames
    sample_every: int = 1000
    ckpt_every: int = 250
    log_every: int = 25
    sample_steps: int = 20
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32

    def __post_init__(self):
        if not isinstance(self.model, dict):
            raise InputError(f"'model' must be a mapping of model settings, got {type(self.model).__name__}")
        counts = {"steps": self.steps, "batch_size": self.batch_size}
        bad = [f"{k}={v!r}" for k, v in counts.items() if not isinstance(v, int) or v < 1]
        if bad:
            raise InputError(f"{', '.join(bad)}: must be at least 1")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise InputError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InputError(f"precision must be auto, bf16 or fp32, got '{self.precision}'")
        if self.network not in NETWORKS:
            raise InputError(f"unknown network '{self.network}' (choose from {', '.join(NETWORKS)})")
        if self.context < 1 or self.future < 1:
            raise InputError("context and future must be at least 1 frame each")
        if self.network != "dit":
            return
        max_frames = self.model.get("max_frames", 8)
        if self.context + self.future > max_frames:
            raise InputError(
                f"context {self.context} + future {self.future} exceeds the model's max_frames={max_frames}")

    def noise_levels(self) -> NoiseLevels:
        """How the diffusion loss draws and weighs noise levels for this network: shared by training and
        test-time memorization."""
        return NoiseLevels(self.high_level_fraction, self.high_level_min, self.max_loss_weight, self.context_noise_max)

    @property
    def clip_frames(self) -> int:
        return self.context + self.future

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


MODEL_PRESETS: dict[str, dict] = {
    # Memory Cards, 32x32, one token per card, cursor as pose: CPU-sized.
    "cards-tiny": dict(resolution=32, patch=8, width=192, depth=6, heads=4, max_frames=3, action_dim=5, pose_dim=2,
                       local_action=True, prediction="x0"),
    # Memory Cards, short-term memory: long context, sliding window with two global layers.
    "cards-stm": dict(
        resolution=32, patch=8, width=192, depth=6, heads=4, max_frames=40, action_dim=5, pose_dim=2,
        local_action=True, window=4, global_layers=[2, 5], prediction="x0",
    ),
    # Memory Maze at 32x32 for CPU: 4x4-pixel patches (64 tokens per frame), 6 actions. The base model
    # sees no pose; the spatial expert (SLTM) gets the absolute pose (x, y, cos yaw, sin yaw), a map
    # position rather than a place in the image, so it conditions whole frames (adaLN) only.
    "maze-tiny": dict(resolution=32, patch=4, width=192, depth=6, heads=4, max_frames=4, action_dim=6,
                      prediction="x0"),
    "maze-sltm": dict(resolution=32, patch=4, width=192, depth=6, heads=4, max_frames=4, action_dim=6, pose_dim=4,
                      pose_in_image=False, prediction="x0"),
    # Memory Maze, place memory: maze-tiny that also sees 2 history frames seen from the poses nearest the frame
    # it generates (come.data.places); without them it is its own base model.
    "maze-place": dict(resolution=32, patch=4, width=192, depth=6, heads=4, max_frames=4, action_dim=6, views=2,
                       prediction="x0"),
    # Memory Maze, short-term memory: 17 frames of 8x8-pixel patches (272 tokens a clip, near the base's 256),
    # a sliding window of 4 frames and two global layers. Coarser than the base: in the composition its term
    # adds what the older frames say, the base draws the detail.
    "maze-stm": dict(resolution=32, patch=8, width=192, depth=6, heads=4, max_frames=17, action_dim=6,
                     window=4, global_layers=[2, 5], prediction="x0"),
    # The paper's Table 2 baselines on Memory Maze: one model with a long memory each, at maze-stm's clip and
    # parameter count (docs/models.md); the sliding-window one is maze-stm's network. maze-full attends over the
    # whole clip in every layer. maze-ssm's attention sees 4 frames, and what is older reaches the future through
    # two Mamba blocks (come.models.ssm), each image place scanned across the frames; one attention layer fewer
    # pays for them.
    "maze-full": dict(resolution=32, patch=8, width=192, depth=6, heads=4, max_frames=17, action_dim=6,
                      prediction="x0"),
    "maze-ssm": dict(resolution=32, patch=8, width=192, depth=5, heads=4, max_frames=17, action_dim=6,
                     window=4, ssm_layers=[1, 3], ssm_block=1, prediction="x0"),
    # Larger backbones for GPU users (DiT-S / DiT-B widths), 64x64.
    "dit-s": dict(resolution=64, patch=8, width=384, depth=12, heads=6, max_frames=16),
    "dit-b": dict(resolution=64, patch=8, width=768, depth=12, heads=12, max_frames=16),
}


def build_model(preset: str, **overrides) -> VideoDiT:
    """Build a :class:`VideoDiT` from a named preset, with field overrides."""
    if preset not in MODEL_PRESETS:
        raise InputError(f"unknown model preset '{preset}' (choose from {', '.join(MODEL_PRESETS)})")
    return VideoDiT(DiTConfig(**{**MODEL_PRESETS[preset], **overrides}))


# Presets of no one dataset: larger backbones for GPU users (come train --dataset names the data's dataset).
# Each dataset's own presets are declared with it (come.datasets).
GENERIC_PRESETS: dict[str, dict] = {
    "dit-s": dict(model="dit-s", context=3, future=5, batch_size=64, steps=100000, lr=1e-4),
    "dit-b": dict(model="dit-b", context=3, future=5, batch_size=64, steps=200000, lr=1e-4),
}


def train_presets() -> dict[str, dict]:
    """Every training preset by name: the generic ones, then each registered dataset's, with its ``dataset``."""
    out = {name: dict(p, dataset=None) for name, p in GENERIC_PRESETS.items()}
    for spec in DATASETS.values():
        out |= {name: dict(p, dataset=spec.name) for name, p in spec.presets.items()}
    return out


def train_config(preset: str, dataset: str | None = None, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of a named preset, with field overrides (None values ignored). ``dataset`` names
    the dataset of a generic preset; the model's actions are the dataset's."""
    presets = train_presets()
    if preset not in presets:
        raise InputError(f"unknown preset '{preset}' (choose from {', '.join(presets)})")
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in presets[preset].items()}
    if dataset is not None and settings["dataset"] not in (None, dataset):
        raise InputError(f"preset '{preset}' is for the {settings['dataset']} dataset, not '{dataset}'")
    settings["dataset"] = settings["dataset"] or dataset
    if isinstance(settings.get("model"), str):
        settings["model"] = dict(MODEL_PRESETS[settings["model"]])
    if settings["dataset"] is not None:
        spec = dataset_spec(settings["dataset"], f"preset '{preset}'")
        settings["model"]["action_dim"] = spec.action_dim
    return TrainConfig(preset=preset, **{**settings, **{k: v for k, v in overrides.items() if v is not None}})
