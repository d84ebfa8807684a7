"""Memory Maze: does a memory redraw what it memorized? Replays inside the history against revisits.

    python benchmarks/maze_replay.py --ckpt runs/maze-x0 --sltm runs/maze-sltm --data /tmp/maze_dev --episodes 3

Takes the revisit windows of ``benchmarks/maze_memorization.py`` (same seed and counts),
memorizes each window's ``--history`` frames (``--steps`` steps of ``--batch-size`` windows; the
protocol's defaults otherwise), then rolls out
``--frames`` frames twice:

* ``revisit``: after the history, as ``come eval maze`` does (a return to a place along a new path);
* ``replay``: from frame ``--replay-at`` of the history, frames the memory was fitted on, along the
  very path it saw (the model keeps the memory and gets the history up to that frame).

If a memory helps on replays but not on revisits, it stores the episode but does not recall places
from a new path; if it does not help on replays either, it stores too little to steer a rollout.
Prints one JSON line: PSNR per variant for each. Variants: base, the LTM and, with ``--sltm``, the
SLTM (null: its adapters off) and CoME, all at ``--weight``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from come.checkpoint import load_model
from come.data.episodes import episode_files
from come.recipes import RECIPES
from come.protocols.maze import load_maze_episode, revisit_starts, score_windows, window_batch
from come.world import ExpertWeights, WorldModel


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--sltm", default=None, help="a spatial expert run (maze-sltm)")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--windows", type=int, default=2, help="revisit windows per episode")
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--replay-at", type=int, default=100, help="history frame the replay starts from")
    p.add_argument("--weight", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=RECIPES["maze"].steps, help="memorization steps")
    p.add_argument("--batch-size", type=int, default=RECIPES["maze"].batch_size,
                   help="history windows per memorization step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not 3 <= args.replay_at <= args.history - args.frames:
        p.error(f"--replay-at must leave {args.frames} memorized frames after it, in a history of {args.history}")

    base, cfg = load_model(args.ckpt)
    eps = [load_maze_episode(f, cfg) for f in episode_files(args.data, "test")[: args.episodes]]
    starts = sorted(revisit_starts(eps, args.history, args.frames, 100, args.windows, np.random.default_rng(args.seed)))
    batch = window_batch(eps, starts, args.history, args.frames)
    world = WorldModel(base, cfg, sltm=load_model(args.sltm) if args.sltm else None,
                       weights=ExpertWeights(ltm=args.weight, sltm=args.weight), sltm_null="adapters_off", steps=10)
    world.observe(batch["frames"], batch["action"], batch["pose"])
    t0 = time.time()
    world.memorize("maze", steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    row = {"windows": starts, "memorize_s": round(time.time() - t0, 1), "revisit": {}, "replay": {}}
    variants = ["base", "ltm"] + (["sltm", "come"] if args.sltm else [])
    for v in variants:
        pred = world.imagine(batch["future_action"], batch["future_pose"], variant=v, seed=args.seed)
        row["revisit"][v] = round(score_windows(pred, batch["truth"])["psnr"]["mean"], 2)
    r, f = args.replay_at, args.frames
    world.observe(batch["frames"][:, :r], batch["action"][:, :r], batch["pose"][:, :r], keep_memory=True)
    for v in variants:
        pred = world.imagine(batch["action"][:, r : r + f], batch["pose"][:, r : r + f], variant=v, seed=args.seed)
        row["replay"][v] = round(score_windows(pred, batch["frames"][:, r : r + f])["psnr"]["mean"], 2)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
