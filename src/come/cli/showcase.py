"""``come sample``, ``come toy`` and ``come demo``: outputs a person looks at."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import AllowPickle, Sampler, UserError, app, check_outputs, guard


@app.command()
@guard
def sample(
    ckpt: Path = typer.Option(..., help="Run folder made by 'come train' (or its model.safetensors)."),
    episode: Path = typer.Option(..., help=(
        "Episode whose first frames and actions drive the rollout: an .npz, or a published dataset's episode "
        "(docs/datasets.md).")),
    context: Optional[int] = typer.Option(None, min=1, help=(
        "Context frames taken from the episode (default: the model's).")),
    frames: int = typer.Option(16, min=1, help="Frames to generate after the context."),
    out: Path = typer.Option(Path("sample.mp4"), help=(
        "Video path (.mp4); a .gif and a .json of metrics are written beside it.")),
    start: int = typer.Option(0, min=0, help="Frame of the episode where the context starts."),
    ddim_steps: int = typer.Option(
        20, "--ddim-steps", "--steps", min=1, help="DDIM (or --sampler) steps per generated chunk."),
    sampler: Sampler = "ddim",
    chunk: Optional[int] = typer.Option(None, min=1, help="Frames generated per chunk (default: the model's)."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then the CPU)."),
    seed: int = typer.Option(0, help="Seed of the sampling noise."),
    allow_pickle: AllowPickle = False,
):
    """Roll a trained model out from an episode's first frames under its actions.

    Writes ground truth beside prediction (mp4 and gif), a PNG filmstrip (truth above,
    prediction below) and prints PSNR/SSIM per frame (also saved as JSON next to the video).
    """
    from ..data.episodes import allowing_pickle
    from ..runtime import pick_device
    from ..sample import sample_episode

    with allowing_pickle(allow_pickle):
        result = sample_episode(ckpt, episode, out, context, frames, start, ddim_steps, chunk, precision, seed,
                                pick_device(device), sampler)
    typer.echo(f"{'frame':>5} {'PSNR':>7} {'SSIM':>6} {'copy-last PSNR':>15}")
    for i, (p, s, c) in enumerate(zip(result["psnr"], result["ssim"], result["copy_last_psnr"])):
        typer.echo(f"{i:>5} {p:>7.2f} {s:>6.3f} {c:>15.2f}")
    typer.echo(f"mean  {result['mean_psnr']:>7.2f} {result['mean_ssim']:>6.3f} {result['mean_copy_last_psnr']:>15.2f}")
    typer.echo(f"wrote {result['video']}, {result['gif']} and {result['filmstrip']}")


@app.command()
@guard
def toy(
    out: Path = typer.Option(Path("toy_out"), help="Folder for toy.png (densities and histograms) and toy.json."),
    weight: float = typer.Option(2.0, help="Contrast weight w of every expert."),
    samples: int = typer.Option(20000, min=100, help="Samples drawn per rule."),
    ddim_steps: int = typer.Option(1000, "--ddim-steps", "--steps", min=2, help="DDIM steps."),
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
    (total variation distance). Last, the naive product of three Gaussian experts
    (a known Gaussian) sampled as the world model samples poe, beside plain DDIM on the
    same summed scores. Takes about 2 minutes on 2 CPU cores.
    """
    from ..toy import run_toy

    check_outputs(folder=out)

    result = run_toy(out, weight, samples, ddim_steps, langevin_steps, langevin_size, seed, progress=True)
    centres = result["mode_centres"]
    typer.echo(f"{'rule':<12} {'':<8}" + "".join(f"{c:>9.2f}" for c in centres) + f"{'TV':>8}")
    for rule, r in result["rules"].items():
        typer.echo(f"{rule:<12} {'grid':<8}" + "".join(f"{m:>9.3f}" for m in r["grid_mass"]))
        typer.echo(f"{'':<12} {'sampled':<8}" + "".join(f"{m:>9.3f}" for m in r["sample_mass"])
                   + f"{r['total_variation']:>8.3f}")
        if r["sampler_failed"]:
            typer.echo(f"{'':<12} SAMPLER FAILED: {r['at_clip']:.1%} of samples at the clip, total variation "
                       f"{r['total_variation']:.3f}; these sampled masses describe the failure, not the rule "
                       "(more --ddim-steps or --langevin-steps)")
    g = result["gaussian_product"]
    typer.echo(f"naive product of {len(g['experts'])} Gaussian experts (variance {g['variance']:.4f}), "
               f"{g['ddim_steps']} levels:")
    for name, r in (("product sampler (poe)", g["product_sampler"]), ("plain DDIM", g["plain_ddim"])):
        typer.echo(f"  {name:<22} variance x{r['variance_ratio']:.2f}, {r['at_clip']:.1%} at the clip, "
                   f"TV {r['total_variation']:.3f}" + ("  FAILED" if r["sampler_failed"] else ""))
    typer.echo(f"mass per mode (columns: mode centres); TV: histogram vs grid density, 100 bins. "
               f"wrote {out / 'toy.png'} and {out / 'toy.json'}")


@app.command()
@guard
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the demo's videos, pictures and JSON."),
    env: str = typer.Option("cards", help=(
        "cards (Memory Cards recall) or maze (Memory Maze revisits; needs the 'maze' extra).")),
    ckpt: Optional[Path] = typer.Option(None, help=(
        "Run folder to show instead of the shipped cards-tiny checkpoint (cards).")),
    episodes: Optional[int] = typer.Option(None, min=1, help=(
        "Episodes [default: 4 zig-zag recall episodes; maze: 2 walks].")),
    memorize_steps: int = typer.Option(20, "--memorize-steps", "--steps", min=1, help=(
        "Memorization steps of the long-term memory per episode (cards; the maze demo's place memory needs none).")),
    seed: int = typer.Option(1234, help="Seed of the episodes and of all noise."),
    train_steps: Optional[int] = typer.Option(None, min=1, help=(
        "Train a fresh model this many steps instead of using the shipped one.")),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then the CPU)."),
    ddim_steps: int = typer.Option(10, min=1, help=(
        "cards: DDIM steps per generated frame (10 recall as much as 20 in half the rollout time).")),
):
    """Memory Cards recall, or Memory Maze revisits: the base model alone against CoME.

    cards: each episode shows every card once, covers them all, then uncovers them again;
    the model must draw what lies under each card (CoME: base + long-term memory). Prints
    the recall table and writes OUT/recall_*.mp4 (truth | base | CoME), OUT/recall_frames.png,
    OUT/recall.png and OUT/recall.json.

    maze: walks new episodes in the real Memory Maze, then predicts 32 frames where the agent
    comes back to a place it saw in the last 200 (base, the place memory, CoME), with the
    shipped maze-place. Prints the table and writes OUT/revisits_00.mp4 and .gif (truth | base |
    CoME), OUT/revisits.png and OUT/maze.json. On 2 CPU cores with fast bf16 the cards demo takes
    about 30 s and the maze demo about a minute (BENCHMARKS.md, "The demo").
    """
    from ..demo import run_demo, run_maze_demo

    check_outputs(folder=out)
    from ..runtime import pick_device

    if env not in ("cards", "maze"):
        raise UserError(f"--env: choose cards or maze, got '{env}'")
    on = pick_device(device)
    if env == "maze":
        if ckpt is not None or train_steps is not None:
            raise UserError("--ckpt and --train-steps are for --env cards; the maze demo shows the shipped maze-place")
        run_maze_demo(out, episodes or 2, seed=seed, echo=typer.echo, device=on)
    else:
        run_demo(out, ckpt, episodes or 4, train_steps, memorize_steps, seed, echo=typer.echo, device=on,
                 ddim_steps=ddim_steps)
