"""Memory Cards recall against the sampler's number of steps, for several diffusers samplers.

    python benchmarks/samplers.py --episodes 8 --seed 4242 --samplers ddim,dpm++ --steps 3,5,10,20 --out samplers_out

Each recall episode is observed and memorized once (the ``cards`` recipe), then its recall phase is rolled out
by CoME (base + long-term memory) with every sampler at every step count: the same memory and the same
episodes for every cell of the table. Prints a markdown table of recall (Wilson 95% interval over cards),
PSNR over the recall phase and seconds per rollout; writes ``samplers.json`` and ``recall_vs_sampler_steps.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from come.diffusion.schedule import make_scheduler
from come.metrics.image import psnr
from come.protocols.recall import cards_recalled, plot_sweep, recall_episode, recall_tau, tile_recall
from come.runtime import use_bf16
from come.world import WorldModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default="cards-tiny")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--samplers", default="ddim,dpm++")
    parser.add_argument("--steps", default="3,5,10,20")
    parser.add_argument("--memorize-steps", type=int, default=20)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--out", default="samplers_out")
    args = parser.parse_args()
    samplers, steps = args.samplers.split(","), [int(s) for s in args.steps.split(",")]
    world = WorldModel.from_pretrained(args.ckpt, bf16=use_bf16(args.precision, "cpu"))
    tau = recall_tau(world.cfg.model["resolution"])
    levels = world.scheduler.config.num_train_timesteps
    recalled = {(s, k): [] for s in samplers for k in steps}
    scores, seconds = {key: [] for key in recalled}, {key: 0.0 for key in recalled}
    for i in tqdm(range(args.episodes), desc="episodes"):
        ep = recall_episode(args.seed, i, world.cfg)
        world.observe(ep["history"][None], ep["history_action"][None], ep["history_pose"][None])
        world.memorize(recipe="cards", steps=args.memorize_steps, seed=args.seed + i)
        for key in recalled:
            world.scheduler, world.steps = make_scheduler(levels, key[0]), key[1]
            t0 = time.perf_counter()
            pred = world.imagine(ep["action"][None], ep["pose"][None], variant="come", seed=args.seed + i)[0]
            seconds[key] += time.perf_counter() - t0
            recalled[key].append(float(tile_recall(pred[-1], ep["truth"][-1], tau)))
            scores[key].append(float(psnr(pred, ep["truth"]).mean()))
    rows = {f"{s} {k}": {"sampler": s, "steps": k, **cards_recalled(recalled[s, k]),
                         "psnr": float(np.mean(scores[s, k])), "seconds_per_rollout": seconds[s, k] / args.episodes}
            for s, k in recalled}
    print("| sampler | steps | recall [95% CI] (cards) | PSNR, recall phase (dB) | s per rollout |")
    print("|---|---|---|---|---|")
    for r in rows.values():
        lo, hi = r["ci95"]
        print(f"| {r['sampler']} | {r['steps']} | {r['mean']:.3f} [{lo:.3f}, {hi:.3f}] ({r['n']}) | {r['psnr']:.2f} "
              f"| {r['seconds_per_rollout']:.2f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samplers.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    plot_sweep(steps, {s: [rows[f"{s} {k}"]["mean"] for k in steps] for s in samplers}, "sampler steps",
               out / "recall_vs_sampler_steps.png")


if __name__ == "__main__":
    main()
