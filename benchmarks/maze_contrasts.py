"""Memory Maze: what each expert's contrast carries on revisit windows (come.protocols.contrasts).

    python benchmarks/maze_contrasts.py --data maze_dev --episodes 6 --windows 2 --frames 8 --json c.json

Picks ``--windows`` revisit windows per episode of the data's eval split (as ``come eval maze`` does), observes
each window's ``--history`` frames with the shipped ``maze-place`` (or ``--ckpt``), memorizes the LTM (and the
SLTM with ``--sltm``) with the maze recipe (``--memorize-steps``; ``--memorize-views``: each memorized window
with its place views), and, teacher-forced on the window's ``--frames`` true frames, measures at each level of
the sampler each expert's contrast against the base's error: its cosine, its norm, the weights a least-squares
fit gives it (alone and jointly) and the share of the base's squared error removed, at those weights and at the
world's defaults (``--in-sample``: also on the history's own last frames, which the memory was fitted on).
``ltm_views`` is the memorized adapters on the place memory's pass (views given to both sides): what the memory
adds over the retrieved views.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from come.checkpoint import load_model
from come.compose import Expert
from come.data.episodes import episode_files
from come.protocols.contrasts import contrast_sums
from come.protocols.maze import load_maze_episode, revisit_starts, window_batch
from come.world import WorldModel


def _table(rows: list[dict], experts: tuple[str, ...]) -> str:
    head = "| level | " + " | ".join(f"{e} cos / norm / w / removed" for e in experts) + \
        " | joint w | joint removed | at defaults |"
    lines = [head, "|" + "---|" * (len(experts) + 4)]
    for r in rows:
        cells = [f"{r['cos'][e]:+.3f} / {r['norm'][e]:.2f} / {r['solo_weight'][e]:+.2f} / {r['solo_removed'][e]:.3f}"
                 for e in experts]
        joint = ", ".join(f"{r['joint_weight'][e]:+.2f}" for e in experts)
        lines.append(f"| {r['level']} | " + " | ".join(cells) +
                     f" | {joint} | {r['joint_removed']:.3f} | {r.get('removed_at_weights', float('nan')):+.3f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="maze-place")
    p.add_argument("--sltm", default=None, help="a spatial expert run (maze-sltm)")
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--windows", type=int, default=2, help="revisit windows per episode")
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--memorize-steps", type=int, default=50)
    p.add_argument("--memorize-views", action="store_true", help="memorize windows with their place views")
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-sample", action="store_true", help=(
        "also measure on the history's own last --frames frames, which the memory was fitted on"))
    p.add_argument("--json", default=None)
    args = p.parse_args()

    base, cfg = load_model(args.ckpt)
    eps = [load_maze_episode(f, cfg) for f in episode_files(args.data, "test")[: args.episodes]]
    starts = sorted(revisit_starts(eps, args.history, args.frames, 100, args.windows, np.random.default_rng(args.seed)))
    batch = window_batch(eps, starts, args.history, args.frames)
    world = WorldModel(base, cfg, place=(base, cfg), sltm=load_model(args.sltm) if args.sltm else None,
                       steps=args.ddim_steps)
    world.observe(batch["frames"], batch["action"], batch["pose"])
    t0 = time.time()
    world.memorize(steps=args.memorize_steps, seed=args.seed, views=args.memorize_views)
    memorize_s = time.time() - t0
    world.outside["ltm_views"] = Expert("ltm_views", world.base, cfg.context, adapter=world.episode_adapters,
                                        null="adapters_off", views=True)
    experts = ("ltm", "place", "ltm_views") + (("sltm",) if args.sltm else ())
    weights = {**world.weights, "ltm_views": 1.0}
    print(f"{len(starts)} revisit windows, {args.frames} frames each; memorizing {memorize_s:.0f} s")
    out = {"windows": starts, "args": vars(args)}
    t0 = time.time()
    sums = contrast_sums(world, batch["truth"], batch["future_action"], batch["future_pose"], experts, seed=args.seed)
    out["revisits"] = _result(sums, weights, f"revisit frames ({time.time() - t0:.0f} s)")
    if args.in_sample:  # the history's own last frames, which the memory was fitted on
        seen = slice(0, args.history - args.frames)
        last = slice(args.history - args.frames, None)
        world.observe(batch["frames"][:, seen], batch["action"][:, seen], batch["pose"][:, seen], keep_memory=True)
        sums = contrast_sums(world, batch["frames"][:, last], batch["action"][:, last], batch["pose"][:, last],
                             experts, seed=args.seed)
        out["in_sample"] = _result(sums, weights, "the history's last frames (memorized)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


def _result(sums, weights: dict, title: str) -> dict:
    rows = sums.summary(weights)
    print(f"\n{title}\n" + _table(rows, sums.experts), flush=True)
    return {"levels": rows, "per_window": {"gram": sums.gram.tolist(), "cross": sums.cross.tolist(),
                                           "error": sums.error.tolist()}}

if __name__ == "__main__":
    main()
