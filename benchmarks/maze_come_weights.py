"""Which experts, at which weights, CoME should compose on Memory Maze revisits.

Memorizes each revisit window's history once, then imagines it under several expert sets and contrast
weights (base, the LTM alone, the place memory alone and with w > 1, CoME with the LTM at several
weights) and prints each one's mean PSNR difference from the base model on the same windows.

    python benchmarks/maze_come_weights.py --data D --episodes 10 --frames 32 [--ckpt RUN]
"""

import argparse
import json
import time

import numpy as np

from come.checkpoint import load_model
from come.data.episodes import episode_files
from come.demo import SHIPPED_MAZE
from come.metrics.image import window_psnr
from come.protocols.maze import load_maze_episode, window_batch, window_starts
from come.runtime import use_bf16
from come.world import ExpertWeights, WorldModel

SETTINGS = [("base", "base", 1.0, 1.0), ("ltm", "ltm", 1.0, 1.0), ("place", "place", 1.0, 1.0),
            ("place w=1.5", "place", 1.0, 1.5), ("place w=2", "place", 1.0, 2.0),
            ("come, ltm w=1", "come", 1.0, 1.0), ("come, ltm w=0.5", "come", 0.5, 1.0),
            ("come, ltm w=0.25", "come", 0.25, 1.0)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ckpt", default=str(SHIPPED_MAZE))
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--windows", type=int, default=1, help="revisit windows per episode")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    base, cfg = load_model(args.ckpt)
    eps = [load_maze_episode(f, cfg) for f in episode_files(args.data, "test")[: args.episodes]]
    _, starts = window_starts(eps, 200, args.frames, 100, args.windows, 0)
    batch = window_batch(eps, starts, 200, args.frames)
    world = WorldModel(base, cfg, place=(base, cfg), steps=10, bf16=use_bf16("auto", "cpu"),
                       come_experts=("ltm", "place"))
    world.observe(batch["frames"], batch["action"], batch["pose"])
    t0 = time.time()
    world.memorize("maze")
    print(f"{len(starts)} windows, memorized in {time.time() - t0:.0f} s")
    psnr = {}
    for name, variant, w_ltm, w_place in SETTINGS:
        world.weights = ExpertWeights(ltm=w_ltm, place=w_place)
        pred = world.imagine(batch["future_action"], batch["future_pose"], variant=variant)
        psnr[name] = [window_psnr(p, t) for p, t in zip(pred, batch["truth"])]
        diff = np.subtract(psnr[name], psnr["base"])
        print(f"| {name} | {np.mean(psnr[name]):.2f} | {diff.mean():+.2f} | {(diff > 0).sum()} of {len(diff)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"starts": starts, "per_window_psnr": psnr}, f, indent=2)


if __name__ == "__main__":
    main()
