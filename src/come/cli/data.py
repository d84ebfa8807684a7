"""``come data``: generate Memory Cards and Memory Maze datasets, or convert your own videos into one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from .common import check_outputs, command_group, guard

data_app = command_group("data", "Generate datasets, or convert your own videos (one compressed .npz per episode + "
                         "meta.json).")


@data_app.command("cards")
@guard
def data_cards(
    out: Path = typer.Option(..., help=(
        "Dataset folder; episodes go to OUT/<split>/ep_00000.npz with OUT/<split>/meta.json.")),
    episodes: int = typer.Option(200, min=1, help="Number of episodes."),
    seed: int = typer.Option(0, help="Seed; the same seed gives byte-identical files."),
    resolution: int = typer.Option(32, help=(
        "Frame size in pixels (multiple of 4, >= 16): 32 for CPU, 48 or 64 for GPU.")),
    length: int = typer.Option(250, min=2, help=(
        "Frames per episode (train/test; zigzag episodes have a fixed length).")),
    split: str = typer.Option("train", help="train | test (random walks) or zigzag (observe-then-recall walks)."),
):
    """Generate Memory Cards episodes: a 4x4 grid of 8 object pairs, a cursor, and 5 actions.

    Per frame: image (H,W,3) uint8, action one-hot (5: up, down, left, right, toggle),
    cursor (row, col), covered (4,4); per episode: layout (4,4) object ids.
    """
    from ..data.cards import generate_dataset

    t = time.time()
    folder = generate_dataset(out, episodes, seed, split, length, resolution)
    typer.echo(f"wrote {episodes} episodes to {folder} in {time.time() - t:.1f}s")


@data_app.command("maze")
@guard
def data_maze(
    out: Path = typer.Option(..., help=(
        "Dataset folder; episodes go to OUT/<split>/ep_00000.npz with OUT/<split>/meta.json.")),
    episodes: int = typer.Option(100, min=1, help="Number of episodes (a re-run with more keeps the finished ones)."),
    size: str = typer.Option("9x9", help="Maze size: 9x9, 11x11, 13x13 or 15x15 (3, 4, 5, 6 objects)."),
    env_steps: int = typer.Option(1000, "--env-steps", "--steps", min=1, help=(
        "Actions per episode (frames = env steps + 1); at most the environment's time limit (9x9: 1000, 15x15: "
        "4000).")),
    seed: int = typer.Option(0, help="Seed; an episode depends only on (seed, split, index)."),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), min=1, show_default="the number of cores", help=(
        "Parallel processes, one episode each.")),
    split: str = typer.Option("train", help=(
        "train or eval (the public dataset's folder names; eval is read as the test split).")),
    noise: float = typer.Option(0.15, min=0.0, max=1.0, help=(
        "Share of uniformly random actions in the explorer's walk.")),
):
    """Generate Memory Maze episodes: the real memory-maze environment, a scripted explorer.

    Needs the 'maze' extra: pip install memory-maze gym mujoco==3.17.0. Renders headless
    with MuJoCo (MUJOCO_GL; when unset EGL, else OSMesa, whichever renders here).

    The explorer follows shortest paths to random free cells with --noise random actions,
    so it often comes back to places it has seen. Episode files have the keys, shapes and
    dtypes of the public Memory Maze offline dataset, T = env steps + 1: image (T,64,64,3)
    uint8; action (T,6) one-hot (noop, forward, left, right, forward+left, forward+right;
    action[0] = 0); reward, terminal, reset (T,); agent_pos, agent_dir (T,2); maze_layout
    (T,S,S); targets_pos, targets_vec (T,K,2); target_pos, target_vec (T,2); target_color.

    Resumable: a re-run skips finished episodes; files are written atomically. On a 2-core
    CPU a 1000-step 9x9 episode takes 40-45 s of one core; 20 of them took 13 minutes with
    --workers 2 on cores shared with another job (about 7 minutes on idle cores).
    """
    from ..data.maze import generate_dataset

    t = time.time()
    folder = generate_dataset(out, episodes, seed, size, env_steps, split, workers, noise)
    typer.echo(f"wrote {episodes} episodes to {folder} in {time.time() - t:.1f}s")


@data_app.command("convert")
@guard
def data_convert(
    videos: Path = typer.Option(..., help=(
        "Folder of videos (.mp4, .avi, .webm, .mov, .mkv, .gif), each NAME.mp4 with its actions NAME.csv or "
        "NAME.npy and, optionally, its poses NAME.pose.csv or NAME.pose.npy.")),
    out: Path = typer.Option(..., help=(
        "Dataset folder; episodes go to OUT/train/ep_00000.npz (and OUT/test/) with a meta.json in each.")),
    actions: Optional[Path] = typer.Option(None, help=(
        "Folder of the actions (and poses) files, when they are not beside the videos.")),
    resolution: int = typer.Option(32, min=8, help="Frame size in pixels: each frame's centred square, resized."),
    num_actions: Optional[int] = typer.Option(None, "--num-actions", min=1, help=(
        "One-hot width of action ids [default: the largest id + 1]; not for action vectors.")),
    test: int = typer.Option(0, min=0, help="The last N videos (by name) go to OUT/test/, the held-out split."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help=(
        "Cut each video into consecutive episodes of at most this many frames [default: one episode a video].")),
):
    """Convert your own videos, with their actions (and poses), into a come dataset.

    Layout: beside each video NAME.mp4 (or .avi, .webm, .mov, .mkv, .gif) lie its
    actions NAME.csv or NAME.npy and, optionally, its poses NAME.pose.csv or
    NAME.pose.npy, e.g. videos/walk1.mp4, videos/walk1.csv, videos/walk1.pose.csv.

    Actions: a CSV may start with a header row. One column holds action ids (0, 1,
    2...), written one-hot; two or more columns are action vectors, kept as
    float32. A video of T frames takes T rows (row t: the action that produced
    frame t) or T-1 rows (row t: the action taken between frames t and t+1; the
    first frame's action is then zeros). A .npy holds (T,) ids or (T, A) vectors.

    Poses: T rows of x, y, yaw (radians) or x, y, cos yaw, sin yaw, stored as
    agent_pos and agent_dir (T,2), which the 'relative' pose source reads.

    Example: come data convert --videos videos --out data --resolution 32 --test 1,
    then declare a dataset with as many actions as it prints (docs/own-data.md) and
    train on data/ with come train.

    Every input is checked before anything is written. Each video is decoded twice
    (once to count its frames), a frame at a time; the same inputs give the same
    bytes.
    """
    from ..data.convert import convert_videos

    check_outputs(folder=out)
    t = time.time()
    result = convert_videos(videos, out, actions, resolution, num_actions, test, max_frames)
    for split in result["splits"].values():
        typer.echo(f"wrote {_count(split['episodes'], 'episode')} ({_count(split['frames'], 'frame')} of "
                   f"{_count(split['videos'], 'video')}) to {split['folder']}")
    about = "one-hot action ids" if result["action_kind"] == "ids" else "action vectors"
    poses = f"; poses: {', '.join(result['pose'])}" if result["pose"] else ""
    typer.echo(f"actions: {about} of width {result['action_dim']}{poses}; {resolution}x{resolution} frames; "
               f"{time.time() - t:.1f}s")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
