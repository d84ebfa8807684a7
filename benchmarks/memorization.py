"""How much test-time memorization lowers the diffusion loss on the history it memorized.

    python benchmarks/memorization.py --ckpt src/come/assets/cards-tiny --episodes 2 --settings 32:600:2e-3 \
        --json mem.json

For each held-out Memory Cards episode (``test`` split of a seed, ``--history``
frames) and each setting ``rank:steps:lr``, a fresh LoRA memory is memorized on
the history; the diffusion loss on every window of that history, with the same
fixed noise, is measured before (adapters off) and after (adapters on).
``--loss trained`` (default) measures and memorizes with the loss the model was
trained with (its loss-weight cap and share of high noise levels, from its
config); ``--loss plain`` with the plain v-MSE at uniform levels, which the
lowest noise levels dominate (their weight SNR+1 exceeds 1000).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from come.checkpoint import load_model
from come.data.cards import generate_episode
from come.data.clips import cursor_pose, frames_to_tensor
from come.diffusion.loss import NoiseLevels
from come.memory import LoRAMemory
from come.recipes import Recipe


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--settings", default="32:300:2e-3,32:600:2e-3", help="comma-separated rank:steps:lr")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--loss", choices=("trained", "plain"), default="trained")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--targets", default=None, help="comma-separated module names the LoRA adapts "
                   "(default: the network's memory_targets)")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    settings = [(int(r), int(s), float(lr)) for r, s, lr in (x.split(":") for x in a.settings.split(","))]
    rows = []
    for i in range(a.episodes):
        ep = generate_episode(a.seed, i, "test", a.history)
        frames, action = frames_to_tensor(ep["image"]), torch.from_numpy(ep["action"])
        pose = torch.from_numpy(cursor_pose(ep))
        for rank, steps, lr in settings:
            model, cfg = load_model(a.ckpt)
            levels = cfg.noise_levels() if a.loss == "trained" else NoiseLevels()
            mem = LoRAMemory(model, rank=rank, targets=a.targets.split(",") if a.targets else None)
            probe = dict(repeats=4, seed=10_000 + i, levels=levels)  # noise draws of their own, not memorization's
            before = mem.history_loss(frames, action, pose, cfg.context, cfg.future, **probe)
            t = time.perf_counter()
            recipe = Recipe(steps=steps, lr=lr, batch_size=a.batch_size, lr_schedule=a.lr_schedule)
            mem.memorize(frames, action, pose, recipe, cfg.context, cfg.future, levels, seed=i)
            seconds = time.perf_counter() - t
            after = mem.history_loss(frames, action, pose, cfg.context, cfg.future, adapter=mem.adapter, **probe)
            rows.append({"episode": i, "rank": rank, "steps": steps, "lr": lr, "loss_before": before,
                         "loss_after": after, "ratio": after / before, "seconds": seconds})
            r = rows[-1]
            print(f"episode {i} rank {rank:>3} steps {steps:>4} lr {lr:.0e}: loss {before:.5f} -> {after:.5f} "
                  f"(x{r['ratio']:.2f}) in {seconds:.0f}s", flush=True)
    print(f"\n{'rank':>4} {'steps':>5} {'lr':>7} {'mean after/before':>18}")
    for rank, steps, lr in settings:
        ratios = [r["ratio"] for r in rows if (r["rank"], r["steps"], r["lr"]) == (rank, steps, lr)]
        print(f"{rank:>4} {steps:>5} {lr:>7.0e} {sum(ratios) / len(ratios):>18.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"history": a.history, "seed": a.seed, "loss": a.loss, "batch_size": a.batch_size,
                       "lr_schedule": a.lr_schedule, "targets": a.targets,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
