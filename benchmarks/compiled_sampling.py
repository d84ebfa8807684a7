"""Sampling with and without torch.compile, side by side in one run: seconds per rollout, the compile's own
seconds, and how far the compiled frames are from the plain ones.

    python benchmarks/compiled_sampling.py --data maze_dev --windows 10 --frames 16 --json compiled.json

Memory Maze revisit windows of the data's eval split (as ``come eval maze`` takes them), all in one batch and one
at a time, rolled out with the shipped ``maze-place`` under each ``--variants`` (the base model; the place
memory: two passes a step), by a plain world and by one with ``compile=True``; each timing is the median of
``--repeats`` after the first call, which compiles.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from come.checkpoint import load_model
from come.data.episodes import episode_files
from come.outputs import save_json
from come.protocols.maze import load_maze_episode, revisit_starts, window_batch
from come.runtime import describe_device, median_seconds, use_bf16
from come.world import WorldModel


def timings(world: WorldModel, batch: dict, variant: str, repeats: int) -> dict:
    """First call (compiling, for a compiled world), then the median of ``repeats`` calls; and the frames."""
    world.observe(batch["frames"], batch["action"], batch["pose"])

    def run():
        return world.imagine(batch["future_action"], batch["future_pose"], variant=variant, seed=0)

    t0 = time.perf_counter()
    frames = run()
    first = time.perf_counter() - t0
    return {"first_s": first, "median_s": median_seconds(run, repeats)}, frames


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--variants", default="base,place")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    _, cfg = load_model("maze-place")
    files = episode_files(args.data, "test")
    eps = [load_maze_episode(f, cfg) for f in files]
    starts = sorted(revisit_starts(eps, args.history, args.frames, 100, 2, np.random.default_rng(0)))[: args.windows]
    whole = window_batch(eps, starts, args.history, args.frames)
    batches = {f"{len(starts)} windows in one batch": whole,
               "one window": {k: v[:1] for k, v in whole.items()}}
    bf16 = use_bf16(args.precision, "cpu")
    out = {"device": describe_device(torch.device("cpu")), "bf16": bf16, "frames": args.frames, "rows": []}
    worlds = {c: WorldModel.from_pretrained("maze-place", place="maze-place", steps=10, bf16=bf16, compile=c)
              for c in (False, True)}
    print("| batch | variant | plain s | compiled s (first call, compiling) | speed-up | max abs difference |")
    print("|---|---|---|---|---|---|")
    for label, batch in batches.items():
        for variant in args.variants.split(","):
            plain, a = timings(worlds[False], batch, variant, args.repeats)
            fast, b = timings(worlds[True], batch, variant, args.repeats)
            row = {"batch": label, "variant": variant, "plain": plain, "compiled": fast,
                   "speedup": plain["median_s"] / fast["median_s"], "max_abs_diff": float((a - b).abs().max())}
            out["rows"].append(row)
            print(f"| {label} | {variant} | {plain['median_s']:.2f} | {fast['median_s']:.2f} ({fast['first_s']:.1f}) "
                  f"| {row['speedup']:.2f}x | {row['max_abs_diff']:.1e} |", flush=True)
    if args.json:
        save_json(args.json, out)


if __name__ == "__main__":
    main()
