"""Memory Maze: how the memorization settings change CoME on revisit windows.

    python benchmarks/maze_memorization.py --ckpt runs/maze-x0 --data /tmp/maze_dev --episodes 3 \
        --settings 1e-3:constant:8:25,3e-3:constant:16:50,1e-2:constant:16:50,1e-2:cosine:16:50

Picks ``--windows`` revisit windows per episode of the data's eval split (a return to a place
whose last sighting lies inside the ``--history`` frames, as ``come eval maze`` does), memorizes
each window's history with every setting ``lr:schedule:batch:steps`` (one fresh memory per
setting) and rolls out ``--frames`` frames with the base model, with CoME at each contrast weight
of ``--weights`` and with the naive product (``--no-poe`` leaves it out). Prints one JSON line per setting
(mean PSNR per variant, each variant's mean per-window difference from the base with its 95% interval and
the windows where it is ahead, the memorization loss over its first and last 5 steps, seconds).

With ``--sltm RUN`` (a maze-sltm run) the spatial expert is memorized too, and each weight also
scores the LTM alone (``ltm_w``), the SLTM alone with each baseline of ``--sltm-nulls``
(``sltm_<null>_w``) and CoME with both (``come_<null>_w``). ``--pose-dropout`` drops the pose of
that share of the memorized windows, ``--context-dropout`` their context frames.

    python benchmarks/maze_memorization.py --ckpt runs/maze-x0 --sltm runs/maze-sltm --data /tmp/maze_dev \
        --episodes 3 --weights 1.0
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from come.checkpoint import load_model
from come.data.episodes import episode_files
from come.protocols.maze import (differences_from_base, load_maze_episode, revisit_starts, score_windows,
                                 window_batch)
from come.world import SLTM_NULLS, ExpertWeights, WorldModel


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--windows", type=int, default=2, help="revisit windows per episode")
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--settings", default="1e-2:cosine:16:50", help="comma-separated lr:schedule:batch:steps")
    p.add_argument("--weights", default="1.0,1.5", help=(
        "comma-separated contrast weights (of the LTM, and the SLTM with --sltm)"))
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--sltm", default=None, help="a spatial expert run (maze-sltm)")
    p.add_argument("--sltm-nulls", default="pose_drop,adapters_off", help=f"comma-separated, of {SLTM_NULLS}")
    p.add_argument("--pose-dropout", type=float, default=0.0)
    p.add_argument("--context-dropout", type=float, default=0.0,
                   help="share of memorized windows drawn without context")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-poe", action="store_true", help="leave out the naive product (tens of passes a frame)")
    args = p.parse_args()
    nulls = args.sltm_nulls.split(",")
    if any(n not in SLTM_NULLS for n in nulls):
        p.error(f"--sltm-nulls: choose from {', '.join(SLTM_NULLS)}, got '{args.sltm_nulls}'")

    _, cfg = load_model(args.ckpt)
    eps = [load_maze_episode(f, cfg) for f in episode_files(args.data, "test")[: args.episodes]]
    starts = revisit_starts(eps, args.history, args.frames, 100, args.windows, np.random.default_rng(args.seed))
    batch = window_batch(eps, sorted(starts), args.history, args.frames)
    print(json.dumps({"windows": sorted(starts)}), flush=True)
    for setting in args.settings.split(","):
        lr, schedule, size, steps = setting.split(":")
        base, base_cfg = load_model(args.ckpt)
        world = WorldModel(base, base_cfg, sltm=load_model(args.sltm) if args.sltm else None, rank=args.rank,
                           steps=args.ddim_steps)
        world.observe(batch["frames"], batch["action"], batch["pose"])
        t0 = time.time()
        curves = world.memorize(steps=int(steps), lr=float(lr), batch_size=int(size), seed=args.seed,
                                lr_schedule=schedule, p_pose_dropout=args.pose_dropout,
                                p_context_dropout=args.context_dropout)
        row = {"setting": setting, "memorize_s": round(time.time() - t0, 1),
               "loss_first_last": [round(float(np.mean([c[:5] for c in curves])), 5),
                                   round(float(np.mean([c[-5:] for c in curves])), 5)]}
        runs = [("base", "base", None, None)]  # (column, variant, weight, sltm null)
        for w in map(float, args.weights.split(",")):
            if args.sltm:
                runs += [(f"ltm_w{w}", "ltm", w, None)]
                runs += [(f"{v}_{null}_w{w}", v, w, null) for null in nulls for v in ("sltm", "come")]
            else:
                runs += [(f"come_w{w}", "come", w, None)]
        scores = {}
        for column, variant, w, null in runs + ([] if args.no_poe else [("poe", "poe", None, None)]):
            world.weights = ExpertWeights(ltm=w or 1.0, sltm=w or 1.0)
            world.sltm_null = null or "pose_drop"
            pred = world.imagine(batch["future_action"], batch["future_pose"], variant=variant, seed=args.seed)
            scores[column] = score_windows(pred, batch["truth"])
            row[column] = round(scores[column]["psnr"]["mean"], 2)
        row["vs_base"] = {column: {"mean": round(d["mean"], 2), "ci95": [round(c, 2) for c in d["ci95"]],
                                   "ahead": d["wins"]} for column, d in differences_from_base(scores).items()}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
