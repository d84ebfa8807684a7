"""One-step denoising error per noise level, for one or more checkpoints side by side.

    python benchmarks/denoise_levels.py runs/a runs/b --episodes 3

Every window (context frames + 1 future frame) of ``--episodes`` held-out
Memory Cards episodes (test split of ``--seed``, ``--history`` frames) is
noised at each level with the same noise for every checkpoint; the table gives
the mean squared error of the network's clean-frame estimate (pixels in
[-1, 1]) on windows where the frame changes (cursor move or flip) and where it
does not. A world model that knows what its context and actions imply should
be near zero on both at every level below the one where the noisy frame stops
telling which object a revealed card holds.
"""

from __future__ import annotations

import argparse

import torch

from come.checkpoint import load_model
from come.data.cards import generate_episode
from come.data.clips import cursor_pose, frames_to_tensor
from come.diffusion.schedule import add_noise, alpha_bar, make_scheduler, v_to_x0
from come.memory import history_windows

LEVELS = (50, 150, 300, 450, 600, 750, 900, 990)


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--history", type=int, default=100)
    a = p.parse_args()
    scheduler = make_scheduler()
    models = [(c, *load_model(c)) for c in a.ckpts]
    contexts = {cfg.context for _, _, cfg in models}
    if len(contexts) > 1:
        p.error(f"the checkpoints see different numbers of context frames ({sorted(contexts)}); compare like with like")
    context = contexts.pop()
    sums = {(c, lv, k): 0.0 for c, *_ in models for lv in LEVELS for k in ("changed", "static")}
    counts = {"changed": 0, "static": 0}
    gen = torch.Generator().manual_seed(1)
    for i in range(a.episodes):
        ep = generate_episode(a.seed, i, "test", a.history)
        frames, action = frames_to_tensor(ep["image"]), torch.from_numpy(ep["action"])
        pose = torch.from_numpy(cursor_pose(ep))
        starts = list(range(len(frames) - context))
        batch = history_windows(frames, action, pose, starts, context + 1)
        x = batch["frames"]
        changed = (x[:, -1] - x[:, -2]).abs().flatten(1).amax(1) > 0.05
        counts["changed"] += int(changed.sum())
        counts["static"] += int((~changed).sum())
        for level in LEVELS:
            t = torch.zeros(len(starts), context + 1, dtype=torch.long)
            t[:, -1] = level
            ab = alpha_bar(scheduler, t)
            x_t = add_noise(x, torch.randn(x.shape, generator=gen), ab)
            for c, model, _ in models:
                x0 = v_to_x0(model(x_t, t, batch["action"], batch["pose"], context=context).float(), x_t, ab)
                err = (x0[:, -1] - x[:, -1]).pow(2).mean((1, 2, 3))
                sums[(c, level, "changed")] += err[changed].sum().item()
                sums[(c, level, "static")] += err[~changed].sum().item()
    print(f"clean-frame MSE per level ([-1, 1] pixels), changed / static windows "
          f"({counts['changed']} / {counts['static']} windows, {a.episodes} episodes of seed {a.seed})\n")
    print("| level | " + " | ".join(c for c, *_ in models) + " |")
    print("|---|" + "---|" * len(models))
    for level in LEVELS:
        cells = [f"{sums[(c, level, 'changed')] / max(1, counts['changed']):.5f} / "
                 f"{sums[(c, level, 'static')] / max(1, counts['static']):.5f}" for c, *_ in models]
        print(f"| {level} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
