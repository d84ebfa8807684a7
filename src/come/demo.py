"""``come demo``: Memory Cards end to end on a CPU in a few minutes.

Generates held-out Memory Cards episodes, loads the ``cards-tiny`` checkpoint
shipped inside the package (or trains a quick one when none is shipped or
``--train-steps`` asks for it), rolls it out against copy-the-last-frame, prints
the table and writes videos, a picture and JSON to the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data.cards import generate_dataset
from .data.clips import tensor_to_frames
from .protocols.rollouts import evaluate_rollouts, format_table
from .sample import episode_tensors, rollout_window
from .checkpoint import load_model

SHIPPED = Path(__file__).parent / "assets" / "cards-tiny"


def filmstrip(ckpt: Path, episode: Path, path: Path, frames: int = 6, scale: int = 3) -> Path:
    """PNG with two rows, truth (top) and rollout (bottom), of one episode window."""
    import imageio.v2 as imageio

    model, cfg = load_model(ckpt)
    ep = episode_tensors(episode, cfg)
    r = rollout_window(model, cfg, ep, 0, cfg.context, frames)
    rows = []
    for x in (r["truth"], r["pred"]):
        f = tensor_to_frames(x)
        f = np.repeat(np.repeat(f, scale, axis=1), scale, axis=2)
        pad = np.full((f.shape[0], f.shape[1], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([np.concatenate([a, p], axis=1) for a, p in zip(f, pad)], axis=1))
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.concatenate([rows[0], gap, rows[1]], axis=0))
    return path


def run_demo(out: Path, ckpt: Path | None = None, episodes: int = 8, train_steps: int | None = None,
             seed: int = 1234, echo=print) -> dict:
    """Run the demo into ``out``; returns the rollout result."""
    out = Path(out)
    data = out / "data"
    generate_dataset(data, episodes, seed=seed, split="test", length=64, progress=False)
    if ckpt is None and (train_steps is not None or not (SHIPPED / "model.safetensors").is_file()):
        from .presets import train_config
        from .train import train

        steps = train_steps or 300
        echo(f"training a quick cards-tiny model for {steps} steps (no shipped checkpoint used)")
        generate_dataset(data, 100, seed=seed + 1, split="train", progress=False)
        ckpt = out / "run"
        train(train_config("cards-tiny", steps=steps, sample_every=steps, ckpt_every=steps), data, ckpt)
    ckpt = Path(ckpt or SHIPPED)
    echo(f"model: {ckpt}")
    result = evaluate_rollouts(ckpt, data, episodes=episodes, frames=5, seed=seed, out=out, videos=episodes)
    table = format_table(result)
    echo(table)
    echo(f"{episodes} held-out episodes, 5 frames rolled out after {result['context']} context frames")
    (out / "rollouts.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "rollouts.md").write_text(table + "\n")
    png = filmstrip(ckpt, sorted((data / "test").glob("*.npz"))[0], out / "rollout.png")
    echo(f"wrote {out}/rollout_*.mp4 (truth | model | copy-last), {png} and {out}/rollouts.json")
    return result
