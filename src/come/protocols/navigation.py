"""Goal-conditioned navigation on Memory Maze by planning with a world model, open and closed loop.

Each window of an episode is a planning frame ``t`` (the history: frames 0..t, with their actions and poses)
and a goal frame ``g = t + H``, ``H`` the planning horizon. The goal is the frame the agent recorded ``H``
actions later, taken where that frame is a revisit (:func:`come.protocols.maze.revisit_frames`): the agent is
back at a place it last saw more than ``min_gap`` frames earlier, inside the history, so a memory of the history
can know what the goal shows and where it lies. The goal's pose is known to the harness only. The agent starts
at least ``min_distance`` cells from it. An episode without such a revisit gives a window whose goal is not one
(``revisit: false`` in the result).

* **Open loop** (NWM's protocol): the plan made at ``t`` (:func:`come.protocols.planning.plan`), its track
  dead-reckoned from the true pose at ``t``, against the true trajectory to the goal, which is the agent's
  recorded path from ``t`` to ``g``: ATE and RPE with evo (translation RMSE in cells, no alignment since both
  start at the same pose; RPE over one step). The plan executed open loop in the real environment gives
  ``open_loop_distance``, where it really ends.
* **Closed loop**: the real environment is brought to the agent's state at ``t``
  (:class:`~come.data.maze_replay.ReplayedMaze`: the episode's maze from its seed, the recorded actions replayed,
  the pose checked against the recording), then the agent plans ``H`` actions, executes the first ``R``
  (``replan_every``), adds the real frames to its history and plans again, until ``budget`` steps. Success:
  ending within ``success_radius`` cells and ``success_heading`` degrees of the goal pose. Reported with the
  final distance and the path length, beside a random walk (uniform actions) and the oracle
  (:class:`~come.data.maze_replay.Oracle`: the shortest path on the maze layout to the goal pose).

A memory fitted on the history (the long-term memory) is memorized once, on the history at ``t``; the place
memory looks its views up in the history as it grows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.clips import absolute_pose, frames_to_tensor, tensor_to_frames
from ..data.episodes import episode_files, load_episode, read_meta
from ..data.maze import ACTIONS, MAX_STEPS, SIZES, episode_env_seed
from ..data.maze_replay import Oracle, ReplayedMaze, observation_track
from ..data.places import wrap_angle
from ..errors import InputError
from ..metrics.intervals import interval_text, mean_ci95, paired_successes, proportion_ci95
from ..runtime import median_seconds
from .maze import revisit_frames
from .planning import (AgentHistory, CEMSettings, Plan, WorldRollout, absolute_poses, goal_distance,
                       memorize_history, plan)
from .pose import track_errors, true_track



@dataclass
class NavEpisode:
    """An episode at the model's resolution: frames (T,C,R,R) in [-1, 1], one-hot actions (T,A), absolute
    poses (T,4), the true track (T,3) in cells, the layout (S,S) and, where the real environment can be brought
    back to it, its (size, environment seed)."""

    name: str
    frames: torch.Tensor
    action: torch.Tensor
    pose: torch.Tensor
    track: np.ndarray
    layout: np.ndarray
    env: tuple[str, int] | None

    def history(self, t: int) -> AgentHistory:
        """What the agent has seen at frame ``t``: frames 0..t."""
        return AgentHistory(self.frames[: t + 1], self.action[: t + 1], self.pose[: t + 1], self.track[: t + 1])

    @property
    def actions(self) -> np.ndarray:
        return self.action.argmax(1).numpy()


def episode_from_arrays(ep: dict, resolution: int, name: str, env: tuple[str, int] | None) -> NavEpisode:
    """A :class:`NavEpisode` from the arrays of a Memory Maze episode file."""
    layout = np.asarray(ep["maze_layout"])
    return NavEpisode(name, frames_to_tensor(ep["image"], resolution),
                      torch.from_numpy(np.asarray(ep["action"], np.float32)), torch.from_numpy(absolute_pose(ep)),
                      true_track(ep, 1, name), layout[0] if layout.ndim == 3 else layout, env)


def generated_episodes(seed: int, episodes: int, steps: int, resolution: int, size: str = "9x9",
                       progress: bool = True) -> list[NavEpisode]:
    """``episodes`` explorer walks of ``steps`` actions from the real environment (the eval split of ``seed``,
    as ``come data maze --split eval`` writes them)."""
    from ..data.maze import generate_episode

    return [episode_from_arrays(generate_episode(seed, i, "eval", size, steps), resolution, f"eval_{i:05d}",
                                (size, episode_env_seed(seed, i, "eval")))
            for i in tqdm(range(episodes), desc="walking episodes", unit="ep", disable=not progress)]


def dataset_episodes(folder: str | Path, episodes: int, resolution: int) -> list[NavEpisode]:
    """The first ``episodes`` held-out episodes of a dataset folder; those ``come data maze`` wrote (its
    ``meta.json`` says how) can be brought back in the real environment."""
    out = []
    for path in episode_files(folder, "test")[:episodes]:
        meta, index = read_meta(path.parent), re.fullmatch(r"ep_(\d+)", path.stem)
        env = None
        if meta.get("generator") == "come.data.maze" and index and meta.get("size") in SIZES:
            env = (meta["size"], episode_env_seed(meta["seed"], int(index.group(1)), meta["split"]))
        out.append(episode_from_arrays(load_episode(path), resolution, path.name, env))
    return out


@dataclass(frozen=True)
class Window:
    episode: int  # index into the episodes
    start: int  # the planning frame t
    goal: int  # the goal frame t + H
    revisit: bool  # whether the goal frame revisits a place seen in the history

    def seed(self, seed: int) -> int:
        """The window's own seed of the CEM and the sampling: the variants share it (they plan from the same
        candidates), the windows do not."""
        return int(np.random.default_rng([seed, self.episode, self.start]).integers(2**31 - 1))


def window_goals(ep: NavEpisode, horizon: int, min_gap: int, min_distance: float, budget: int) -> tuple[list, bool]:
    """The goal frames an episode offers (see the module docstring) and whether they are revisits: each has
    ``min_gap`` frames of history before its planning frame and lies ``min_distance`` cells from it; a planning
    frame leaves ``budget`` steps before the environment's time limit."""
    last = len(ep.track) - 1
    if ep.env is not None:
        last = min(last, MAX_STEPS[ep.env[0]] - budget + horizon)
    gap = np.linalg.norm(ep.track[horizon:, :2] - ep.track[:-horizon, :2], axis=1) if len(ep.track) > horizon else []
    fits = {g for g in range(min_gap + horizon, last + 1) if gap[g - horizon] >= min_distance}
    revisits = [g for g in revisit_frames(ep.track, min_gap) if g in fits]
    return (revisits, True) if revisits else (sorted(fits), False)


def goal_windows(episodes: list[NavEpisode], horizon: int, min_gap: int, min_distance: float, per_episode: int,
                 budget: int, seed: int = 0) -> list[Window]:
    """Up to ``per_episode`` windows per episode, drawn with ``seed`` among its goals (:func:`window_goals`)."""
    rng = np.random.default_rng(seed)
    windows = []
    for e, ep in enumerate(episodes):
        goals, revisit = window_goals(ep, horizon, min_gap, min_distance, budget)
        chosen = sorted(rng.choice(goals, min(per_episode, len(goals)), replace=False)) if goals else []
        windows += [Window(e, int(g) - horizon, int(g), revisit) for g in chosen]
    return windows


@dataclass(frozen=True)
class NavSettings:
    """The planner's and the harness's settings (module docstring)."""

    cem: CEMSettings = field(default_factory=CEMSettings)
    replan_every: int = 4
    budget: int = 16
    min_gap: int = 100
    min_distance: float = 1.0
    success_radius: float = 0.5
    success_heading: float = 45.0
    windows: int = 1
    distance: str = "ssim"
    memorize: dict = field(default_factory=dict)
    seed: int = 0

    def check(self, context: int) -> None:
        if not 1 <= self.replan_every <= self.cem.horizon:
            raise InputError(f"--replan-every must be between 1 and the horizon {self.cem.horizon}, "
                             f"got {self.replan_every}")
        if self.budget < 1 or self.windows < 1:
            raise InputError("the step budget and the windows per episode must be at least 1")
        if self.min_gap < self.cem.horizon + context:
            raise InputError(f"--min-gap {self.min_gap}: a revisit's last sighting must lie in the history before "
                             f"the model's context, so it must be at least horizon + context = "
                             f"{self.cem.horizon + context}")


def outcome(path: np.ndarray, goal: np.ndarray, settings: NavSettings) -> dict:
    """Where a path (T,3) ends against the goal pose: final distance and heading error, success, path length."""
    dist = float(np.linalg.norm(path[-1, :2] - goal[:2]))
    heading = float(np.degrees(abs(wrap_angle(path[-1, 2] - goal[2]))))
    return {"final_distance": dist, "final_heading_deg": heading,
            "success": bool(dist <= settings.success_radius and heading <= settings.success_heading),
            "path_length": float(np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1).sum())}


def execute(maze: ReplayedMaze, actions) -> tuple[np.ndarray, list[dict]]:
    """Execute actions from the restored state: the track (len+1,3) and the observations after each action."""
    start = maze.restore()
    seen = [maze.step(a) for a in actions]
    return np.stack([observation_track(o) for o in [start, *seen]]), seen


def frame_of(obs: dict, resolution: int) -> torch.Tensor:
    return frames_to_tensor(obs["image"][None], resolution)[0]


def closed_loop(world, variant: str, episode: NavEpisode, window: Window, maze: ReplayedMaze, settings: NavSettings,
                distance, memory: dict | None, first: Plan) -> tuple[dict, np.ndarray, int]:
    """Model-predictive control in the real environment: execute the first ``replan_every`` actions of a plan,
    observe, plan again from the longer history, up to ``budget`` steps (``first`` is the plan at the start).
    Returns the outcome, the path (budget+1,3) and the number of plans made."""
    history, layout = episode.history(window.start), episode.layout
    goal, resolution, size = episode.frames[window.goal], episode.frames.shape[-1], layout.shape[-1]
    maze.restore()
    path, steps, current, plans = [episode.track[window.start]], 0, first, 1
    while steps < settings.budget:
        if current is None:
            current = plan(world, variant, history, goal, layout, settings.cem, distance, memory,
                           seed=window.seed(settings.seed) + steps)
            plans += 1
        for a in current.actions[: min(settings.replan_every, settings.budget - steps)]:
            obs = maze.step(a)
            point = observation_track(obs)
            history = history.extended(frame_of(obs, resolution), int(a), absolute_poses(point, size), point)
            path.append(point)
            steps += 1
        current = None
    path = np.stack(path)
    return outcome(path, episode.track[window.goal], settings), path, plans


def variant_on_window(world, variant: str, episode: NavEpisode, window: Window, settings: NavSettings, distance,
                      maze: ReplayedMaze | None) -> tuple[dict, dict]:
    """One variant on one window: its open-loop plan scored against the recorded path and, with the real
    environment, executed open loop and closed loop. Returns its scores and what the figures show."""
    history, goal = episode.history(window.start), episode.track[window.goal]
    seed = window.seed(settings.seed)
    memory = memorize_history(world, variant, history, seed, **settings.memorize)
    first = plan(world, variant, history, episode.frames[window.goal], episode.layout, settings.cem, distance, memory,
                 seed=seed)
    errors = track_errors(episode.track[window.start: window.goal + 1], first.track, 1)
    scores = {"ate": errors["ate"], "rpe": errors["rpe"], "heading_deg": errors["heading_deg"],
              "planned_distance": float(np.linalg.norm(first.track[-1, :2] - goal[:2])), "cost": first.cost,
              "actions": [ACTIONS[a] for a in first.actions], "iteration_seconds": first.seconds}
    shown = {"plan": first, "memory": memory}
    if maze is not None:
        executed, seen = execute(maze, first.actions)
        scores["open_loop_distance"] = float(np.linalg.norm(executed[-1, :2] - goal[:2]))
        shown["executed"] = torch.stack([frame_of(o, episode.frames.shape[-1]) for o in seen])
        closed, shown["path"], scores["plans"] = closed_loop(world, variant, episode, window, maze, settings,
                                                             distance, memory, first)
        scores |= closed
    return scores, shown


def references(episode: NavEpisode, window: Window, settings: NavSettings, maze: ReplayedMaze | None,
               rng: np.random.Generator) -> tuple[dict, dict]:
    """The random walk (its first H actions dead-reckoned for the open-loop scores) and, with the real
    environment, the random walk and the oracle executed for the budget."""
    from .planning import MOTION

    actions = rng.integers(len(ACTIONS), size=max(settings.budget, settings.cem.horizon))
    h = settings.cem.horizon
    track = MOTION.integrate(episode.layout, episode.history(window.start).track, actions[None, :h])[0]
    errors = track_errors(episode.track[window.start: window.goal + 1], track, 1)
    out = {"random": {"ate": errors["ate"], "rpe": errors["rpe"]}}
    paths = {}
    if maze is not None:
        goal = episode.track[window.goal]
        paths["random"] = execute(maze, actions[: settings.budget])[0]
        out["random"] |= outcome(paths["random"], goal, settings)
        oracle, obs = Oracle(episode.layout, goal), maze.restore()
        path = [observation_track(obs)]
        for _ in range(settings.budget):
            obs = maze.step(oracle.act(obs["agent_pos"], obs["agent_dir"]))
            path.append(observation_track(obs))
        paths["oracle"] = np.stack(path)
        out["oracle"] = outcome(paths["oracle"], goal, settings)
    return out, paths


def evaluate_window(world, variants, episode: NavEpisode, window: Window, settings: NavSettings, distance,
                    rng: np.random.Generator, bar=None) -> tuple[dict, dict]:
    """Every variant (once per composition: variants that compose the same experts share a result) and the
    references on one window; the real environment is replayed to the window's start once."""
    maze = None
    if episode.env is not None:
        maze = ReplayedMaze(*episode.env, episode.actions, window.start, episode.track[window.start])
    try:
        row = {"episode": episode.name, "start": window.start, "goal": window.goal, "revisit": window.revisit,
               "start_distance": float(np.linalg.norm(np.subtract(*episode.track[[window.goal, window.start], :2]))),
               "variants": {}}
        shown, first_of = {"paths": {}}, {}
        for v in variants:
            same = first_of.setdefault(world.composition(v), v)
            if same == v:
                row["variants"][v], shown[v] = variant_on_window(world, v, episode, window, settings, distance, maze)
                if "path" in shown[v]:
                    shown["paths"][v] = shown[v]["path"]
            else:
                row["variants"][v], shown[v] = row["variants"][same], shown[same]
            if bar is not None:
                bar.update()
        row["references"], paths = references(episode, window, settings, maze, rng)
        shown["paths"] |= paths
    finally:
        if maze is not None:
            maze.close()
    return row, shown


def rollout_seconds(world, variant: str, episode: NavEpisode, window: Window, settings: NavSettings,
                    memory: dict | None) -> float:
    """The seconds of one single rollout (one candidate of ``horizon`` forward actions) under a variant, after an
    untimed one (which compiles, for a compiled world)."""
    rollout = WorldRollout(world, variant, episode.history(window.start), episode.layout, memory,
                           seed=window.seed(settings.seed))
    actions = np.full((1, settings.cem.horizon), ACTIONS.index("forward"))
    return median_seconds(lambda: rollout(actions), repeats=1, warmup=1)


def summarize(rows: list[dict], variants) -> dict:
    """Means with 95% intervals per variant and reference (success: a proportion with its Wilson interval); each
    variant's successes against the base's, window by window (:func:`~come.metrics.intervals.paired_successes`)."""
    def stats(entries: list[dict]) -> dict:
        keys = [k for k in ("ate", "rpe", "planned_distance", "open_loop_distance", "final_distance",
                            "path_length", "cost") if entries and k in entries[0]]
        out = {k: mean_ci95([e[k] for e in entries]) for k in keys}
        if entries and "success" in entries[0]:
            out["success"] = proportion_ci95(sum(e["success"] for e in entries), len(entries))
        return out

    refs = {name: stats([r["references"][name] for r in rows if name in r["references"]])
            for name in ("random", "oracle")}
    scores = {v: stats([r["variants"][v] for r in rows]) for v in variants}
    if "base" in variants and rows and "success" in rows[0]["variants"]["base"]:
        base = [r["variants"]["base"]["success"] for r in rows]
        for v in variants:
            if v != "base":
                scores[v]["success_against_base"] = paired_successes([r["variants"][v]["success"] for r in rows], base)
    return {"variants": scores,
            "references": {k: s for k, s in refs.items() if s},
            "start_distance": mean_ci95([r["start_distance"] for r in rows])}


def evaluate_planning(world, episodes: list[NavEpisode], variants, settings: NavSettings,
                      out: str | Path | None = None, progress: bool = True, perceptual=None) -> dict:
    """Plan on a window of each episode under each variant, open and closed loop (module docstring); returns a
    JSON-ready dict and writes ``trajectories.png`` and a plan's video (goal | imagined | real) into ``out``."""
    cfg = world.cfg
    if cfg.model.get("action_dim") != len(ACTIONS) or cfg.frame_skip != 1:
        raise InputError(f"planning needs a Memory Maze model of {len(ACTIONS)} actions and frame skip 1 (its motion "
                         f"model is per action); this one has {cfg.model.get('action_dim')} and {cfg.frame_skip}")
    settings.check(cfg.context)
    windows = goal_windows(episodes, settings.cem.horizon, settings.min_gap, settings.min_distance, settings.windows,
                           settings.budget, settings.seed)
    if not windows:
        raise InputError(f"no window: no episode has a goal {settings.cem.horizon} steps ahead and "
                         f"{settings.min_distance} cells away after {settings.min_gap} frames; give longer episodes, "
                         "or a smaller --min-gap or --min-distance")
    distance, rng = goal_distance(settings.distance, perceptual), np.random.default_rng(settings.seed)
    rows, shown = [], []
    bar = tqdm(total=len(windows) * len(variants), desc="planning", unit="plan", disable=not progress)
    for w in windows:
        row, s = evaluate_window(world, variants, episodes[w.episode], w, settings, distance, rng, bar)
        rows.append(row)
        shown.append(s)
    bar.close()
    result = {"episodes": len(episodes), "windows": len(rows), "revisits": sum(w.revisit for w in windows),
              "closed_loop": sum(episodes[w.episode].env is not None for w in windows),
              "settings": settings_dict(settings), **summarize(rows, variants),
              "timing": timing(world, variants, episodes[windows[0].episode], windows[0], settings, rows, shown[0]),
              "per_window": rows}
    if out is not None:
        write_figures(Path(out), episodes, windows, shown, variants)
    return result


def settings_dict(settings: NavSettings) -> dict:
    c = settings.cem
    return {"candidates": c.candidates, "elites": c.elites, "horizon": c.horizon, "iterations": c.iterations,
            "smoothing": c.smoothing, "replan_every": settings.replan_every, "budget": settings.budget,
            "min_gap": settings.min_gap, "min_distance": settings.min_distance,
            "success_radius": settings.success_radius, "success_heading": settings.success_heading,
            "distance": settings.distance, "memorize": dict(settings.memorize), "seed": settings.seed,
            "true_trajectory": "the recorded path from the planning frame to the goal frame"}


def timing(world, variants, episode: NavEpisode, window: Window, settings: NavSettings, rows: list[dict],
           shown: dict) -> dict:
    """Per variant: one CEM iteration (every candidate in one batch; the median over the plans from each window's
    start, which leaves out the first iterations' compiling in a compiled world) against one single rollout of the
    same horizon (measured once per composition)."""
    out, single = {}, {}
    for v in variants:
        key = world.composition(v)
        if key not in single:
            single[key] = rollout_seconds(world, v, episode, window, settings, shown[v]["memory"])
        iterations = [s for r in rows for s in r["variants"][v]["iteration_seconds"]]
        out[v] = {"rollout_seconds": single[key], "iteration_seconds": float(np.median(iterations)),
                  "candidates": settings.cem.candidates}
    return out


def write_figures(out: Path, episodes: list[NavEpisode], windows: list[Window], shown: list[dict], variants) -> None:
    """``trajectories.png`` (every window's paths on its maze) and ``plan_00.mp4``/``.gif``: the goal, the
    first window's imagined plan and the real frames it gives (the recorded frames without the environment)."""
    from ..video import side_by_side, write_video

    plot_trajectories(out / "trajectories.png", episodes, windows, shown)
    w, s = windows[0], shown[0]
    v = "come" if "come" in variants else variants[-1]
    ep, p = episodes[w.episode], s[v]["plan"]
    real = s[v].get("executed", ep.frames[w.start + 1: w.goal + 1])
    panels = [tensor_to_frames(ep.frames[w.goal][None].expand(len(p.frames), -1, -1, -1)),
              tensor_to_frames(p.frames), tensor_to_frames(real)]
    for suffix in (".mp4", ".gif"):
        write_video(out / f"plan_00{suffix}", side_by_side(panels), fps=2)


def plot_trajectories(path: Path, episodes: list[NavEpisode], windows: list[Window], shown: list[dict]) -> None:
    """Each window's maze (walls grey), its recorded path to the goal (black), the goal (red star) and the
    closed-loop paths of the variants and references."""
    from ..plotting import save_figure, subplots

    cols = min(4, len(windows))
    rows = math.ceil(len(windows) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    styles = {"random": dict(color="grey", ls=":"), "oracle": dict(color="green", ls="--")}
    for ax, w, s in zip(axes.flat, windows, shown):
        ep = episodes[w.episode]
        ax.imshow(ep.layout == 0, cmap="Greys", vmin=0, vmax=2, origin="lower",
                  extent=(0, ep.layout.shape[1], 0, ep.layout.shape[0]))
        truth = ep.track[w.start: w.goal + 1]
        ax.plot(truth[:, 0], truth[:, 1], "k-", lw=1.5, label="recorded")
        for name, p in s["paths"].items():
            ax.plot(p[:, 0], p[:, 1], lw=1, label=name, **styles.get(name, {}))
        ax.plot(*truth[0, :2], "o", color="tab:green", ms=4)
        ax.plot(*truth[-1, :2], "*", color="red", ms=9)
        seen = np.concatenate([truth[:, :2], *(p[:, :2] for p in s["paths"].values())])
        lo, hi = np.floor(seen.min(0)) - 1, np.ceil(seen.max(0)) + 1  # the neighbourhood of the paths
        ax.set_xlim(max(lo[0], 0), min(hi[0], ep.layout.shape[1]))
        ax.set_ylim(max(lo[1], 0), min(hi[1], ep.layout.shape[0]))
        ax.set_title(f"{ep.name} t={w.start}", fontsize=8)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(windows):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=6, loc="upper right")
    save_figure(fig, path, dpi=100)


def _cell(s: dict | None, digits: int = 2) -> str:
    return "-" if s is None else f"{s['mean']:.{digits}f} {interval_text(s, digits)}"


def format_planning_table(result: dict) -> str:
    """A markdown table of a result of :func:`evaluate_planning`, with the timing of a CEM iteration."""
    s = result["settings"]
    lines = [f"planning: {result['windows']} windows ({result['revisits']} with the goal at a revisit, "
             f"{result['closed_loop']} closed loop), goal {s['horizon']} recorded steps and "
             f"{_cell(result['start_distance'])} cells away; CEM {s['candidates']} candidates x {s['iterations']} "
             f"iterations, {s['elites']} elites, distance {s['distance']}; re-plan every {s['replan_every']}, "
             f"budget {s['budget']} steps; success within {s['success_radius']:g} cells and "
             f"{s['success_heading']:g} deg",
             "| variant | ATE (cells) | RPE (cells) | success | success against the base: goals only it / only the "
             "base reached, sign test | final distance (cells) | path length (cells) |",
             "|---|---|---|---|---|---|---|"]
    entries = [*result["variants"].items(), *((f"({k})", r) for k, r in result["references"].items())]
    for name, r in entries:
        paired = r.get("success_against_base")
        versus = "-" if paired is None else f"{paired['ahead']} / {paired['behind']}, p = {paired['p']:.2f}"
        lines.append(f"| {name} | {_cell(r.get('ate'))} | {_cell(r.get('rpe'))} | {_cell(r.get('success'))} | "
                     f"{versus} | {_cell(r.get('final_distance'))} | {_cell(r.get('path_length'))} |")
    times = ", ".join(f"{v} {t['iteration_seconds']:.2f} s vs {t['rollout_seconds']:.2f} s"
                      for v, t in result["timing"].items())
    lines.append(f"one CEM iteration ({s['candidates']} candidates in one batch) vs one rollout, {s['horizon']} "
                 f"frames: {times}")
    return "\n".join(lines)
