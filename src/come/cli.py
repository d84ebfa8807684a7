"""The ``come`` command line: data, train, sample, eval, export, presets, toy, demo.

Every command explains itself with ``--help``. Bad input ends with one line on
stderr naming the file or argument and what is wrong, and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "[default: ...]" must show as written
    help="come: Composition of Memory Experts for diffusion video world models.",
)
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=(
    "Generate datasets (one compressed .npz per episode + meta.json)."))
app.add_typer(data_app, name="data")


class UserError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _names(text: str, option: str, allowed) -> tuple[str, ...]:
    """The comma-separated names of ``text``, each one of ``allowed``."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names or any(v not in allowed for v in names):
        raise UserError(f"{option}: choose from {', '.join(allowed)}, got '{text}'")
    return names


def _choice(text: str, option: str, allowed) -> None:
    if text not in allowed:
        raise UserError(f"{option}: choose from {', '.join(allowed)}, got '{text}'")


def _ints(text: Optional[str], option: str) -> tuple[int, ...]:
    """The comma-separated positive integers of ``text`` (none when it is empty)."""
    try:
        values = tuple(int(v) for v in text.split(",")) if text else ()
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise UserError(f"{option}: values must be at least 1, got '{text}'")
    return values


def _write_json(path: Optional[Path], result: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def _guard(fn):
    """Turn the library's input errors into one clear line and exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .checkpoint import CheckpointError
        from .data.episodes import EpisodeError
        from .data.maze import MazeEnvError

        try:
            return fn(*args, **kwargs)
        except (UserError, CheckpointError, EpisodeError, MazeEnvError) as e:
            _fail(str(e))
        except ValueError as e:
            _fail(str(e))

    return wrapper


@data_app.command("cards")
@_guard
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
    from .data.cards import generate_dataset

    t = time.time()
    folder = generate_dataset(out, episodes, seed, split, length, resolution)
    typer.echo(f"wrote {episodes} episodes to {folder} in {time.time() - t:.1f}s")


@data_app.command("maze")
@_guard
def data_maze(
    out: Path = typer.Option(..., help=(
        "Dataset folder; episodes go to OUT/<split>/ep_00000.npz with OUT/<split>/meta.json.")),
    episodes: int = typer.Option(100, min=1, help="Number of episodes (a re-run with more keeps the finished ones)."),
    size: str = typer.Option("9x9", help="Maze size: 9x9, 11x11, 13x13 or 15x15 (3, 4, 5, 6 objects)."),
    steps: int = typer.Option(1000, min=1, help=(
        "Actions per episode (frames = steps + 1); at most the environment's time limit (9x9: 1000, 15x15: 4000).")),
    seed: int = typer.Option(0, help="Seed; an episode depends only on (seed, split, index)."),
    workers: int = typer.Option(max(1, os.cpu_count() or 1), min=1, help=(
        "Parallel processes, one episode each (default: the number of cores).")),
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
    dtypes of the public Memory Maze offline dataset, T = steps + 1: image (T,64,64,3)
    uint8; action (T,6) one-hot (noop, forward, left, right, forward+left, forward+right;
    action[0] = 0); reward, terminal, reset (T,); agent_pos, agent_dir (T,2); maze_layout
    (T,S,S); targets_pos, targets_vec (T,K,2); target_pos, target_vec (T,2); target_color.

    Resumable: a re-run skips finished episodes; files are written atomically. On a 2-core
    CPU a 1000-step 9x9 episode takes 40-45 s of one core; 20 of them took 13 minutes with
    --workers 2 on cores shared with another job (about 7 minutes on idle cores).
    """
    from .data.maze import generate_dataset

    t = time.time()
    folder = generate_dataset(out, episodes, seed, size, steps, split, workers, noise)
    typer.echo(f"wrote {episodes} episodes to {folder} in {time.time() - t:.1f}s")


@app.command()
@_guard
def train(
    data: Path = typer.Option(..., help="Dataset folder with train/ (and optionally test/ for sample videos)."),
    out: Path = typer.Option(..., help=(
        "Run folder: config.json, model.safetensors (EMA), state.safetensors, tb/, samples/.")),
    preset: Optional[str] = typer.Option(None, help=(
        "Training preset (see 'come presets') [default: cards-tiny, or the run's own with --resume].")),
    steps: Optional[int] = typer.Option(None, help="Total training steps (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per batch (default: the preset's)."),
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
):
    """Train a video diffusion world model, or the SLTM's pose encoder (preset maze-pose), on CPU,
    one GPU, or several with 'accelerate launch'.

    Writes checkpoints every few hundred steps (atomically), TensorBoard scalars to OUT/tb
    and, every K steps, a sample video (truth | prediction) to OUT/samples (world models) or
    the held-out track error to OUT/log.jsonl (the pose encoder).
    """
    from .checkpoint import load_config
    from .presets import TrainConfig, train_config
    from .train import train as run_training

    if resume:  # the run's own configuration; only --steps and --precision may change
        saved = load_config(out)
        if preset is not None and preset != saved.preset:
            raise UserError(f"{out}: was started with preset '{saved.preset}', not '{preset}'")
        cfg = TrainConfig.from_dict({**saved.to_dict(), "steps": steps or saved.steps, "precision": precision})
    else:
        cfg = train_config(preset or "cards-tiny", steps=steps, batch_size=batch_size, lr=lr, precision=precision,
                           seed=seed)
    summary = run_training(cfg, data, out, resume=resume, init=init, minutes=minutes)
    summary.pop("losses")
    typer.echo(json.dumps(summary))


@app.command()
@_guard
def export(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train'."),
    out: Path = typer.Option(..., help="Folder to write config.json and model.safetensors into."),
    fp16: bool = typer.Option(True, "--fp16/--fp32", help="Store the weights in fp16 (half the size)."),
):
    """Export a run's EMA weights and config: a small folder that 'sample', 'eval' and 'demo' load."""
    from .checkpoint import export_model

    dest = export_model(ckpt, out, fp16)
    size = (dest / "model.safetensors").stat().st_size / 1e6
    typer.echo(f"wrote {dest}/model.safetensors ({size:.1f} MB) and {dest}/config.json")


@app.command()
def presets():
    """List the training presets with their network, model size and clip layout."""
    from .checkpoint import build_network
    from .presets import TRAIN_PRESETS, train_config

    typer.echo(f"{'preset':<12} {'network':<12} {'params':>8} {'res':>4} {'patch':>5} {'ctx+fut':>8} {'batch':>5} "
               f"{'steps':>7}")
    for name in TRAIN_PRESETS:
        cfg = train_config(name)
        with __import__("torch").device("meta"):
            n = sum(p.numel() for p in build_network(cfg).parameters())
        m = cfg.model
        typer.echo(f"{name:<12} {cfg.network:<12} {n / 1e6:>7.2f}M {m['resolution']:>4} {m.get('patch', '-'):>5} "
                   f"{cfg.context:>3}+{cfg.future:<4} {cfg.batch_size:>5} {cfg.steps:>7}")


@app.command()
@_guard
def sample(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train' (or its model.safetensors)."),
    episode: Path = typer.Option(..., help="Episode .npz whose first frames and actions drive the rollout."),
    context: Optional[int] = typer.Option(None, help="Context frames taken from the episode (default: the model's)."),
    frames: int = typer.Option(16, min=1, help="Frames to generate after the context."),
    out: Path = typer.Option(Path("sample.mp4"), help=(
        "Video path (.mp4); a .gif and a .json of metrics are written beside it.")),
    start: int = typer.Option(0, min=0, help="Frame of the episode where the context starts."),
    steps: int = typer.Option(20, min=1, help="DDIM steps per generated chunk."),
    chunk: Optional[int] = typer.Option(None, min=1, help="Frames generated per chunk (default: the model's)."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    seed: int = typer.Option(0, help="Seed of the sampling noise."),
):
    """Roll a trained model out from an episode's first frames under its actions.

    Writes ground truth beside prediction (mp4 and gif), a PNG filmstrip (truth above,
    prediction below) and prints PSNR/SSIM per frame (also saved as JSON next to the video).
    """
    from .sample import sample_episode

    result = sample_episode(ckpt, episode, out, context, frames, start, steps, chunk, precision, seed)
    typer.echo(f"{'frame':>5} {'PSNR':>7} {'SSIM':>6} {'copy-last PSNR':>15}")
    for i, (p, s, c) in enumerate(zip(result["psnr"], result["ssim"], result["copy_last_psnr"])):
        typer.echo(f"{i:>5} {p:>7.2f} {s:>6.3f} {c:>15.2f}")
    typer.echo(f"mean  {result['mean_psnr']:>7.2f} {result['mean_ssim']:>6.3f} {result['mean_copy_last_psnr']:>15.2f}")
    typer.echo(f"wrote {result['video']}, {result['gif']} and {result['filmstrip']}")


eval_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=(
    "Evaluation protocols (a table on screen, JSON for tools, videos)."))
app.add_typer(eval_app, name="eval")


@eval_app.command("rollouts")
@_guard
def eval_rollouts(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train'."),
    data: Path = typer.Option(..., help="Dataset folder; its test/ split (or the folder itself) is used."),
    episodes: int = typer.Option(20, min=1, help="Held-out episodes (one random window each)."),
    frames: int = typer.Option(5, min=1, help="Frames rolled out after the context."),
    seed: int = typer.Option(0, help="Seed for the windows and the sampling noise."),
    steps: int = typer.Option(20, min=1, help="DDIM steps per chunk."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    out: Optional[Path] = typer.Option(None, help="Folder for videos (truth | model | copy-last)."),
):
    """Score held-out rollouts against copying the last context frame (PSNR, SSIM, card diagnostics)."""
    from .protocols.rollouts import evaluate_rollouts, format_table

    result = evaluate_rollouts(ckpt, data, episodes, frames, seed, steps, precision, out)
    typer.echo(format_table(result))
    typer.echo(f"{result['episodes']} episodes, {frames} frames after {result['context']} context frames, "
               f"{result['seconds_per_episode']:.2f}s per episode")
    _write_json(json_out, result)


@eval_app.command("pose")
@_guard
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
    from .protocols.pose import evaluate_pose, format_table

    result = evaluate_pose(ckpt, data, episodes, delta, out)
    typer.echo(format_table(result))
    typer.echo(f"{result['episodes']} episodes, {result['seconds_per_episode']:.2f}s per episode")
    _write_json(json_out, result)


@eval_app.command("maze")
@_guard
def eval_maze(
    ckpt: Optional[Path] = typer.Option(None, help=(
        "Base model: a Memory Maze run folder (e.g. preset maze-tiny) [default: the shipped maze-place, which is also "
        "the place memory].")),
    data: Path = typer.Option(..., help="Memory Maze dataset folder; its eval/ (or test/) split is used."),
    place: Optional[Path] = typer.Option(None, help=(
        "Place memory model run (preset maze-place): given the history frames seen from the nearest poses [default: "
        "the base model when it takes place views, as the shipped maze-place does].")),
    stm: Optional[Path] = typer.Option(None, help="Short-term memory model run (a longer context window)."),
    sltm: Optional[Path] = typer.Option(None, help="Spatial memory model run (absolute pose, e.g. preset maze-sltm)."),
    pose_encoder: Optional[Path] = typer.Option(None, help=(
        "Pose encoder run (preset maze-pose): infer the SLTM's poses from frames and actions instead of reading them "
        "from the dataset.")),
    protocols: str = typer.Option("fixed,revisits", help="Comma-separated: fixed, revisits, streaming, capacity."),
    variants: Optional[str] = typer.Option(None, help=(
        "Comma-separated variants, of base, ltm, stm, sltm, place, stm+ltm, come, poe, hg [default: every memory "
        "variant the given models allow; poe (the naive product) and hg (history guidance) on request].")),
    episodes: int = typer.Option(4, min=1, help="Held-out episodes."),
    history: int = typer.Option(200, min=1, help=(
        "History frames before each predicted window (and streaming's start).")),
    frames: int = typer.Option(8, min=1, help="Frames predicted per window (per streaming iteration)."),
    steps: int = typer.Option(50, min=1, help="Memorization steps per window."),
    updates: int = typer.Option(25, min=1, help="Streaming: memorization steps per iteration."),
    rank: int = typer.Option(32, min=1, help="LoRA rank of the memories."),
    lr: float = typer.Option(1e-2, help="Memorization learning rate (AdamW)."),
    lr_schedule: str = typer.Option("cosine", help=(
        "Memorization learning rate over the steps: cosine (decays to 0) or constant.")),
    batch_size: int = typer.Option(16, min=1, help="Windows of the history per memorization step."),
    weighting: str = typer.Option("change", help=(
        "How memorization draws the history's windows: change (frame change) or surprise (the base model's "
        "own loss).")),
    context_dropout: float = typer.Option(0.0, min=0.0, max=1.0, help=(
        "Share of memorized windows whose context is dropped.")),
    pose_dropout: float = typer.Option(0.0, min=0.0, max=1.0, help=(
        "Share of memorized windows whose pose is dropped (the SLTM's).")),
    w_ltm: float = typer.Option(1.0, help="Contrast weight of the long-term memory expert."),
    w_stm: float = typer.Option(1.0, help="Contrast weight of the short-term memory expert."),
    w_sltm: float = typer.Option(1.0, help="Contrast weight of the spatial memory expert."),
    come_experts: str = typer.Option("stm,place,sltm", "--come", help=(
        "Experts that come and poe compose (those given), of ltm, stm, place, sltm; the long-term memory lowers CoME "
        "on Memory Maze, so it is left out by default.")),
    w_place: float = typer.Option(1.0, help="Contrast weight of the place memory expert."),
    sltm_null: str = typer.Option("adapters_off", help=(
        "The SLTM's baseline: pose_drop (its memorized adapters without the pose) or adapters_off (the pose without "
        "the memory).")),
    windows: int = typer.Option(2, min=1, help="Windows per episode (fixed and revisits)."),
    min_gap: int = typer.Option(100, min=1, help="Revisits: frames since the place was last seen."),
    iterations: int = typer.Option(11, min=1, help="Streaming iterations."),
    capacity_ranks: str = typer.Option("8,32", help="Capacity sweep: comma-separated LoRA ranks."),
    capacity_histories: str = typer.Option("50,200", help="Capacity sweep: comma-separated history lengths."),
    ddim_steps: int = typer.Option(10, min=1, help="DDIM steps per generated chunk."),
    seed: int = typer.Option(0, help="Seed for the windows, memorization and sampling."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    out: Optional[Path] = typer.Option(None, help=(
        "Folder for plots (fixed.png, revisits.png, streaming.png) and videos (truth | base | CoME).")),
):
    """Memory Maze protocols: fixed context, revisits, streaming and the capacity sweep (PSNR, SSIM)."""
    from .checkpoint import load_model
    from .data.episodes import episode_files
    from .demo import SHIPPED_MAZE
    from .memory import LR_SCHEDULES, WINDOW_WEIGHTINGS
    from .protocols.maze import PROTOCOLS, evaluate_maze, format_maze_table
    from .runtime import use_bf16
    from .world import EXPERTS, SLTM_NULLS, ExpertWeights, WorldModel, choose_variants

    ckpt = ckpt or SHIPPED_MAZE
    _, cfg = load_model(ckpt)
    if cfg.model.get("action_dim") != 6:
        raise UserError(f"{ckpt}: not a Memory Maze model (its actions have {cfg.model.get('action_dim')} dims, not 6)")
    _choice(weighting, "--weighting", WINDOW_WEIGHTINGS)
    _choice(lr_schedule, "--lr-schedule", LR_SCHEDULES)
    _choice(sltm_null, "--sltm-null", SLTM_NULLS)
    chosen = _names(protocols, "--protocols", PROTOCOLS)
    composed = _names(come_experts, "--come", EXPERTS)
    ranks, histories = _ints(capacity_ranks, "--capacity-ranks"), _ints(capacity_histories, "--capacity-histories")
    place = place or (ckpt if cfg.model.get("views") else None)  # a base that takes views is its own place memory
    given = {"ltm"} | {name for name, run in (("stm", stm), ("sltm", sltm), ("place", place)) if run}
    try:
        names = choose_variants(variants, given)
    except ValueError as e:
        raise UserError(f"--variants: {e} (--stm, --sltm and --place give the expert models)") from None
    encoder = load_model(pose_encoder, network="pose-encoder")[0] if pose_encoder is not None else None
    options = dict(stm=stm, sltm=sltm, place=place, steps=ddim_steps, bf16=use_bf16(precision, "cpu"),
                   weights=ExpertWeights(ltm=w_ltm, stm=w_stm, sltm=w_sltm, place=w_place), sltm_null=sltm_null,
                   come_experts=composed)

    def make_world(lora_rank: int) -> WorldModel:
        return WorldModel.from_pretrained(ckpt, rank=lora_rank, **options)

    make_world(rank)  # every model is checked before any work
    memorize = {"weighting": weighting, "p_context_dropout": context_dropout, "p_pose_dropout": pose_dropout,
                "lr_schedule": lr_schedule}
    result = evaluate_maze(make_world, episode_files(data, "test")[:episodes], cfg, chosen, names, history, frames,
                           steps, lr, batch_size, rank=rank, min_gap=min_gap, windows_per_episode=windows,
                           stream_updates=updates, iterations=iterations, capacity_ranks=ranks,
                           capacity_histories=histories, pose_encoder=encoder, memorize_options=memorize, seed=seed,
                           out=out)
    runs = {"checkpoint": ckpt, "stm": stm, "sltm": sltm, "place": place, "pose_encoder": pose_encoder, "data": data}
    result |= {"come_experts": list(composed), "ltm_weight": w_ltm, "stm_weight": w_stm, "sltm_weight": w_sltm,
               "place_weight": w_place, "sltm_null": sltm_null, "ddim_steps": ddim_steps,
               **{k: str(v) if v is not None else None for k, v in runs.items()}}
    typer.echo(format_maze_table(result))
    _write_json(json_out, result)


@eval_app.command("cards-recall")
@_guard
def eval_cards_recall(
    ckpt: Path = typer.Option(..., help="Base model: a run folder made by 'come train' on Memory Cards (cursor pose)."),
    stm: Optional[Path] = typer.Option(None, help=(
        "Short-term memory model (e.g. the cards-stm preset) for 'stm', 'come' and 'poe'.")),
    episodes: int = typer.Option(50, min=1, help="Zig-zag recall episodes, generated from --seed."),
    seed: int = typer.Option(0, help="Seed of the episodes and of all sampling and memorization noise."),
    steps: int = typer.Option(20, min=0, help="Memorization steps of the long-term memory (LoRA) per episode."),
    variants: str = typer.Option("base,ltm,come,poe,hg", help=(
        "Comma-separated: base, ltm, stm, stm+ltm, come, poe, hg.")),
    rank: int = typer.Option(32, min=1, help="LoRA rank of the long-term memory."),
    lr: float = typer.Option(1e-1, help="Memorization learning rate (AdamW)."),
    batch_size: int = typer.Option(64, min=1, help="Windows of the history per memorization step."),
    w_ltm: float = typer.Option(1.5, help="Contrast weight of the long-term memory expert."),
    w_stm: float = typer.Option(1.0, help="Contrast weight of the short-term memory expert."),
    w_hg: float = typer.Option(1.5, help="History-guidance scale (HG-v)."),
    ddim_steps: int = typer.Option(20, min=1, help="DDIM steps per generated chunk."),
    sweep_steps: Optional[str] = typer.Option(None, help=(
        "Also sweep memorization steps, e.g. 5,10,20,50,100 (plot recall_vs_steps.png).")),
    sweep_ranks: Optional[str] = typer.Option(None, help=(
        "Also sweep LoRA ranks, e.g. 4,8,32,64 (plot recall_vs_rank.png).")),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    out: Optional[Path] = typer.Option(None, help=(
        "Folder for recall.png, the sweep plots and videos (truth | base | CoME).")),
    videos: int = typer.Option(4, min=0, help="Episodes to write as videos into --out."),
):
    """Memory Cards recall: watch every card once, then draw what lies under each card.

    Phase 1 of each zig-zag episode (every card uncovered and covered again) is the
    history; the model rolls phase 2 (every card uncovered) out from its actions. A card
    of the last frame is recalled when its MSE to the truth is under tau (a quarter of the
    smallest MSE between two different cards); chance is a random layout. Prints the
    table (mean recall, 95% CI per variant) and writes JSON, plots and videos.
    """
    from .checkpoint import load_model
    from .protocols.recall import evaluate_recall, format_recall_table, recall_sweeps
    from .runtime import use_bf16
    from .world import MEMORY_VARIANTS, ExpertWeights, WorldModel, choose_variants

    if any(v.strip() in ("sltm", "place") for v in variants.split(",")):
        raise UserError("--variants sltm and place: those experts need map poses (Memory Maze); Memory Cards has none")
    try:
        names = choose_variants(variants, {"ltm", "stm"} if stm else {"ltm"})
    except ValueError as e:
        raise UserError(f"--variants: {e} (--stm RUN gives a short-term memory model)") from None
    if load_model(ckpt)[1].pose != "cursor":
        raise UserError(f"{ckpt}: cards-recall needs a Memory Cards model conditioned on the cursor pose")
    sweep_s, sweep_r = _ints(sweep_steps, "--sweep-steps"), _ints(sweep_ranks, "--sweep-ranks")
    options = dict(stm=stm, weights=ExpertWeights(ltm=w_ltm, stm=w_stm, hg=w_hg), steps=ddim_steps,
                   bf16=use_bf16(precision, "cpu"))

    def make_world(lora_rank: Optional[int] = None) -> WorldModel:
        return WorldModel.from_pretrained(ckpt, rank=lora_rank or rank, **options)

    result = evaluate_recall(make_world(), episodes, seed, steps, names, lr, batch_size, out, videos)
    typer.echo(format_recall_table(result))
    if sweep_s or sweep_r:
        swept = tuple(v for v in names if v in MEMORY_VARIANTS) or ("come",)
        result["sweeps"] = recall_sweeps(make_world, episodes, seed, sweep_s, sweep_r, steps, swept, lr, batch_size,
                                         out)
        for key, sw in result["sweeps"].items():
            for v, ys in sw["recall"].items():
                typer.echo(f"recall vs {key} ({v}): " + ", ".join(f"{x}: {y:.3f}" for x, y in zip(sw["values"], ys)))
    _write_json(json_out, result)
    if out is not None:
        typer.echo(f"wrote {out}/recall.png and {min(videos, episodes)} videos "
                   f"(truth | {' | '.join(result['videos'])})")


@app.command()
@_guard
def toy(
    out: Path = typer.Option(Path("toy_out"), help="Folder for toy.png (densities and histograms) and toy.json."),
    weight: float = typer.Option(2.0, help="Contrast weight w of every expert."),
    samples: int = typer.Option(20000, min=100, help="Samples drawn per rule."),
    steps: int = typer.Option(1000, min=2, help="DDIM steps."),
    langevin_steps: int = typer.Option(10, min=0, help="Unadjusted Langevin corrector steps after each DDIM step."),
    langevin_size: float = typer.Option(0.1, help="Langevin step size, as a fraction of the level's noise variance."),
    seed: int = typer.Option(0, help="Seed of the sampling noise."),
):
    """The 1-D toy: why the product of experts must be contrastive.

    Two Gaussian-mixture experts share a spurious mode. On a grid, the naive product
    gives it nearly the dominant mode's mass; the product of contrastive experts
    (p_i^(1+w) / p~_i^w, p~_i: same kernels with equal peak heights) removes it. Then
    the library's own composition and DDIM sampler run on the exact scores of the
    noised mixtures, and the sample histograms are compared with the grid densities
    (total variation distance). Takes about 2 minutes on 2 CPU cores.
    """
    from .toy import run_toy

    result = run_toy(out, weight, samples, steps, langevin_steps, langevin_size, seed, progress=True)
    centres = result["mode_centres"]
    typer.echo(f"{'rule':<12} {'':<8}" + "".join(f"{c:>9.2f}" for c in centres) + f"{'TV':>8}")
    for rule, r in result["rules"].items():
        typer.echo(f"{rule:<12} {'grid':<8}" + "".join(f"{m:>9.3f}" for m in r["grid_mass"]))
        typer.echo(f"{'':<12} {'sampled':<8}" + "".join(f"{m:>9.3f}" for m in r["sample_mass"])
                   + f"{r['total_variation']:>8.3f}")
        if r["sampler_failed"]:
            typer.echo(f"{'':<12} SAMPLER FAILED: {r['at_clip']:.1%} of samples at the clip, total variation "
                       f"{r['total_variation']:.3f}; these sampled masses describe the failure, not the rule "
                       "(more --steps or --langevin-steps)")
    typer.echo(f"mass per mode (columns: mode centres); TV: histogram vs grid density, 100 bins. "
               f"wrote {out / 'toy.png'} and {out / 'toy.json'}")


@app.command()
@_guard
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the demo's videos, pictures and JSON."),
    env: str = typer.Option("cards", help=(
        "cards (Memory Cards recall) or maze (Memory Maze revisits; needs the 'maze' extra).")),
    ckpt: Optional[Path] = typer.Option(None, help=(
        "Run folder to show instead of the shipped cards-tiny checkpoint (cards).")),
    episodes: Optional[int] = typer.Option(None, min=1, help=(
        "Episodes [default: 4 zig-zag recall episodes; maze: 2 walks].")),
    steps: int = typer.Option(50, min=1, help="Memorization steps of the long-term memory per episode."),
    seed: int = typer.Option(1234, help="Seed of the episodes and of all noise."),
    train_steps: Optional[int] = typer.Option(None, min=1, help=(
        "Train a fresh model this many steps instead of using the shipped one.")),
):
    """Memory Cards recall, or Memory Maze revisits: the base model alone against CoME.

    cards: each episode shows every card once, covers them all, then uncovers them again;
    the model must draw what lies under each card (CoME: base + long-term memory). Prints
    the recall table and writes OUT/recall_*.mp4 (truth | base | CoME), OUT/recall_frames.png,
    OUT/recall.png and OUT/recall.json.

    maze: walks new episodes in the real Memory Maze, then predicts 32 frames where the agent
    comes back to a place it saw in the last 200 (base, the place memory, CoME), with the
    shipped maze-place. Prints the table and writes OUT/revisits_00.mp4 (truth | base | CoME),
    OUT/revisits.png and OUT/maze.json. Each takes a few minutes on 2 CPU cores.
    """
    from .demo import run_demo, run_maze_demo

    if env == "maze":
        if ckpt is not None or train_steps is not None:
            raise UserError("--ckpt and --train-steps are for --env cards; the maze demo shows the shipped maze-place")
        run_maze_demo(out, episodes or 2, seed=seed, echo=typer.echo)
    elif env == "cards":
        run_demo(out, ckpt, episodes or 4, train_steps, steps, seed, echo=typer.echo)
    else:
        raise UserError(f"--env: choose cards or maze, got '{env}'")


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
