"""Time of a memorization step against the windows it holds: would memorizing several episodes in one step pay?

    python benchmarks/memorization_windows.py --windows 32,64,128,256,512 --json windows.json

Memorizes the first recall episode of ``--seed`` with the shipped model's ``cards`` recipe, changing only the
windows a step; each timing is the median of ``--repeats`` memorizations of ``--steps`` steps (after one
untimed), less one memorization of zero steps (the window scoring every memorization does once). Episodes
memorized together in one step would cost what one step of their windows together costs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from come.protocols.recall import recall_episode
from come.recipes import RECIPES
from come.runtime import median_seconds, use_bf16
from come.world import WorldModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    ap.add_argument("--seed", type=int, default=801)
    ap.add_argument("--windows", default="32,64,128,256,512", help="comma-separated windows a step")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    world = WorldModel.from_pretrained(args.ckpt, bf16=use_bf16(args.precision, "cpu"))
    episode = recall_episode(args.seed, 0, world.cfg)
    world.observe(episode["history"][None], episode["history_action"][None], episode["history_pose"][None])

    def memorize(steps: int, windows: int) -> float:
        recipe = replace(RECIPES["cards"], steps=steps, batch_size=windows)
        return median_seconds(lambda: world.memorize(recipe, experts={"ltm"}), args.repeats, 1)

    scoring = memorize(0, 1)
    rows = []
    for windows in (int(w) for w in args.windows.split(",")):
        step = (memorize(args.steps, windows) - scoring) / args.steps
        rows.append({"windows": windows, "step_ms": 1000 * step, "ms_per_window": 1000 * step / windows})
        print(f"{windows:>4} windows: {rows[-1]['step_ms']:.0f} ms a step, {rows[-1]['ms_per_window']:.2f} ms a window",
              flush=True)
    result = {"seed": args.seed, "steps": args.steps, "scoring_ms": 1000 * scoring, "bf16": world.bf16, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
