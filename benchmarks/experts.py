"""Cost of composing experts: sampling time per variant against its network evaluations.

    python benchmarks/experts.py --ckpt src/come/assets/cards-tiny --json experts.json

For each variant of ``come.world.WorldModel`` it times ``imagine`` on the same
history and actions (side by side, one process, median of ``--repeats``) and
reports time relative to ``base`` next to the number of distinct network
evaluations per denoising step (passes) and of batched forward calls. The STM
is an untrained ``cards-stm`` network: only its cost matters here. Also times one
memorization step against one training step on the same batch.
"""

from __future__ import annotations

import argparse
import json

import torch

from come.checkpoint import load_model
from come.data.cards import generate_episode
from come.data.clips import cursor_pose, frames_to_tensor
from come.diffusion.loss import diffusion_loss
from come.diffusion.schedule import make_scheduler
from come.recipes import Recipe
from come.models.dit import DiTConfig, VideoDiT
from come.presets import train_config
from come.runtime import median_seconds
from come.variants import VARIANTS
from come.world import WorldModel


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()

    base, cfg = load_model(a.ckpt)
    stm_cfg = train_config("cards-stm")
    stm = VideoDiT(DiTConfig(**stm_cfg.model)).eval()
    ep = generate_episode(0, 0, "train", a.history + a.frames)
    frames = frames_to_tensor(ep["image"])[None]
    action = torch.from_numpy(ep["action"])[None]
    pose = torch.from_numpy(cursor_pose(ep))[None]
    world = WorldModel(base, cfg, stm=(stm, stm_cfg), rank=32, steps=a.steps)
    world.observe(frames[:, : a.history], action[:, : a.history], pose[:, : a.history])
    world.memorize(steps=2, batch_size=8)
    fa, fp = action[:, a.history :], pose[:, a.history :]

    rows = {}
    for v in (v for v in VARIANTS if v != "sltm"):  # Memory Cards has no map poses for a spatial expert
        stats = {}
        world.imagine(fa, fp, variant=v, stats=stats)  # warm-up, and the pass counts
        rows[v] = {"passes": stats["passes"], "forwards": stats["forwards"],
                   "seconds": median_seconds(lambda v=v: world.imagine(fa, fp, variant=v), a.repeats)}
    for r in rows.values():
        r["time_vs_base"] = r["seconds"] / rows["base"]["seconds"]
        r["time_per_pass_vs_base"] = r["time_vs_base"] / r["passes"]

    # one memorization step vs one training step on the same batch of 8 windows
    sched = make_scheduler()
    batch = {"frames": torch.stack([frames[0, i : i + 6] for i in range(0, 80, 10)]),
             "action": torch.stack([action[0, i : i + 6] for i in range(0, 80, 10)]),
             "pose": torch.stack([pose[0, i : i + 6] for i in range(0, 80, 10)])}
    full = VideoDiT(DiTConfig(**cfg.model))
    opt = torch.optim.AdamW(full.parameters(), 1e-4)

    def train_step():
        loss = diffusion_loss(full, batch, cfg.context, sched)
        loss.backward()
        opt.step()
        opt.zero_grad()

    train_s = median_seconds(train_step, 5, 1)
    mem_s = median_seconds(lambda: world.memory.memorize(frames[0, : a.history], action[0, : a.history],
                                                  pose[0, : a.history], Recipe(steps=1, batch_size=8)), 5, 1)
    out = {"history": a.history, "frames": a.frames, "ddim_steps": a.steps, "variants": rows,
           "train_step_s": train_s, "memorize_step_s": mem_s, "memorize_over_train": mem_s / train_s}
    print(f"{'variant':<8} {'passes':>6} {'forwards':>8} {'seconds':>8} {'vs base':>8} {'per pass':>8}")
    for v, r in rows.items():
        print(f"{v:<8} {r['passes']:>6} {r['forwards']:>8} {r['seconds']:>8.2f} {r['time_vs_base']:>8.2f} "
              f"{r['time_per_pass_vs_base']:>8.2f}")
    print(f"memorization step {mem_s:.3f}s vs training step {train_s:.3f}s ({mem_s / train_s:.2f}x), batch 8")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
