"""Memory Maze protocols: fixed context, revisits, streaming and the capacity sweep.

All run a :class:`~come.world.WorldModel` (base model, and the STM, SLTM and long-term
memory where given) on held-out episodes and score predicted frames against the true
ones with PSNR (of the window's mean squared error) and SSIM; context frames are never
scored. Two model-free references are scored beside them: the last history frame held
still, and for each frame the history frame seen from the nearest true pose.

* **fixed** (the paper's Table 2): at a random position of each episode, the model
  gets the previous ``history`` frames (memorized by the LTM/SLTM, the STM sees
  its window, the base its few last frames) and predicts the next ``frames``.
* **revisits**: the same at the moments the agent comes back to a place (within
  half a cell, heading within 45 degrees) it last saw more than ``min_gap``
  frames earlier, that sighting inside the history (:func:`revisit_frames`),
  where memory is what can help.
* **streaming** (the paper's Figure 3): from frame ``history``, ``iterations`` times:
  memorize the last ``window`` frames for ``updates`` steps, predict the next
  ``frames``, then move on by them; PSNR per iteration (:meth:`WorldModel.stream`).
* **capacity** (the paper's Table 5): the LTM on the fixed windows for each LoRA
  rank x history length.

Windows of all episodes are processed as one batch: one memory (adapter) per window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..data.clips import frames_to_tensor, pose_track, skip_actions, tensor_to_frames
from ..data.episodes import EpisodeError, load_episode
from ..data.places import TURN_COST, nearest_views, wrap_angle
from ..errors import InputError
from ..recipes import RECIPES
from ..metrics.image import ssim, window_psnr
from ..metrics.intervals import interval_text, mean_ci95
from ..metrics.perceptual import lpips
from ..models.pose_encoder import PoseEncoder, infer_track, to_absolute_pose
from ..plotting import bar_chart, save_figure, subplots
from ..video import side_by_side, write_video
from .pose import true_track

PROTOCOLS = ("fixed", "revisits", "streaming", "capacity")
# The experts CoME composes on Memory Maze: not the LTM, which is below the base model on revisits reached
# along new paths (BENCHMARKS.md, "Memory Maze: the short-term memory and every variant on revisits").
COME_EXPERTS = ("stm", "place", "sltm")


def revisit_frames(track: np.ndarray, min_gap: int = 100, radius: float = 0.5,
                   max_turn_deg: float = 45.0, max_gap: int | None = None) -> list[int]:
    """Frames at which the agent (track (T,3) = x, y, yaw) is back at a place it last saw more than
    ``min_gap`` (and at most ``max_gap``) frames earlier: within ``radius`` cells of a past position,
    heading within ``max_turn_deg`` of the heading it had there. The frames just before ``t`` that
    stay within ``2 * radius`` of it are the current visit, not a past one."""
    pos, yaw = track[:, :2], track[:, 2]
    frames = []
    for t in range(1, len(track)):
        dist = np.linalg.norm(pos[:t] - pos[t], axis=1)
        turn = np.abs(wrap_angle(yaw[:t] - yaw[t]))
        stay = t
        while stay > 0 and dist[stay - 1] < 2 * radius:
            stay -= 1
        seen = np.flatnonzero((dist[:stay] < radius) & (turn[:stay] < np.radians(max_turn_deg)))
        if len(seen) and min_gap < t - seen[-1] <= (max_gap or t):
            frames.append(t)
    return frames


def revisit_starts(episodes: list[dict], history: int, frames: int, min_gap: int, per_episode: int,
                   rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``per_episode`` revisit windows (episode index, first predicted frame) per episode of
    :func:`load_maze_episode`, drawn with ``rng``: a window has ``history`` frames before it and
    ``frames`` after, and the place's last sighting lies inside its history (what a memory of the
    history can recall)."""
    starts = []
    for e, ep in enumerate(episodes):
        ok = [s for s in revisit_frames(ep["track"], min_gap, max_gap=history)
              if history <= s <= len(ep["frames"]) - frames]
        starts += [(e, int(s)) for s in (rng.choice(ok, min(len(ok), per_episode), replace=False) if ok else [])]
    return starts


def window_starts(episodes: list[dict], history: int, frames: int, min_gap: int, per_episode: int,
                  seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The fixed-context and the revisit windows (episode index, first predicted frame) of
    :func:`evaluate_maze`, both sorted: ``per_episode`` random ones, and up to that many revisits."""
    rng = np.random.default_rng(seed)
    fixed = [(e, int(s)) for e, ep in enumerate(episodes)
             for s in rng.integers(history, len(ep["frames"]) - frames + 1, per_episode)]
    return sorted(fixed), sorted(revisit_starts(episodes, history, frames, min_gap, per_episode, rng))


def load_maze_episode(path: Path, cfg, pose_encoder: PoseEncoder | None = None) -> dict[str, torch.Tensor]:
    """Frames, actions, absolute poses (dataset's, or the pose encoder's from the first true pose) and
    the true (x, y, yaw) track, all at the model's frame skip and resolution."""
    ep = load_episode(path)
    if ep["action"].shape[1] != cfg.model.get("action_dim"):
        raise EpisodeError(f"{path}: actions have {ep['action'].shape[1]} dims, the model expects "
                           f"{cfg.model.get('action_dim')} (is this a Memory Maze episode?)")
    skip = cfg.frame_skip
    out = {"frames": frames_to_tensor(ep["image"][::skip], cfg.model["resolution"]),
           "action": torch.from_numpy(skip_actions(ep["action"], skip)),
           "track": true_track(ep, skip, path)}
    if pose_encoder is None:
        out["pose"] = pose_track(ep, "absolute", skip, path)
    else:
        frames = frames_to_tensor(ep["image"][::skip], pose_encoder.config.resolution)
        track = infer_track(pose_encoder, frames, out["action"], torch.from_numpy(out["track"][0]).float())
        out["pose"] = to_absolute_pose(track, np.asarray(ep["maze_layout"]).shape[-1]).float()
    return out


def window_batch(episodes: list[dict], starts: list[tuple[int, int]], history: int, frames: int) -> dict:
    """Batch of windows (episode index, first predicted frame): history, future actions/poses, truth."""
    def cut(key, a, b):
        return torch.stack([episodes[e][key][s + a : s + b] for e, s in starts])

    return {"frames": cut("frames", -history, 0), "action": cut("action", -history, 0),
            "pose": cut("pose", -history, 0), "future_action": cut("action", 0, frames),
            "future_pose": cut("pose", 0, frames), "truth": cut("frames", 0, frames)}


def nearest_pose_frames(history: torch.Tensor, history_track: np.ndarray, future_track: np.ndarray,
                        turn_cost: float = TURN_COST) -> torch.Tensor:
    """For each future pose, the history frame seen from the nearest true pose: distance in cells plus
    ``turn_cost`` per radian of heading. A memory that only recalls (no model) scores this."""
    return history[torch.from_numpy(nearest_views(history_track, future_track, 1, turn_cost)[:, 0])]


def reference_predictions(episodes: list[dict], starts: list[tuple[int, int]], batch: dict, history: int) -> dict:
    """Two model-free predictions: the last history frame held still, and the history frame nearest in
    true pose to each future frame (what the history can say about the place)."""
    frames = batch["truth"].shape[1]
    nearest = torch.stack([
        nearest_pose_frames(h, episodes[e]["track"][s - history : s], episodes[e]["track"][s : s + frames])
        for h, (e, s) in zip(batch["frames"], starts)])
    return {"copy_last_frame": batch["frames"][:, -1:].expand_as(batch["truth"]), "nearest_pose_frame": nearest}


def score_windows(pred: torch.Tensor, truth: torch.Tensor, perceptual=None) -> dict:
    """Per window PSNR and SSIM (and LPIPS with a ``perceptual`` network); their means with 95% intervals."""
    p = [window_psnr(a, b) for a, b in zip(pred, truth)]
    s = [float(ssim(a, b).mean()) for a, b in zip(pred, truth)]
    scores = {"psnr": mean_ci95(p), "ssim": mean_ci95(s), "per_window_psnr": p}
    if perceptual is not None:
        scores["lpips"] = mean_ci95([float(lpips(a, b, perceptual).mean()) for a, b in zip(pred, truth)])
    return scores


def differences_from_base(scores: dict[str, dict]) -> dict[str, dict]:
    """Each entry's PSNR minus the base model's on the same windows: mean with its 95% interval, and the
    windows where it is ahead (``wins``). Empty without a base entry."""
    if "base" not in scores:
        return {}
    base = np.asarray(scores["base"]["per_window_psnr"])
    out = {}
    for name, s in scores.items():
        if name != "base":
            diff = np.asarray(s["per_window_psnr"]) - base
            out[name] = mean_ci95(diff) | {"wins": int((diff > 0).sum())}
    return out


def window_scores(preds: dict[str, torch.Tensor], references: dict[str, torch.Tensor], truth: torch.Tensor,
                  frames: int | None = None, perceptual=None) -> dict:
    """Scores of every variant and reference on the first ``frames`` predicted frames (all by default), and
    their per-window differences against the base."""
    frames = frames or truth.shape[1]
    scores = {v: score_windows(p[:, :frames], truth[:, :frames], perceptual) for v, p in preds.items()}
    refs = {k: score_windows(p[:, :frames], truth[:, :frames], perceptual) for k, p in references.items()}
    return {"variants": scores, **refs, "vs_base": differences_from_base(scores | refs)}


def predict_windows(world, batch: dict, variants, seed: int = 0, progress: bool = False, **memorize
                    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """:meth:`~come.world.WorldModel.predict` on a batch of windows from :func:`window_batch`; ``memorize``
    changes settings of the maze recipe."""
    return world.predict(batch["frames"], batch["action"], batch["pose"], batch["future_action"], batch["future_pose"],
                         variants, seed, progress, **memorize)


def evaluate_maze(
    make_world: Callable[[int], object],
    files: list[Path],
    episode_cfg,
    protocols=("fixed", "revisits"),
    variants=("base", "ltm", "come"),
    history: int = 200,
    frames: int = 8,
    memorize: dict | None = None,
    rank: int = 32,
    min_gap: int = 100,
    windows_per_episode: int = 2,
    stream_window: int = 50,
    stream_updates: int = 25,
    iterations: int = 11,
    capacity_ranks=(8, 32),
    capacity_histories=(50, 200),
    pose_encoder: PoseEncoder | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
    horizons=(),
    perceptual=None,
    baselines: dict[str, Callable[[], object]] | None = None,
) -> dict:
    """Run the chosen protocols; ``make_world(rank=r)`` builds a fresh :class:`~come.world.WorldModel`.
    ``memorize`` changes settings of the maze memorization recipe (``RECIPES["maze"]``: steps, lr, window
    weighting...). ``baselines``: name -> a maker of another world model, rolled out as its own base on the
    same fixed and revisit windows (a row beside the variants). Returns a JSON-ready dict; writes plots and
    videos to ``out``."""
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise InputError(f"unknown protocol(s) {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})")
    episodes = [load_maze_episode(f, episode_cfg, pose_encoder)
                for f in tqdm(files, desc="loading episodes", unit="ep", disable=not progress)]
    need = history + frames
    short = [f.name for f, e in zip(files, episodes) if len(e["frames"]) < need]
    if short:
        raise EpisodeError(f"{', '.join(short)}: fewer than history {history} + {frames} frames")
    memorize = RECIPES["maze"].with_overrides(**(memorize or {}))
    result = {"episodes": len(files), "history": history, "frames": frames, "memorization": dict(memorize),
              "lora_rank": rank, "seed": seed, "variants": list(variants), "baselines": list(baselines or {}),
              "protocols": {}}
    out = Path(out) if out is not None else None

    fixed, revisits = window_starts(episodes, history, frames, min_gap, windows_per_episode, seed)
    memorize["seed"] = seed
    for name, starts in (("fixed", fixed), ("revisits", revisits)):
        if name in protocols:
            result["protocols"][name] = window_protocol(name, make_world, rank, episodes, starts, variants, history,
                                                        frames, min_gap, memorize, out, progress, horizons, perceptual,
                                                        baselines)
    if "streaming" in protocols:
        result["protocols"]["streaming"] = streaming_protocol(make_world, rank, episodes, variants, history, frames,
                                                              iterations, stream_window, stream_updates, memorize,
                                                              out, progress)
    if "capacity" in protocols:
        result["protocols"]["capacity"] = capacity_protocol(make_world, episodes, fixed, frames, capacity_ranks,
                                                            capacity_histories, memorize, progress)
    return result


def window_protocol(name: str, make_world, rank: int, episodes: list[dict], starts, variants, history: int,
                    frames: int, min_gap: int, memorize: dict, out: Path | None, progress: bool,
                    horizons=(), perceptual=None, baselines=None) -> dict:
    """Fixed or revisit windows: every variant's scores (and every baseline model's, see :func:`evaluate_maze`),
    the model-free references, the per-window differences against the base and the seconds per window; a video
    and a bar plot into ``out``.
    Each of ``horizons`` shorter than ``frames`` is also scored on the rollouts' first frames: a rollout
    is generated chunk by chunk, so its first frames are the shorter rollout itself. ``perceptual``: an
    LPIPS network (:func:`~come.metrics.perceptual.lpips_network`) adds LPIPS to the scores."""
    if not starts:
        return {"windows": 0, "note": f"no revisit after a gap of more than {min_gap} frames to a place seen in "
                                      f"the last {history}"}
    world, shorter = make_world(rank=rank), sorted({h for h in horizons if h < frames})
    uneven = [h for h in shorter if h % world.cfg.future]
    if uneven:
        raise InputError(f"horizons {uneven}: not a multiple of the {world.cfg.future} frames the model generates "
                         "at once")
    batch = window_batch(episodes, starts, history, frames)
    preds, seconds = predict_windows(world, batch, variants, progress=progress, **memorize)
    for label, make_baseline in (baselines or {}).items():
        own, own_seconds = predict_windows(make_baseline(), batch, ("base",), memorize.get("seed", 0), progress)
        preds[label], seconds[label] = own["base"], own_seconds["base"]
    references = reference_predictions(episodes, starts, batch, history)
    truth = batch["truth"]
    result = {"windows": len(starts), "starts": starts, **window_scores(preds, references, truth, None, perceptual),
              "seconds_per_window": {k: t / len(starts) for k, t in seconds.items()}}
    if shorter:
        result["horizons"] = {str(h): window_scores(preds, references, truth, h, perceptual) for h in shorter}
    if out is not None:
        shown = [v for v in ("base", "come") if v in preds] or list(preds)[:1]
        panels = [tensor_to_frames(batch["truth"][0])] + [tensor_to_frames(preds[v][0]) for v in shown]
        for suffix in (".mp4", ".gif"):
            write_video(out / f"{name}_00{suffix}", side_by_side(panels), fps=4)
        bar_chart({v: s["psnr"] for v, s in result["variants"].items()}, "PSNR (dB)", out / f"{name}.png",
                  title=f"{name} ({len(starts)} windows)")
    return result


def streaming_protocol(make_world, rank: int, episodes: list[dict], variants, history: int, frames: int,
                       iterations: int, window: int, updates: int, memorize: dict, out: Path | None,
                       progress: bool) -> dict:
    """From frame ``history`` on, ``iterations`` times: memorize the last ``window`` frames, predict the next
    ``frames``, append the truth; mean PSNR per iteration and variant (a plot into ``out``)."""
    end = history + iterations * frames
    usable = [e for e, ep in enumerate(episodes) if len(ep["frames"]) >= end]
    if not usable:
        raise EpisodeError(f"streaming needs episodes of {end} frames (history {history} + {iterations} x {frames})")
    full = {k: torch.stack([episodes[e][k][:end] for e in usable]) for k in ("frames", "action", "pose")}
    curves = {}
    for v in tqdm(variants, desc="streaming", unit="variant", disable=not progress):
        its = make_world(rank=rank).stream(full["frames"], full["action"], full["pose"], start=history, window=window,
                                      updates=updates, horizon=frames, iterations=iterations, variant=v,
                                      **memorize)
        curves[v] = [float(np.mean([window_psnr(p, t) for p, t in zip(it["prediction"], it["truth"])]))
                     for it in its]
    if out is not None:
        plot_streaming(curves, out / "streaming.png")
    return {"episodes": len(usable), "window": window, "updates": updates, "iterations": iterations,
            "psnr_per_iteration": curves}


def capacity_protocol(make_world, episodes: list[dict], fixed, frames: int, ranks, histories, memorize: dict,
                      progress: bool) -> dict:
    """The LTM's PSNR over LoRA rank x history length, on fixed windows late enough for the longest history."""
    grid = {}
    longest = max(histories)
    starts = [(e, s) for e, s in fixed if s >= longest] or [(e, longest) for e in range(len(episodes))]
    for r in tqdm(ranks, desc="capacity", unit="rank", disable=not progress):
        for h in histories:
            batch = window_batch(episodes, starts, h, frames)
            preds, _ = predict_windows(make_world(rank=r), batch, ("ltm",), **memorize)
            grid[f"rank{r}_history{h}"] = {"rank": r, "history": h,
                                           "psnr": score_windows(preds["ltm"], batch["truth"])["psnr"]}
    return {"windows": len(starts), "grid": grid}


def plot_streaming(curves: dict[str, list[float]], path: Path) -> None:
    """PSNR per streaming iteration, one line per variant."""
    fig, ax = subplots(figsize=(4.8, 3.2))
    for v, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=v)
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _score_rows(r: dict) -> list[str]:
    """A markdown table of one protocol's scores (from :func:`window_scores`)."""
    perceptual = "lpips" in r["variants"].get("base", next(iter(r["variants"].values())))
    lines = ["| variant | PSNR (dB) | vs base (dB), windows ahead | SSIM |" + (" LPIPS |" if perceptual else ""),
             "|---|---|---|---|" + ("---|" if perceptual else "")]
    rows = [*r["variants"].items(), ("copy_last_frame", r["copy_last_frame"]),
            ("nearest_pose_frame", r["nearest_pose_frame"])]
    for v, s in rows:
        p, q, d = s["psnr"], s["ssim"], r.get("vs_base", {}).get(v)
        diff = "" if d is None else f"{d['mean']:+.2f} {interval_text(d)}, {d['wins']}"
        label = {"copy_last_frame": "(copy last frame)", "nearest_pose_frame": "(nearest-pose history frame)"}.get(v, v)
        extra = f" {s['lpips']['mean']:.3f} |" if perceptual else ""
        lines.append(f"| {label} | {p['mean']:.2f} {interval_text(p)} | {diff} | {q['mean']:.3f} |{extra}")
    return lines


def format_maze_table(result: dict) -> str:
    """Markdown tables of a result from :func:`evaluate_maze`."""
    lines = []
    for name in ("fixed", "revisits"):
        r = result["protocols"].get(name)
        if r is None:
            continue
        if not r["windows"]:
            lines.append(f"{name}: {r['note']}")
            continue
        for frames, scores in [(result["frames"], r), *((int(h), s) for h, s in r.get("horizons", {}).items())]:
            lines += [f"\n{name}: {r['windows']} windows, history {result['history']}, {frames} frames predicted",
                      *_score_rows(scores)]
    r = result["protocols"].get("streaming")
    if r is not None:
        its = r["iterations"]
        lines += [f"\nstreaming: PSNR per iteration ({r['episodes']} episodes)",
                  "| variant | " + " | ".join(str(i) for i in range(1, its + 1)) + " |", "|---|" + "---|" * its]
        lines += [f"| {v} | " + " | ".join(f"{x:.2f}" for x in ys) + " |" for v, ys in r["psnr_per_iteration"].items()]
    r = result["protocols"].get("capacity")
    if r is not None:
        lines += ["\ncapacity (ltm PSNR, dB)", "| rank | history | PSNR |", "|---|---|---|"]
        lines += [f"| {g['rank']} | {g['history']} | {g['psnr']['mean']:.2f} |" for g in r["grid"].values()]
    return "\n".join(lines).strip()
