"""kill -9 in the middle of `come train`, `come data cards` and `come data maze`: the resumed or repeated
command completes, leaves no temp file, and gives what an uninterrupted run gives: the same tensors and
metadata in each checkpoint (safetensors orders metadata keys differently in each process), the same
episode bytes."""

import json
import subprocess
import sys
import time

import torch
from safetensors import safe_open

from come.checkpoint import state_metadata
from come.data.cards import generate_dataset
from come.presets import train_config
from come.train import train

COME = [sys.executable, "-c", "from come.cli import app; app()"]


def _killed_when(args, ready, timeout=120.0) -> None:
    """Run ``come args`` and kill -9 it as soon as ``ready()`` holds (or let it finish)."""
    proc = subprocess.Popen(COME + [str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + timeout
    while proc.poll() is None and time.time() < end:
        if ready():
            proc.kill()
            break
        time.sleep(0.01)
    proc.wait()


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _checkpoint(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _losses(run) -> list:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_one(cards_data, tmp_path):
    steps = 20  # test-micro checkpoints every 5 steps
    whole = tmp_path / "whole"
    train(train_config("test-micro", steps=steps), cards_data, whole, progress=False)
    run = tmp_path / "killed"
    args = ["train", "--data", cards_data, "--out", run, "--preset", "test-micro", "--steps", steps]
    _killed_when(args, lambda: (run / "state.safetensors").exists())  # after its first checkpoint
    assert int(state_metadata(run)["step"]) < steps  # killed mid-run
    subprocess.run(COME + [str(a) for a in args] + ["--resume"], check=True, capture_output=True)
    for name in ("model.safetensors", "state.safetensors"):
        (resumed, meta), (uninterrupted, meta_whole) = _checkpoint(run / name), _checkpoint(whole / name)
        assert meta == meta_whole and resumed.keys() == uninterrupted.keys(), name
        assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed), name
    assert _losses(run) == _losses(whole)  # the log holds each step once
    assert not list(run.glob(".*.tmp*"))


def test_a_killed_dataset_generation_repeats_to_the_same_bytes(tmp_path):
    generate_dataset(tmp_path / "whole", 40, seed=3, length=30, progress=False)
    out = tmp_path / "killed"
    args = ["data", "cards", "--out", out, "--episodes", 40, "--length", 30, "--seed", 3]
    _killed_when(args, lambda: len(list((out / "train").glob("ep_*.npz"))) >= 3)
    assert len(list((out / "train").glob("ep_*.npz"))) < 40
    subprocess.run(COME + [str(a) for a in args], check=True, capture_output=True)
    assert _files(out) == _files(tmp_path / "whole")  # meta.json included, no temp file


def test_a_killed_maze_generation_repeats_to_the_same_bytes(maze_walks, tmp_path):
    out = tmp_path / "killed"
    args = ["data", "maze", "--out", out, "--episodes", 2, "--env-steps", 20, "--seed", 2, "--split", "eval",
            "--workers", 1]
    _killed_when(args, lambda: len(list((out / "eval").glob("ep_*.npz"))) >= 1)
    assert len(list((out / "eval").glob("ep_*.npz"))) < 2
    subprocess.run(COME + [str(a) for a in args], check=True, capture_output=True)
    done, whole = _files(out), _files(maze_walks)  # maze_walks: the same command, uninterrupted, in this process
    assert done.keys() == whole.keys() and done == whole  # meta.json included, no temp file
