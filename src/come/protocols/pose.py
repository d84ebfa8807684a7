"""Pose encoder accuracy: dead-reckoned tracks of whole held-out episodes against the true ones.

For each held-out Memory Maze episode the encoder is given the frames, the actions and
the true first pose; it predicts every step's motion and integrates it into a track
(:func:`come.models.pose_encoder.infer_track`). Reported, with ``evo``
(Grupp 2017, the usual tool for trajectory metrics):

* ATE: absolute trajectory error, RMSE of the positions (grid cells), without
  alignment (the start pose is given, as it is to the spatial expert);
* RPE: relative pose error over ``delta`` frames, RMSE of the translation part;
* the mean absolute heading error in degrees;

and the same for standing still at the first pose, for scale. Also a plot of the
tracks over the maze layout.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import load_model
from ..data.clips import frames_to_tensor, skip_actions
from ..data.episodes import EpisodeError, episode_files, load_episode
from ..data.places import wrap_angle
from ..errors import InputError
from ..models.pose_encoder import infer_track
from ..plotting import save_figure, subplots
from ..metrics.intervals import mean_ci95


def _evo():
    try:
        from evo.core import metrics
        from evo.core.trajectory import PoseTrajectory3D
    except ImportError:
        raise InputError("trajectory metrics need evo: pip install 'come[maze]' (or pip install evo)") from None
    return metrics, PoseTrajectory3D


def track_errors(truth: np.ndarray, pred: np.ndarray, delta: int) -> dict[str, float]:
    """ATE and RPE (evo, translation RMSE) and mean heading error (degrees) of a predicted track
    (T,3) = (x, y, yaw) against the true one."""
    metrics, PoseTrajectory3D = _evo()

    def traj(track):
        xyz = np.concatenate([track[:, :2], np.zeros((len(track), 1))], axis=1)
        half = track[:, 2] / 2
        quat = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half), np.sin(half)], axis=1)
        return PoseTrajectory3D(positions_xyz=xyz, orientations_quat_wxyz=quat,
                                timestamps=np.arange(len(track), dtype=float))

    ref, est = traj(truth), traj(pred)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rpe = metrics.RPE(metrics.PoseRelation.translation_part, delta=delta, delta_unit=metrics.Unit.frames)
    rpe.process_data((ref, est))
    heading = np.abs(wrap_angle(pred[:, 2] - truth[:, 2]))
    return {"ate": float(ape.get_statistic(metrics.StatisticsType.rmse)),
            "rpe": float(rpe.get_statistic(metrics.StatisticsType.rmse)),
            "heading_deg": float(np.degrees(heading).mean())}


def true_track(ep: dict, skip: int = 1, path: str | Path = "<episode>") -> np.ndarray:
    """(x, y, yaw) per kept frame from ``agent_pos`` and ``agent_dir``."""
    for key in ("agent_pos", "agent_dir"):
        if key not in ep:
            raise EpisodeError(f"{path}: no '{key}' array; this needs Memory Maze episodes")
    pos, d = ep["agent_pos"].astype(np.float64), ep["agent_dir"].astype(np.float64)
    return np.concatenate([pos, np.arctan2(d[:, 1:2], d[:, 0:1])], axis=1)[::skip]


def evaluate_pose(
    ckpt: str | Path,
    data: str | Path,
    episodes: int = 4,
    delta: int = 10,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Run the protocol on the first ``episodes`` held-out episodes; returns a JSON-ready dict and
    writes ``pose_tracks.png`` to ``out``."""
    encoder, cfg = load_model(ckpt, network="pose-encoder")
    files = episode_files(data, "test")[:episodes]
    rows, tracks = [], []
    t0 = time.perf_counter()
    for path in tqdm(files, desc="pose tracks", unit="ep", disable=not progress):
        ep = load_episode(path)
        truth = true_track(ep, cfg.frame_skip, path)
        if len(truth) <= delta:
            raise EpisodeError(f"{path}: {len(truth)} frames; the RPE over {delta} frames needs more")
        frames = frames_to_tensor(ep["image"][:: cfg.frame_skip], encoder.config.resolution)
        action = torch.from_numpy(skip_actions(ep["action"], cfg.frame_skip))
        pred = infer_track(encoder, frames, action, torch.from_numpy(truth[0]).float()).double().numpy()
        still = np.repeat(truth[:1], len(truth), axis=0)
        rows.append({"episode": path.name, "frames": len(truth), "encoder": track_errors(truth, pred, delta),
                     "standing_still": track_errors(truth, still, delta)})
        tracks.append((path.name, truth, pred, np.asarray(ep.get("maze_layout", np.zeros((0, 0))))))
    seconds = (time.perf_counter() - t0) / max(1, len(files))
    summary = {name: {k: mean_ci95([r[name][k] for r in rows]) for k in ("ate", "rpe", "heading_deg")}
               for name in ("encoder", "standing_still")}
    result = {"ckpt": str(ckpt), "episodes": len(rows), "delta": delta, "frame_skip": cfg.frame_skip,
              "summary": summary, "per_episode": rows, "seconds_per_episode": seconds}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        plot_tracks(tracks, Path(out) / "pose_tracks.png")
    return result


def plot_tracks(tracks, path: Path) -> None:
    """True (black) and inferred (red) tracks of each episode over its maze layout (walls grey)."""
    n = len(tracks)
    fig, axes = subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, (name, truth, pred, layout) in zip(axes[0], tracks):
        if layout.ndim == 3:
            layout = layout[0]
        if layout.size:  # memory-maze layouts: 1 = free; cell (i, j) spans x in [j, j+1], y in [i, i+1]
            ax.imshow(layout == 0, cmap="Greys", vmin=0, vmax=2, origin="lower",
                      extent=(0, layout.shape[1], 0, layout.shape[0]))
        ax.plot(truth[:, 0], truth[:, 1], "k-", lw=1, label="true")
        ax.plot(pred[:, 0], pred[:, 1], "r-", lw=1, label="encoder")
        ax.plot(truth[0, 0], truth[0, 1], "go", ms=4)
        ax.set_title(name, fontsize=8)
        ax.set_aspect("equal")
    axes[0][0].legend(fontsize=7, loc="upper right")
    save_figure(fig, path, dpi=100)


def format_table(result: dict) -> str:
    lines = [f"{'':<16} {'ATE (cells)':>12} {'RPE@' + str(result['delta']):>10} {'heading (deg)':>14}"]
    for name, s in result["summary"].items():
        lines.append(
            f"{name:<16} {s['ate']['mean']:>12.3f} {s['rpe']['mean']:>10.3f} {s['heading_deg']['mean']:>14.1f}")
    return "\n".join(lines)
