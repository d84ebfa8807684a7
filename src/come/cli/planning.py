"""``come eval plan``: goal-conditioned navigation on Memory Maze by planning with the world model (CEM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Compile, Device, JsonOut, Precision, Sampler, check_outputs, expert_options, guard, write_json
from .evaluate import MazeBase, eval_app
from .worlds import world_maker, world_settings

PLAN_VARIANTS = ("base", "place", "come")  # the prior, the place memory and their composition

PlanData = Annotated[Optional[Path], typer.Option("--data", help=(
    "Memory Maze dataset folder; its eval/ (or test/) split is used, and episodes that 'come data maze' wrote are "
    "replayed in the real environment for the closed loop [default: walk --episodes new episodes from --seed]."))]
PlanVariants = Annotated[Optional[str], typer.Option("--variants", help=(
    "Comma-separated variants to plan with, of base, ltm, stm, sltm, place, experts joined by +, come, poe, hg "
    "[default: base, place and come, those the given models allow]."))]
PlanCome = Annotated[str, typer.Option("--come", help=(
    "Experts that come composes (those given), of ltm, stm, place, sltm (as in 'come eval maze')."))]
ReplanEvery = Annotated[int, typer.Option("--replan-every", min=1, help=(
    "Closed loop: actions executed from each plan before planning again (at most --horizon)."))]
Budget = Annotated[int, typer.Option("--budget", min=1, help="Closed loop: steps in the real environment.")]
Distance = Annotated[str, typer.Option("--distance", help=(
    "Distance of the last imagined frame to the goal image: ssim (1 - SSIM), mse, or lpips (where its weights are "
    "in the torch hub cache)."))]
MinGap = Annotated[int, typer.Option("--min-gap", min=1, help=(
    "The goal frame revisits a place last seen more than this many frames earlier, and the history is at least "
    "this long."))]
MinDistance = Annotated[Optional[float], typer.Option("--min-distance", min=0.0, help=(
    "The goal lies at least this many cells from the planning frame's position [default: --horizon / 8, half the "
    "way the agent covers at full speed]."))]
SuccessRadius = Annotated[float, typer.Option("--success-radius", min=0.0, help=(
    "Success: ending within this many cells of the goal position..."))]
SuccessHeading = Annotated[float, typer.Option("--success-heading", min=0.0, help=(
    "...and within this many degrees of the goal heading."))]
PlanOut = Annotated[Optional[Path], typer.Option("--out", help=(
    "Folder for trajectories.png (every window's paths on its maze) and plan_00.mp4/.gif (goal | imagined plan | "
    "real execution)."))]


@eval_app.command("plan")
@guard
@expert_options
def eval_plan(
    data: PlanData = None,
    seed: int = typer.Option(0, help="Seed of the walked episodes, the windows, the CEM and the sampling noise."),
    episodes: int = typer.Option(12, min=1, help="Episodes (one window each by default)."),
    env_steps: int = typer.Option(300, "--env-steps", min=1, help="Length of each walked episode (without --data)."),
    ckpt: MazeBase = None,
    variants: PlanVariants = None,
    come_experts: PlanCome = "stm,place,sltm",
    candidates: int = typer.Option(16, min=1, help="CEM: action sequences rolled out per iteration (one batch)."),
    elites: int = typer.Option(4, min=1, help="CEM: the best sequences the distribution is refit to."),
    horizon: int = typer.Option(8, min=1, help="Actions per plan; the goal is the frame recorded this many later."),
    iterations: int = typer.Option(3, min=1, help="CEM iterations per plan."),
    replan_every: ReplanEvery = 4,
    budget: Budget = 16,
    distance: Distance = "ssim",
    windows: int = typer.Option(1, min=1, help="Windows per episode."),
    min_gap: MinGap = 100,
    min_distance: MinDistance = None,
    success_radius: SuccessRadius = 0.5,
    success_heading: SuccessHeading = 45.0,
    memorize_steps: int = typer.Option(50, "--memorize-steps", min=1, help=(
        "Memorization steps on the history, for variants with the long-term memory.")),
    rank: int = typer.Option(32, min=1, help="LoRA rank of the memories."),
    ddim_steps: int = typer.Option(4, min=1, help="DDIM (or --sampler) steps per imagined frame."),
    sampler: Sampler = "ddim",
    precision: Precision = "auto",
    device: Device = "auto",
    compile: Compile = False,
    json_out: JsonOut = None,
    out: PlanOut = None,
    expert_runs: dict | None = None,
    expert_weights: dict | None = None,
):
    """Plan toward a goal image with the world model (CEM, as NWM) and act on the plans in the real Memory Maze.

    At a frame of each episode the goal is the frame recorded --horizon actions later, where it revisits a place
    seen in the history. Open loop: the planned trajectory against the recorded one (ATE, RPE with evo). Closed
    loop: the real environment is replayed to that frame, then the agent plans, executes --replan-every actions
    and plans again for --budget steps; success, final distance and path length, beside a random walk and the
    shortest path (oracle). Prints the table and the time of one CEM iteration against one rollout.
    """
    check_outputs(json_out, out)
    from ..demo import SHIPPED_MAZE
    from ..metrics.perceptual import lpips_network
    from ..protocols.navigation import (NavSettings, dataset_episodes, evaluate_planning, format_planning_table,
                                        generated_episodes)
    from ..protocols.planning import CEMSettings
    from ..runtime import pick_device, use_bf16

    on, ckpt = pick_device(device), ckpt or SHIPPED_MAZE
    _, world, names = world_maker(ckpt, expert_runs, expert_weights, variants, rank, come_experts, "adapters_off",
                                  "maze", steps=ddim_steps, bf16=use_bf16(precision, on), device=on, sampler=sampler,
                                  compile=compile)
    names = names if variants else tuple(v for v in PLAN_VARIANTS if v in names)
    perceptual, about = lpips_network(on) if distance == "lpips" else (None, "")
    settings = NavSettings(CEMSettings(candidates, elites, horizon, iterations), replan_every, budget, min_gap,
                           horizon / 8 if min_distance is None else min_distance, success_radius, success_heading,
                           windows, distance, {"steps": memorize_steps}, seed)
    settings.check(world.cfg.context)
    resolution = world.cfg.model["resolution"]
    eps = dataset_episodes(data, episodes, resolution) if data is not None else \
        generated_episodes(seed, episodes, env_steps, resolution)
    result = evaluate_planning(world, eps, names, settings, out, perceptual=perceptual)
    result |= {"ddim_steps": ddim_steps, "data": str(data) if data is not None else None,
               "env_steps": None if data is not None else env_steps, **world_settings(world, ckpt, expert_runs)}
    if about:
        typer.echo(about)
    typer.echo(format_planning_table(result))
    write_json(json_out, result)
