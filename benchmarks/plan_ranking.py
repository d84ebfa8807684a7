"""Memory Maze planning: how well each variant's imagined frames rank candidate plans (come.protocols.planning).

    python benchmarks/plan_ranking.py --seed 31 --episodes 12 --candidates 48 --json ranking.json

A CEM plan is only as good as the order its cost puts the candidates in. On each planning window of ``come eval
plan`` (the same episodes, windows and goals), ``--candidates`` uniform random action sequences of ``--horizon``
steps are executed in the real environment from the window's start, which gives where each really ends (its
distance to the goal pose) and the real frame it ends on. Each candidate is then costed as the planner costs it,
the goal distance of its last frame, on:

* ``real``: the real last frame (a perfect world model: what the goal distance itself can tell);
* each variant: the last frame that variant imagines (one batched rollout, poses dead-reckoned as in planning;
  a memory the variant composes memorized once on the history, as the planner does).

Per window and cost: the Spearman correlation of the cost with the true distance to the goal, and the true
distance of the cheapest candidate and of the ``--elites`` cheapest (what CEM refits to), and how many of them
end at the goal (within 0.5 cells and 45 degrees of its pose, the closed loop's success), against the best
candidate's distance, the mean's and the share of all candidates that end at the goal. Every cost is taken with
each goal distance (1 - SSIM and MSE). Averaged over windows with 95% intervals.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from come.cli.worlds import world_maker
from come.data.maze import ACTIONS
from come.data.maze_replay import ReplayedMaze
from come.demo import SHIPPED_MAZE
from come.metrics.intervals import interval_text, mean_ci95
from come.outputs import save_json
from come.protocols.navigation import NavSettings, execute, frame_of, generated_episodes, goal_windows, outcome
from come.protocols.planning import CEMSettings, WorldRollout, goal_distance, memorize_history
from come.runtime import use_bf16


def rank_scores(cost: np.ndarray, true_distance: np.ndarray, success: np.ndarray, elites: int) -> dict:
    """How a cost (N,) ranks candidates against their true distances (N,) to the goal and their successes (N,)."""
    order = np.argsort(cost, kind="stable")
    return {"spearman": float(spearmanr(cost, true_distance).statistic),
            "top1_distance": float(true_distance[order[0]]), "top1_success": float(success[order[0]]),
            "elite_distance": float(true_distance[order[:elites]].mean()),
            "elite_success": float(success[order[:elites]].mean())}


def window_ranking(world, variants, ep, window, distances: dict, settings: NavSettings):
    """Every cost's ranking scores on one window's random candidates (``settings.cem``'s number, horizon and
    elites), and the candidates' own spread."""
    cem = settings.cem
    rng = np.random.default_rng(window.seed(settings.seed))
    actions = rng.integers(len(ACTIONS), size=(cem.candidates, cem.horizon))
    goal_pose, goal = ep.track[window.goal], ep.frames[window.goal]
    maze = ReplayedMaze(*ep.env, ep.actions, window.start, ep.track[window.start])
    try:
        ends = [execute(maze, a) for a in actions]
    finally:
        maze.close()
    outcomes = [outcome(track, goal_pose, settings) for track, _ in ends]
    true_distance = np.array([o["final_distance"] for o in outcomes])
    success = np.array([o["success"] for o in outcomes], float)
    last = {"real": torch.stack([frame_of(seen[-1], ep.frames.shape[-1]) for _, seen in ends])}
    history, seed = ep.history(window.start), window.seed(settings.seed)
    for v in variants:
        memory = memorize_history(world, v, history, seed)
        last[v] = WorldRollout(world, v, history, ep.layout, memory, seed=seed)(actions)[:, -1]
    row = {f"{source}, {name}": rank_scores(fn(frames, goal).numpy(), true_distance, success, cem.elites)
           for source, frames in last.items() for name, fn in distances.items()}
    row["candidates"] = {"best_distance": float(true_distance.min()), "mean_distance": float(true_distance.mean()),
                         "success": float(success.mean())}
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=SHIPPED_MAZE)
    p.add_argument("--variants", default="base,place")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--env-steps", type=int, default=300)
    p.add_argument("--candidates", type=int, default=48)
    p.add_argument("--elites", type=int, default=4)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--ddim-steps", type=int, default=4)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    _, world, variants = world_maker(args.ckpt, {}, {}, args.variants, 32, "place", "adapters_off", "maze",
                              steps=args.ddim_steps, bf16=use_bf16("auto", "cpu"), device="cpu", sampler="ddim")
    settings = NavSettings(CEMSettings(args.candidates, args.elites, args.horizon), min_distance=args.horizon / 8,
                           seed=args.seed)  # come eval plan's default --min-distance
    eps = generated_episodes(args.seed, args.episodes, args.env_steps, world.cfg.model["resolution"])
    windows = goal_windows(eps, args.horizon, settings.min_gap, settings.min_distance, settings.windows,
                           settings.budget, args.seed)
    distances = {name: goal_distance(name) for name in ("ssim", "mse")}
    rows = []
    for w in windows:
        rows.append(window_ranking(world, variants, eps[w.episode], w, distances, settings))
        print(f"window {len(rows)}/{len(windows)}: " + ", ".join(
            f"{k} {v['spearman']:+.2f}" for k, v in rows[-1].items() if k != "candidates"), flush=True)
    summary = {name: {k: mean_ci95([r[name][k] for r in rows]) for k in rows[0][name]} for name in rows[0]}
    keys = ("spearman", "top1_distance", "elite_distance", "top1_success", "elite_success")
    print("\n| frames, distance | Spearman with the true distance | cheapest's true distance | elites' true distance "
          "| cheapest at the goal | elites at the goal |\n|---|---|---|---|---|---|")
    for name in (k for k in summary if k != "candidates"):
        print(f"| {name} | " + " | ".join(f"{summary[name][k]['mean']:+.2f} {interval_text(summary[name][k])}"
                                          for k in keys) + " |")
    c = summary["candidates"]
    print(f"candidates: the best ends {c['best_distance']['mean']:.2f} cells from the goal, the mean "
          f"{c['mean_distance']['mean']:.2f}; {c['success']['mean']:.2f} of them at the goal")
    if args.json:
        save_json(args.json, {"args": vars(args), "summary": summary, "windows": rows})


if __name__ == "__main__":
    main()
