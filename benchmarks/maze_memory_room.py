"""Memory Maze: how much the history can say about the predicted frames, with no model at all.

    python benchmarks/maze_memory_room.py --ckpt runs/maze-x0 --data /tmp/maze --episodes 8 --frames 8,16,32,64

Takes the windows ``come eval maze`` takes (same seed, history and windows per episode; a
horizon changes which revisits fit) and scores three model-free predictions of each window's
``--frames`` frames against the truth (PSNR of the window's mean squared error):

* ``copy_last``: the last history frame, held still;
* ``nearest_pose``: for each frame, the history frame seen from the nearest true pose (what the
  protocol reports as ``nearest_pose_frame``);
* ``oracle_frame``: for each frame, the history frame closest to the truth. It picks with the answer,
  so it is an optimistic bound on what recalling one remembered frame could score.

Prints one JSON line per horizon. The run's config gives the frame skip and resolution only.
``--picks memorization`` scores instead the revisit windows of ``benchmarks/maze_memorization.py``
and ``benchmarks/maze_replay.py`` (their dev figures are on those).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from come.checkpoint import load_config
from come.data.episodes import episode_files
from come.metrics.image import window_psnr
from come.protocols.maze import window_batch, load_maze_episode, nearest_pose_frames, revisit_starts, window_starts


def best_history_frames(history: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """For each true frame, the history frame with the least squared error to it."""
    mse = ((truth[:, None] - history[None]) ** 2).flatten(2).mean(2)  # (frames, history)
    return history[mse.argmin(1)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a Memory Maze run (for its frame skip and resolution)")
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--frames", default="8,32", help="comma-separated horizons")
    p.add_argument("--windows", type=int, default=2, help="windows per episode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--picks", choices=("eval", "memorization"), default="eval",
                   help="whose windows: come eval maze's (fixed and revisits), or the memorization benchmarks' "
                        "(revisits)")
    args = p.parse_args()

    cfg = load_config(args.ckpt)
    eps = [load_maze_episode(f, cfg) for f in episode_files(args.data, "test")[: args.episodes]]
    for frames in map(int, args.frames.split(",")):
        if args.picks == "eval":
            picked = zip(("fixed", "revisits"), window_starts(eps, args.history, frames, 100, args.windows, args.seed))
        else:
            rng = np.random.default_rng(args.seed)
            picked = [("revisits", sorted(revisit_starts(eps, args.history, frames, 100, args.windows, rng)))]
        row = {"frames": frames}
        for name, starts in picked:
            batch = window_batch(eps, starts, args.history, frames)
            scores = {"copy_last": [], "nearest_pose": [], "oracle_frame": []}
            for h, truth, (e, s) in zip(batch["frames"], batch["truth"], starts):
                track = eps[e]["track"]
                preds = {"copy_last": h[-1:].expand_as(truth),
                         "nearest_pose": nearest_pose_frames(h, track[s - args.history : s], track[s : s + frames]),
                         "oracle_frame": best_history_frames(h, truth)}
                for k, pred in preds.items():
                    scores[k].append(window_psnr(pred, truth))
            row[name] = {"windows": len(starts), **{k: round(float(np.mean(v)), 2) for k, v in scores.items()}}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
