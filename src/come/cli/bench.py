"""``come bench``: what the device at hand costs, measured side by side in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (Device, JsonOut, Precision, UserError, check_outputs, command_group, expert_options, guard,
                     parse_ints, write_json)
from .worlds import baseline_runs, world_maker, world_settings

bench_app = command_group("bench", "Benchmarks of the device at hand (the compute table).")


@bench_app.command("compute")
@guard
@expert_options
def bench_compute(
    ckpt: str = typer.Option("cards-tiny", help="Base model: a shipped name or a run folder."),
    data: Optional[Path] = typer.Option(None, help=(
        "Memory Maze dataset folder, for a maze model: its first eval/ episode is the one timed.")),
    history: int = typer.Option(200, min=1, help="Maze: history frames before the timed window."),
    frames: int = typer.Option(32, min=1, help="Maze: frames imagined after the history."),
    variants: str = typer.Option("base,ltm,come", help="Variants to time (see 'come eval'); base always."),
    ranks: str = typer.Option("8,32", help="LoRA ranks of the memory, comma-separated: one row each."),
    memorize_steps: int = typer.Option(20, min=1, help="Memorization steps (the paper's budget: 20)."),
    ddim_steps: int = typer.Option(20, min=1, help="DDIM steps per generated frame."),
    seed: int = typer.Option(0, help="Seed of the episode and of the sampling and memorization noise."),
    baselines: Optional[str] = typer.Option(None, help=(
        "Single-model runs to time beside the experts, comma-separated (the paper's Table 2 baselines: presets "
        "maze-full, maze-swa, maze-ssm): each one's parameters, training step and rollout, and the base model's.")),
    train_batch: int = typer.Option(8, min=1, help="Clips per timed training step (--baselines)."),
    precision: Precision = "auto",
    device: Device = "auto",
    json_out: JsonOut = None,
    expert_runs: dict | None = None,
    expert_weights: dict | None = None,
):
    """The compute table (the paper's Table 9): seconds to memorize an episode and to imagine its future per
    variant, for each LoRA rank, each also as a multiple of the base model's rollout, side by side in one run.

    A Memory Cards model is timed on a recall episode (its observe phase memorized, its recall phase
    imagined); a Memory Maze model on a window of the first episode of --data. Prints a markdown table and
    the device; --json writes every figure. With --baselines a second table gives each baseline's parameters,
    seconds per training step (clips cut from the episode's history) and rollout seconds per frame of the same
    future, beside the base model's.
    """
    check_outputs(json_out)
    from ..protocols.compute import compute_table, format_compute_table
    from ..runtime import describe_device, pick_device, use_bf16

    on = pick_device(device)
    bf16 = use_bf16(precision, on)
    rank_list = parse_ints(ranks, "--ranks")
    make_world, world, names = world_maker(ckpt, expert_runs, expert_weights, variants, rank_list[-1], steps=ddim_steps,
                                         device=on, bf16=bf16)
    runs = [ckpt, *baseline_runs(baselines, world.cfg.dataset)]
    episode = _timed_episode(world.cfg, seed, data, history, frames)
    result = compute_table(make_world, episode, names, rank_list, memorize_steps, seed)
    result |= {"ddim_steps": ddim_steps, "device": describe_device(on), "bf16": bf16,
               **world_settings(world, ckpt, expert_runs)}
    typer.echo(format_compute_table(result))
    if len(runs) > 1:
        from ..protocols.costs import format_model_costs, model_costs

        result["baselines"] = model_costs(runs, episode, train_batch, ddim_steps, on, bf16, seed)
        result["train_batch"] = train_batch
        typer.echo("\n" + format_model_costs(result["baselines"], train_batch))
    typer.echo(f"{result['device']}, {'bf16' if bf16 else 'fp32'}; {result['frames']} frames imagined after "
               f"{result['history']}, {ddim_steps} DDIM steps a frame")
    write_json(json_out, result)


def _timed_episode(cfg, seed: int, data: Optional[Path], history: int, frames: int) -> dict:
    """A recall episode for a Memory Cards model; a window of --data's first episode for a Memory Maze one."""
    from ..datasets import dataset_spec, require_protocol

    if "recall" in dataset_spec(cfg.dataset, "--ckpt").protocols:
        from ..protocols.recall import recall_episode

        return recall_episode(seed, 0, cfg)
    require_protocol(cfg.dataset, "maze", "--ckpt")
    if data is None:
        raise UserError("a Memory Maze model is timed on an episode: give --data (a Memory Maze dataset folder)")
    from ..data.episodes import episode_files
    from ..protocols.maze import load_maze_episode, window_batch

    ep = load_maze_episode(episode_files(data, "eval")[0], cfg)
    if len(ep["frames"]) < history + frames:
        raise UserError(f"{data}: its first episode has {len(ep['frames'])} frames, fewer than --history + --frames")
    window = window_batch([ep], [(0, history)], history, frames)
    names = {"history": "frames", "history_action": "action", "history_pose": "pose", "action": "future_action",
             "pose": "future_pose"}
    return {key: window[name][0] for key, name in names.items()}
