"""Run folders: weights as safetensors, configuration as JSON, every file written atomically.

A run folder holds:

* ``config.json``: the :class:`~come.presets.TrainConfig` (model architecture included);
* ``model.safetensors``: the EMA weights, what sampling and evaluation load;
* ``state.safetensors``: everything ``--resume`` needs to continue bit-for-bit
  (raw weights, EMA, AdamW moments, random-generator states, step).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save

from .datasets import preset_dataset
from .errors import InputError
from .outputs import atomic_write_bytes, writable_folder
from .models.dit import DiTConfig, VideoDiT
from .models.pose_encoder import PoseEncoder, PoseEncoderConfig
from .presets import TrainConfig


class CheckpointError(InputError):
    """A checkpoint or run folder is missing, corrupt or does not fit."""


def save_config(run: Path, cfg: TrainConfig) -> None:
    atomic_write_bytes(Path(run) / "config.json", (json.dumps(cfg.to_dict(), indent=2) + "\n").encode())


def load_config(run: str | Path) -> TrainConfig:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no config.json (is {run} a run folder made by 'come train'?)")
    try:
        saved = json.loads(path.read_text())
        if "dataset" not in saved:  # a run from before configs named their dataset: its preset's
            saved["dataset"] = preset_dataset(saved.get("preset", ""))
        return TrainConfig.from_dict(saved)
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: unreadable config ({e})") from None


def save_weights(path: Path, module: torch.nn.Module, metadata: dict | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()}))


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        tensors = st_load(path.read_bytes())
    except Exception as e:  # safetensors raises SafetensorsError or ValueError, by version and fault
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (first: {bad[0]})")
    return tensors


def build_network(cfg: TrainConfig) -> torch.nn.Module:
    """A freshly initialised network of the kind and architecture ``cfg`` names."""
    config = PoseEncoderConfig if cfg.network == "pose-encoder" else DiTConfig
    unknown = set(cfg.model) - {f.name for f in fields(config)}
    if unknown:
        raise CheckpointError(f"unknown {cfg.network} model setting(s) {', '.join(sorted(unknown))}")
    return (PoseEncoder if cfg.network == "pose-encoder" else VideoDiT)(config(**cfg.model))


SHIPPED_DIR = Path(__file__).parent / "assets"


def shipped_models() -> list[str]:
    """Names of the models shipped in the package (``cards-tiny``, ``maze-place``...)."""
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def model_path(run: str | Path) -> Path:
    """A run or export folder, or the name of a shipped model when no such folder exists."""
    path = Path(run)
    if not path.exists() and str(run) in shipped_models():
        return SHIPPED_DIR / str(run)
    return path


def load_model(run: str | Path, device: torch.device | str = "cpu",
               network: str | None = "dit") -> tuple[torch.nn.Module, TrainConfig]:
    """Load the EMA model of a run folder (or of the folder holding a given ``model.safetensors``, or a
    shipped model by name: :func:`shipped_models`).

    ``network`` is the kind the caller needs (``dit``: a world model; ``pose-encoder``; None: any)."""
    run = model_path(run)
    if run.is_file():
        run = run.parent
    if not run.exists():
        raise CheckpointError(f"{run}: checkpoint not found")
    cfg = load_config(run)
    if network is not None and cfg.network != network:
        raise CheckpointError(f"{run}: this is a {cfg.network} run; a {network} run is needed here")
    try:
        model = build_network(cfg)
    except InputError as e:
        raise CheckpointError(f"{run / 'config.json'}: {e}") from None
    weights = _read_safetensors(run / "model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{run / 'model.safetensors'}: weights do not fit config.json ({first})") from None
    return model.to(device).eval(), cfg


def save_state(
    run: Path,
    step: int,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Write ``state.safetensors`` atomically: all that a bit-for-bit resume needs (the random streams are
    those of the step, ``come.train.step_generator``)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, val in st.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    meta = {
        "step": str(step),
        "param_names": json.dumps([n for n, _ in model.named_parameters()]),  # what each optimizer index is
        "param_groups": json.dumps(opt["param_groups"]),
    }
    atomic_write_bytes(Path(run) / "state.safetensors", save(tensors, metadata=meta))


def state_metadata(run: str | Path) -> dict:
    """The metadata of a run's ``state.safetensors`` (its step and optimizer settings)."""
    path = Path(run) / "state.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises SafetensorsError or OSError, by version and fault
        raise CheckpointError(f"{path}: corrupt training state ({type(e).__name__}: {e})") from None
    missing = [k for k in ("step", "param_groups") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: not a training state written by 'come train' (no {', '.join(missing)})")
    return meta


def load_state(
    run: Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> int:
    """Restore what :func:`save_state` wrote; returns the step to continue from."""
    path = Path(run) / "state.safetensors"
    tensors = _read_safetensors(path)
    meta = state_metadata(run)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit config.json ({str(e).splitlines()[0]})") from None
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    names = [n for n, _ in model.named_parameters()]
    if "param_names" not in meta:
        raise CheckpointError(f"{path}: written by an older come, without its parameter names, which this one "
                              "cannot resume; start a new run")
    saved = json.loads(meta["param_names"])
    if sorted(saved) != sorted(names):
        raise CheckpointError(f"{path}: the optimizer state is of another network; start a new run")
    index = {n: i for i, n in enumerate(names)}
    state = {index[saved[i]]: st for i, st in state.items()}
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"])


def export_model(run: str | Path, dest: str | Path, half: bool = True, force: bool = False) -> Path:
    """Copy a run's EMA weights (fp16 when ``half``) and config into ``dest``: all that sampling needs.
    A run folder is never a ``dest``, and an existing export is replaced only when ``force``."""
    dest = writable_folder(dest)
    if (dest / "state.safetensors").exists():
        raise CheckpointError(f"{dest}: is a training run; export into another folder")
    if (dest / "model.safetensors").exists() and not force:
        raise CheckpointError(f"{dest}: already holds an exported model; pass --force to replace it")
    model, cfg = load_model(run, network=None)
    dest.mkdir(parents=True, exist_ok=True)
    save_config(dest, cfg)
    if half:
        model = model.half()
    save_weights(dest / "model.safetensors", model, {"exported_from": Path(run).resolve().name})
    return dest
