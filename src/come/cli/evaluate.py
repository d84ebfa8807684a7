"""``come eval``: the evaluation protocols (a table on screen, JSON for tools, plots and videos)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (AllowPickle, Compile, Device, JsonOut, Memorize, Precision, Sampler, UserError, check_outputs,
                     command_group, expert_options, guard, parse_ints, parse_memorize, parse_names, write_json)
from .worlds import baseline_runs, run_name, world_maker, world_settings

eval_app = command_group("eval", "Evaluation protocols (a table on screen, JSON for tools, videos).")


@eval_app.command("rollouts")
@guard
def eval_rollouts(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train'."),
    data: Path = typer.Option(..., help=(
        "Dataset folder, or a published dataset's as downloaded (docs/datasets.md); its test split (or the folder "
        "itself) is used.")),
    episodes: int = typer.Option(20, min=1, help="Held-out episodes (one random window each)."),
    frames: int = typer.Option(5, min=1, help="Frames rolled out after the context."),
    seed: int = typer.Option(0, help="Seed for the windows and the sampling noise."),
    ddim_steps: int = typer.Option(20, "--ddim-steps", "--steps", min=1, help="DDIM steps per chunk."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then the CPU)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    out: Optional[Path] = typer.Option(None, help="Folder for videos (truth | model | copy-last)."),
    allow_pickle: AllowPickle = False,
):
    """Score held-out rollouts against copying the last context frame (PSNR, SSIM, card diagnostics)."""
    check_outputs(json_out, out)
    from ..data.episodes import allowing_pickle
    from ..metrics.perceptual import lpips_network
    from ..protocols.rollouts import evaluate_rollouts, format_table
    from ..runtime import pick_device

    on = pick_device(device)
    perceptual, about = lpips_network(on)
    with allowing_pickle(allow_pickle):
        result = evaluate_rollouts(ckpt, data, episodes, frames, seed, ddim_steps, precision, out, device=on,
                                   perceptual=perceptual)
    result["lpips"] = about
    typer.echo(about)
    typer.echo(format_table(result))
    typer.echo(f"{result['episodes']} episodes, {frames} frames after {result['context']} context frames, "
               f"{result['seconds_per_episode']:.2f}s per episode")
    write_json(json_out, result)


@eval_app.command("pose")
@guard
def eval_pose(
    ckpt: Path = typer.Option(..., help="Pose encoder run folder (come train --preset maze-pose)."),
    data: Path = typer.Option(..., help="Memory Maze dataset folder; its eval/ (or test/) split is used."),
    episodes: int = typer.Option(4, min=1, help="Held-out episodes, each tracked from its first frame to its last."),
    delta: int = typer.Option(10, min=1, help="Frames over which the relative pose error (RPE) is measured."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    out: Optional[Path] = typer.Option(None, help="Folder for pose_tracks.png (true and inferred tracks on the maze)."),
):
    """Score the SLTM's pose encoder: whole-episode tracks dead-reckoned from frames and actions
    against the true poses (ATE, RPE and heading error, with evo), and standing still for scale."""
    check_outputs(json_out, out)
    from ..protocols.pose import evaluate_pose, format_table

    result = evaluate_pose(ckpt, data, episodes, delta, out)
    typer.echo(format_table(result))
    typer.echo(f"{result['episodes']} episodes, {result['seconds_per_episode']:.2f}s per episode")
    write_json(json_out, result)


# eval maze's options whose help runs over a line, declared once here so its signature reads one line each
MazeBase = Annotated[Optional[Path], typer.Option("--ckpt", help=(
    "Base model: a Memory Maze run folder (e.g. preset maze-tiny) [default: the shipped maze-place, which is also "
    "the place memory]."))]
PoseEncoderRun = Annotated[Optional[Path], typer.Option("--pose-encoder", help=(
    "Pose encoder run (preset maze-pose): infer the SLTM's poses from frames and actions instead of reading them "
    "from the dataset."))]
MazeVariants = Annotated[Optional[str], typer.Option("--variants", help=(
    "Comma-separated variants, of base, ltm, stm, sltm, place, experts joined by + (ltm+place), come, poe, hg "
    "[default: every memory variant the given models allow, each pair of experts too; poe (the naive product) and "
    "hg (history guidance) on request]."))]
Horizons = Annotated[str, typer.Option("--horizons", help=(
    "Comma-separated shorter horizons also scored on the first frames of the same rollouts (e.g. 16 with "
    "--frames 32): one rollout and one memorization per window for every horizon, on the windows drawn for "
    "--frames."))]
MazeCome = Annotated[str, typer.Option("--come", help=(
    "Experts that come and poe compose (those given), of ltm, stm, place, sltm; the long-term memory lowers CoME "
    "on Memory Maze, so it is left out by default."))]
SltmNull = Annotated[str, typer.Option("--sltm-null", help=(
    "The SLTM's baseline: pose_drop (its memorized adapters without the pose) or adapters_off (the pose without "
    "the memory; with the pose dropped the SLTM fell below the base model on dev windows)."))]
MazeBaselines = Annotated[Optional[str], typer.Option("--baselines", help=(
    "Single-model runs rolled out as their own base on the same fixed and revisit windows, comma-separated (the "
    "paper's Table 2 baselines: presets maze-full, maze-swa, maze-ssm): a row each, named by its folder, with "
    "its per-window difference against the base."))]
MazeOut = Annotated[Optional[Path], typer.Option("--out", help=(
    "Folder for plots (fixed.png, revisits.png, streaming.png) and videos (truth | base | CoME)."))]


@eval_app.command("maze")
@guard
@expert_options
def eval_maze(
    data: Path = typer.Option(..., help="Memory Maze dataset folder; its eval/ (or test/) split is used."),
    ckpt: MazeBase = None,
    pose_encoder: PoseEncoderRun = None,
    protocols: str = typer.Option("fixed,revisits", help="Comma-separated: fixed, revisits, streaming, capacity."),
    variants: MazeVariants = None,
    episodes: int = typer.Option(4, min=1, help="Held-out episodes."),
    history: int = typer.Option(200, min=1, help="History frames before each window (and streaming's start)."),
    frames: int = typer.Option(8, min=1, help="Frames predicted per window (per streaming iteration)."),
    horizons: Horizons = "",
    memorize_steps: int = typer.Option(50, "--memorize-steps", "--steps", min=1, help="Memorization steps per window."),
    updates: int = typer.Option(25, min=1, help="Streaming: memorization steps per iteration."),
    rank: int = typer.Option(32, min=1, help="LoRA rank of the memories."),
    memorize: Memorize = "",
    come_experts: MazeCome = "stm,place,sltm",
    sltm_null: SltmNull = "adapters_off",
    windows: int = typer.Option(2, min=1, help="Windows per episode (fixed and revisits)."),
    min_gap: int = typer.Option(100, min=1, help="Revisits: frames since the place was last seen."),
    iterations: int = typer.Option(11, min=1, help="Streaming iterations."),
    capacity_ranks: str = typer.Option("8,32", help="Capacity sweep: comma-separated LoRA ranks."),
    capacity_histories: str = typer.Option("50,200", help="Capacity sweep: comma-separated history lengths."),
    ddim_steps: int = typer.Option(10, min=1, help="DDIM (or --sampler) steps per generated chunk."),
    sampler: Sampler = "ddim",
    seed: int = typer.Option(0, help="Seed for the windows, memorization and sampling."),
    precision: Precision = "auto",
    device: Device = "auto",
    compile: Compile = False,
    baselines: MazeBaselines = None,
    json_out: JsonOut = None,
    out: MazeOut = None,
    expert_runs: dict | None = None,
    expert_weights: dict | None = None,
):
    """Memory Maze protocols: fixed context, revisits, streaming and the capacity sweep (PSNR, SSIM)."""
    check_outputs(json_out, out)
    from ..data.episodes import episode_files
    from ..demo import SHIPPED_MAZE
    from ..metrics.perceptual import lpips_network
    from ..protocols.maze import PROTOCOLS, evaluate_maze, format_maze_table
    from ..runtime import pick_device, use_bf16

    memorize = {"steps": memorize_steps, **parse_memorize(memorize)}
    on, ckpt = pick_device(device), ckpt or SHIPPED_MAZE
    options = dict(steps=ddim_steps, bf16=use_bf16(precision, on), device=on, sampler=sampler, compile=compile)
    make_world, world, names = world_maker(ckpt, expert_runs, expert_weights, variants, rank, come_experts, sltm_null,
                                         "maze", **options)
    rivals = _baseline_makers(baseline_runs(baselines, world.cfg.dataset), names, **options)
    perceptual, about = lpips_network(on)
    result = evaluate_maze(
        make_world, episode_files(data, "test")[:episodes], world.cfg, parse_names(protocols, "--protocols", PROTOCOLS),
        names, history, frames, memorize, rank=rank, min_gap=min_gap, windows_per_episode=windows,
        stream_updates=updates, iterations=iterations, capacity_ranks=parse_ints(capacity_ranks, "--capacity-ranks"),
        capacity_histories=parse_ints(capacity_histories, "--capacity-histories"),
        pose_encoder=_pose_encoder(pose_encoder), seed=seed, out=out, horizons=parse_ints(horizons, "--horizons"),
        perceptual=perceptual, baselines=rivals)
    result |= {"lpips": about, "ddim_steps": ddim_steps, "pose_encoder": run_name(pose_encoder), "data": str(data),
               **world_settings(world, ckpt, expert_runs)}
    typer.echo(about)
    typer.echo(format_maze_table(result))
    write_json(json_out, result)


def _baseline_makers(runs: list[str], variants, **options) -> dict:
    """A maker of each baseline's world model, named by its run folder (a name no variant or other run has)."""
    from ..world import WorldModel

    makers = {}
    for run in runs:
        label = Path(run).name
        if label in variants or label in makers or label in ("copy_last_frame", "nearest_pose_frame"):
            raise UserError(f"--baselines {run}: its folder's name '{label}' is already a row; rename the folder")
        makers[label] = partial(WorldModel.from_pretrained, run, **options)
    return makers


def _pose_encoder(run: Optional[Path]):
    """The pose encoder network of a run folder, or None."""
    from ..checkpoint import load_model

    return load_model(run, network="pose-encoder")[0] if run is not None else None


CardsCome = Annotated[str, typer.Option("--come", help=(
    "Experts that come and poe compose (those given), of ltm, stm: e.g. --come ltm --variants come,poe puts the "
    "LTM's contrastive term beside its naive product with the base."))]
SweepSteps = Annotated[Optional[str], typer.Option("--sweep-steps", help=(
    "Also sweep memorization steps, e.g. 5,10,20,50,100 (plot recall_vs_steps.png)."))]
SweepRanks = Annotated[Optional[str], typer.Option("--sweep-ranks", help=(
    "Also sweep LoRA ranks, e.g. 4,8,32,64 (plot recall_vs_rank.png)."))]


@eval_app.command("cards-recall")
@guard
@expert_options
def eval_cards_recall(
    ckpt: Path = typer.Option(..., help="Base model: a run folder made by 'come train' on Memory Cards (cursor pose)."),
    episodes: int = typer.Option(50, min=1, help="Zig-zag recall episodes, generated from --seed."),
    seed: int = typer.Option(0, help="Seed of the episodes and of all sampling and memorization noise."),
    memorize_steps: int = typer.Option(
        20, "--memorize-steps", "--steps", min=0, help="Memorization steps of the long-term memory per episode."),
    variants: str = typer.Option("base,ltm,come,poe,hg", help="Of base, ltm, stm, ltm+stm, come, poe, hg."),
    rank: int = typer.Option(32, min=1, help="LoRA rank of the long-term memory."),
    memorize: Memorize = "",
    w_hg: float = typer.Option(1.5, help="History-guidance scale (HG-v)."),
    come_experts: CardsCome = "ltm,stm",
    ddim_steps: int = typer.Option(20, min=1, help="DDIM (or --sampler) steps per generated chunk."),
    sampler: Sampler = "ddim",
    sweep_steps: SweepSteps = None,
    sweep_ranks: SweepRanks = None,
    precision: Precision = "auto",
    device: Device = "auto",
    json_out: JsonOut = None,
    out: Optional[Path] = typer.Option(None, help="Folder for recall.png, the sweep plots and videos."),
    videos: int = typer.Option(4, min=0, help="Episodes to write as videos into --out (truth | base | CoME)."),
    expert_runs: dict | None = None,
    expert_weights: dict | None = None,
):
    """Memory Cards recall: watch every card once, then draw what lies under each card.

    Phase 1 of each zig-zag episode (every card uncovered and covered again) is the
    history; the model rolls phase 2 (every card uncovered) out from its actions. A card
    of the last frame is recalled when its MSE to the truth is under tau (a quarter of the
    smallest MSE between two different cards); chance is a random layout. Prints the
    table (mean recall, 95% CI per variant) and writes JSON, plots and videos.
    """
    check_outputs(json_out, out)
    from ..metrics.perceptual import lpips_network
    from ..protocols.recall import evaluate_recall, format_recall_table
    from ..runtime import pick_device, use_bf16

    on = pick_device(device)
    make_world, world, names = world_maker(ckpt, expert_runs, {**expert_weights, "hg": w_hg}, variants, rank,
                                       come_experts, protocol="recall", steps=ddim_steps, device=on,
                                       bf16=use_bf16(precision, on), sampler=sampler)
    memorize = parse_memorize(memorize)
    perceptual, about = lpips_network(on)
    result = evaluate_recall(world, episodes, seed, memorize_steps, names, out, videos, memorize=memorize,
                             perceptual=perceptual)
    result |= {"lpips": about, **world_settings(world, ckpt, expert_runs)}
    typer.echo(about)
    typer.echo(format_recall_table(result))
    sweeps = parse_ints(sweep_steps, "--sweep-steps"), parse_ints(sweep_ranks, "--sweep-ranks")
    if any(sweeps):
        result["sweeps"] = _recall_sweeps(make_world, episodes, seed, sweeps, memorize_steps, names, out, memorize)
    write_json(json_out, result)
    if out is not None:
        typer.echo(f"wrote {out}/recall.png and {min(videos, episodes)} videos "
                   f"(truth | {' | '.join(result['videos'])})")


def _recall_sweeps(make_world, episodes, seed, sweeps, memorize_steps, names, out, memorize) -> dict:
    """Recall against memorization steps and LoRA rank (the memory variants asked for, else come); printed."""
    from ..protocols.recall import recall_sweeps
    from ..variants import needs_memory

    swept = tuple(v for v in names if needs_memory(v)) or ("come",)
    result = recall_sweeps(make_world, episodes, seed, *sweeps, memorize_steps, swept, out, memorize=memorize)
    for key, sw in result.items():
        for v, ys in sw["recall"].items():
            typer.echo(f"recall vs {key} ({v}): " + ", ".join(f"{x}: {y:.3f}" for x, y in zip(sw["values"], ys)))
    return result
