"""``come train``, ``come export`` and ``come presets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import AllowPickle, UserError, app, guard


@app.command()
@guard
def train(
    data: Path = typer.Option(..., help=(
        "Dataset folder with train/ (and optionally test/ for sample videos), or a published dataset's folder as "
        "downloaded (docs/datasets.md).")),
    out: Path = typer.Option(..., help=(
        "Run folder: config.json, model.safetensors (EMA), state.safetensors, tb/, samples/.")),
    preset: Optional[str] = typer.Option(None, help=(
        "Training preset (see 'come presets') [default: cards-tiny, or the run's own with --resume].")),
    dataset: Optional[str] = typer.Option(None, help=(
        "The dataset of --data, for a preset of no one dataset (dit-s, dit-b): its actions size the model.")),
    steps: Optional[int] = typer.Option(None, help="Total training steps (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, help=(
        "Clips per step (default: the preset's); under 'accelerate launch' split across the processes.")),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: the preset's)."),
    precision: str = typer.Option("auto", help="auto (bf16 where the hardware is fast at it), bf16 or fp32."),
    seed: Optional[int] = typer.Option(None, help="Seed for weights, clips and noise."),
    resume: bool = typer.Option(False, "--resume", help=(
        "Continue the run in OUT exactly where its last checkpoint left it, with its own settings (only --steps and "
        "--precision may change).")),
    init: Optional[Path] = typer.Option(None, help=(
        "Start from this run's weights instead of random ones: the same model (fine-tuning), one with a longer "
        "context or another attention window (an STM from a base model), or one that adds a pose input (an SLTM from "
        "a base model, or from maze-place, whose view path it leaves out; the pose path starts at zero); --steps "
        "counts the new steps.")),
    minutes: Optional[float] = typer.Option(None, min=0.0, help=(
        "Stop after this many minutes of training (a time-limited GPU, a night), checkpointed; --resume continues the "
        "run.")),
    workers: int = typer.Option(0, min=0, help=(
        "DataLoader worker processes that cut the clips (0: the training process).")),
    allow_pickle: AllowPickle = False,
):
    """Train a video diffusion world model, or the SLTM's pose encoder (preset maze-pose), on CPU,
    one GPU, or several with 'accelerate launch -m come.cli train ...' (the processes split each batch and
    together take the steps of one process).

    Writes checkpoints every few hundred steps (atomically), TensorBoard scalars to OUT/tb
    and, every K steps, a sample video (truth | prediction) to OUT/samples (world models) or
    the held-out track error to OUT/log.jsonl (the pose encoder).
    """
    from ..checkpoint import load_config
    from ..data.episodes import allowing_pickle
    from ..presets import TrainConfig, train_config
    from ..train import train as run_training

    if resume:  # the run's own configuration; only --steps and --precision may change
        saved = load_config(out)
        if preset is not None and preset != saved.preset:
            raise UserError(f"{out}: was started with preset '{saved.preset}', not '{preset}'")
        cfg = TrainConfig.from_dict({**saved.to_dict(), "steps": steps or saved.steps, "precision": precision})
    else:
        cfg = train_config(preset or "cards-tiny", dataset, steps=steps, batch_size=batch_size, lr=lr,
                           precision=precision, seed=seed)
    with allowing_pickle(allow_pickle):
        summary = run_training(cfg, data, out, resume=resume, init=init, minutes=minutes, workers=workers)
    summary.pop("losses")
    if summary["main_process"]:  # one summary for a run on several processes
        typer.echo(json.dumps(summary))


@app.command()
@guard
def export(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train'."),
    out: Path = typer.Option(..., help="Folder to write config.json and model.safetensors into."),
    fp16: bool = typer.Option(True, "--fp16/--fp32", help="Store the weights in fp16 (half the size)."),
    force: bool = typer.Option(False, "--force", help="Replace an export already in --out."),
):
    """Export a run's EMA weights and config: a small folder that 'sample', 'eval' and 'demo' load."""
    from ..checkpoint import export_model

    dest = export_model(ckpt, out, fp16, force)
    size = (dest / "model.safetensors").stat().st_size / 1e6
    typer.echo(f"wrote {dest}/model.safetensors ({size:.1f} MB) and {dest}/config.json")


@app.command()
def presets():
    """List the training presets with their dataset, network, model size and clip layout."""
    import torch

    from ..checkpoint import build_network
    from ..presets import train_config, train_presets

    typer.echo(f"{'preset':<14} {'dataset':<9} {'network':<12} {'params':>8} {'res':>4} {'patch':>5} {'ctx+fut':>8} "
               f"{'batch':>5} {'steps':>7}")
    for name in train_presets():
        cfg = train_config(name)
        with torch.device("meta"):
            n = sum(p.numel() for p in build_network(cfg).parameters())
        m = cfg.model
        typer.echo(f"{name:<14} {cfg.dataset or '-':<9} {cfg.network:<12} {n / 1e6:>7.2f}M {m['resolution']:>4} "
                   f"{m.get('patch', '-'):>5} {cfg.context:>3}+{cfg.future:<4} {cfg.batch_size:>5} {cfg.steps:>7}")
