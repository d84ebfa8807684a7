"""Does a Memory Cards model use its actions? Probes on the first toggle of held-out episodes.

    python benchmarks/action_probe.py --ckpt src/come/assets/cards-tiny --data heldout --episodes 50

For the first toggle of each episode (2 context frames, then the toggle frame):

1. the clean-frame estimate of the toggle frame at fixed noise levels, with the true
   actions and with the toggle frame's action zeroed: per-card MSE of the toggled card
   to the truth and to its look before the toggle. If both actions give the same
   numbers, the model ignores its actions.
2. one-step rollouts (the toggle frame generated with ``--steps`` DDIM steps): the
   toggled card's MSE to the truth and to its previous look, by kind (covering /
   uncovering), and how many are right (per-card MSE under the rollouts' threshold).
"""

from __future__ import annotations

import argparse
import json

import torch

from come.checkpoint import load_model
from come.data.cards import TOGGLE
from come.data.clips import cursor_pose, frames_to_tensor
from come.data.episodes import episode_files, load_episode
from come.sample import rollout
from come.diffusion.schedule import add_noise, alpha_bar, make_scheduler, v_to_x0
from come.metrics.cards import card_mse
from come.protocols.rollouts import CARD_TAU


def first_toggles(data: str, episodes: int):
    """(frames (N,3,C,H,W), actions (N,3,A), poses (N,3,P), toggled cells (N,2), covering (N,) bool)."""
    xs, acts, poses, cells, covering = [], [], [], [], []
    for path in episode_files(data, "test")[:episodes]:
        ep = load_episode(path)
        for t in range(2, len(ep["image"])):
            if ep["action"][t, TOGGLE] == 1:
                sl = slice(t - 2, t + 1)
                xs.append(frames_to_tensor(ep["image"][sl]))
                acts.append(torch.from_numpy(ep["action"][sl]))
                poses.append(torch.from_numpy(cursor_pose(ep)[sl]))
                r, c = (int(v) for v in ep["cursor"][t])
                cells.append((r, c))
                covering.append(bool(ep["covered"][t, r, c]))
                break
    return torch.stack(xs), torch.stack(acts), torch.stack(poses), cells, torch.tensor(covering)


def at_cells(mse: torch.Tensor, cells) -> torch.Tensor:
    return torch.stack([mse[i, r, c] for i, (r, c) in enumerate(cells)])


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    p.add_argument("--data", required=True, help="Memory Cards dataset folder (its test/ split) or episode folder")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps of the one-step rollouts")
    p.add_argument("--levels", default="100,300,500,800,999")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    model, _ = load_model(a.ckpt)
    model.eval()
    sch = make_scheduler(model.config.num_train_timesteps)
    x, act, pose, cells, covering = first_toggles(a.data, a.episodes)
    no_action = act.clone()
    no_action[:, 2] = 0
    gen = torch.Generator().manual_seed(0)
    out = {"episodes": len(x), "levels": {}, "rollout": {}}
    print(f"{len(x)} toggles; per-card MSE of the toggled card (pixels in [0,1])")
    print(
        f"{'level':>5} {'true action: to truth':>22} {'to previous':>12} "
        f"{'zeroed action: to truth':>24} {'to previous':>12}")
    for level in (int(v) for v in a.levels.split(",")):
        t = torch.tensor([[0, 0, level]] * len(x))
        ab = alpha_bar(sch, t)
        noisy = x.clone()
        noisy[:, 2:] = add_noise(x[:, 2:], torch.randn(x[:, 2:].shape, generator=gen), ab[:, 2:])
        row = {}
        for name, actions in (("true", act), ("zeroed", no_action)):
            v = model(noisy, t, actions, pose, context=2)[:, 2:]
            x0 = v_to_x0(v, noisy[:, 2:], ab[:, 2:])[:, 0]
            row[name] = {"to_truth": float(at_cells(card_mse(x0, x[:, 2]), cells).mean()),
                         "to_previous": float(at_cells(card_mse(x0, x[:, 1]), cells).mean())}
        out["levels"][level] = row
        print(f"{level:>5} {row['true']['to_truth']:>22.3f} {row['true']['to_previous']:>12.3f} "
              f"{row['zeroed']['to_truth']:>24.3f} {row['zeroed']['to_previous']:>12.3f}")
    pred = rollout(model, sch, x, act, pose, context=2, n_frames=1, chunk=1, steps=a.steps,
                   generator=torch.Generator().manual_seed(0))[:, 0]
    to_truth, to_prev = at_cells(card_mse(pred, x[:, 2]), cells), at_cells(card_mse(pred, x[:, 1]), cells)
    for kind, mask in (("covering", covering), ("uncovering", ~covering)):
        r = {"n": int(mask.sum()), "to_truth": float(to_truth[mask].mean()), "to_previous": float(to_prev[mask].mean()),
             "right": int((to_truth[mask] < CARD_TAU).sum())}
        out["rollout"][kind] = r
        print(f"one-step rollout, {kind}: right {r['right']}/{r['n']}, toggled card MSE to truth {r['to_truth']:.4f}, "
              f"to previous {r['to_previous']:.4f} ({a.steps} DDIM steps)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
