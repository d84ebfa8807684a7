"""come: Composition of Memory Experts for diffusion video world models.

    import come
    world = come.WorldModel.from_pretrained("cards-tiny")

The names below load on first use, so ``import come`` (and the command line) stays fast.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("come")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

_PUBLIC = {
    "WorldModel": "world", "ExpertWeights": "world", "VARIANTS": "variants", "VARIANT_EXPERTS": "variants",
    "Expert": "compose", "History": "compose", "Denoiser": "compose", "DiTDenoiser": "compose",
    "compose_eps": "compose", "composed_eps_fn": "compose",
    "FrameDenoiser": "denoisers", "RescheduledDenoiser": "denoisers",
    "LoRAMemory": "memory", "Recipe": "memory", "RECIPES": "recipes",
    "run_sampler": "diffusion.sampling", "sample_product": "diffusion.sampling", "make_scheduler": "diffusion.schedule",
    "SAMPLERS": "diffusion.sampling", "SCHEDULERS": "diffusion.schedule",
    "VideoDiT": "models.dit", "DiTConfig": "models.dit",
    "load_model": "checkpoint", "shipped_models": "checkpoint", "TrainConfig": "presets",
    "EXPERTS": "experts", "BuiltinExpert": "experts", "register_expert": "experts",
    "DATASETS": "datasets", "DatasetSpec": "datasets", "register_dataset": "datasets",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'come' has no attribute '{name}'")
