"""Can a LoRA memory learn what a recall episode's observe phase revealed? (diagnostic for recall)

    python benchmarks/reveal_memory.py --ckpt src/come/assets/cards-tiny --episodes 3 --json reveal.json

For each zig-zag episode that starts face down (seed ``--seed``), a fresh LoRA memory is
fitted on the observe phase's *reveal windows* only (two context frames, then the frame where
a card is uncovered), ``--steps`` full-batch AdamW steps of the diffusion loss with a share
``--high-fraction`` of the windows noised at levels >= ``--high-min``. Then, with the true
context frames (no rollout):

* ``x0@L``: at level L the clean-frame estimate of the revealed card is closest to the right
  object (of the 8 objects and the back), base model vs memory;
* ``sample``: a DDIM sample of the frame draws the card right (per-card MSE < tau), and its
  nearest face is the right object, on the memorized reveals and on the recall phase's reveals
  (same cards, other cards face up around them, the cursor arriving from the other side).

``--targets model`` uses the network's own ``memory_targets`` (for cards-tiny: the embedding of
each image place, ``pos_space``); ``blocks`` the transformer blocks' projections; or name the
modules, e.g. ``pose_token.0,pose_token.2,fc1,fc2``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from come.checkpoint import load_model
from come.data.cards import generate_episode
from come.diffusion.loss import NoiseLevels, diffusion_loss
from come.compose import DiTDenoiser, Expert, History, composed_eps_fn
from come.diffusion.sampling import run_sampler
from come.diffusion.schedule import add_noise, alpha_bar, make_scheduler, v_to_x0
from come.memory import BASE_ADAPTER, DEFAULT_TARGETS, LoRAMemory, history_windows
from come.metrics.cards import card_mse
from come.protocols.recall import card_faces, recall_episode, recall_tau


def reveals(ep: dict, lo: int, hi: int, context: int) -> list[int]:
    """Frames in [lo, hi) where the card under the cursor turns face up."""
    cov, cur = ep["covered"], ep["cursor"]
    return [i for i in range(max(lo, context), hi) if cov[i - 1][tuple(cur[i])] and not cov[i][tuple(cur[i])]]


def windows(frames, action, pose, ends, context):
    """The windows of ``context`` frames followed by frame ``i``, for each ``i`` in ``ends``."""
    return history_windows(frames, action, pose, [i - context for i in ends], context + 1)


def scores(pred, batch, cells, objects, faces, tau):
    """(right: card MSE < tau, nearest face is the right object) shares over the revealed cards."""
    right, nearest = [], []
    for k, (r, c) in enumerate(cells):
        right.append(float(card_mse(pred[k], batch["frames"][k, -1])[r, c] < tau))
        nearest.append(int(card_mse(pred[k][None], faces)[:, r, c].argmin()) == objects[k])
    return float(np.mean(right)), float(np.mean(nearest))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--targets", default="model",
                   help="model (the network's memory_targets), blocks, or a comma-separated list of module names")
    p.add_argument("--high-fraction", type=float, default=1.0)
    p.add_argument("--high-min", type=int, default=850)
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--json", default=None)
    return p.parse_args()


def memorize_reveals(mem, train, k, cfg, sched, a, gen) -> None:
    """``a.steps`` AdamW steps of the diffusion loss on the reveal windows ``train``."""
    params = mem.parameters()
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    mem.model.train()
    for _ in range(a.steps):
        levels = NoiseLevels(a.high_fraction, a.high_min, cfg.max_loss_weight)
        loss = diffusion_loss(mem.model, train, k, sched, p_context_dropout=0.0, p_pose_dropout=0.0, generator=gen,
                              levels=levels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    mem.model.eval()


def score_phase(row, name, adapter, mem, phase, ends, ep, frames, action, pose, k, sched, a, gen, faces, tau):
    """Into ``row``: how often the network (memory ``adapter`` on or off) draws the card right at the windows
    ending at ``ends``: its clean estimate at high noise (observed phase) and a DDIM sample."""
    b = windows(frames, action, pose, ends, k)
    cells = [tuple(ep["cursor"][i]) for i in ends]
    objects = [int(ep["layout"][c]) for c in cells]

    def net(x, t, act, ps, context):
        return mem.model(x, t, act, ps, context=context, adapter_names=[adapter] * len(x))

    with torch.no_grad():
        if phase == "observed":
            for level in (900, 999):
                lv = torch.zeros(len(ends), k + 1, dtype=torch.long)
                lv[:, k] = level
                ab = alpha_bar(sched, lv)
                x_t = add_noise(b["frames"], torch.randn(b["frames"].shape, generator=gen), ab)
                x0 = v_to_x0(net(x_t, lv, b["action"], b["pose"], k), x_t, ab)[:, k]
                row[f"{name}_x0@{level}"] = scores(x0, b, cells, objects, faces, tau)[1]
        noise = torch.randn((len(ends), 1) + frames.shape[1:], generator=torch.Generator().manual_seed(0))
        prior = Expert(name, DiTDenoiser(mem.model), k, adapter=adapter)
        history = History(b["frames"][:, :k], b["action"], b["pose"])
        pred = run_sampler(composed_eps_fn(prior, [], history, sched), noise, sched, a.ddim_steps)[:, 0]
    right, nearest = scores(pred, b, cells, objects, faces, tau)
    row[f"{name}_{phase}_right"], row[f"{name}_{phase}_nearest"] = right, nearest


def episode_row(a, index, sched) -> dict:
    """Memorize the reveals of face-up episode ``index``'s observe phase and score them and the recall's."""
    ep = generate_episode(a.seed, index, "zigzag")
    base, cfg = load_model(a.ckpt)
    k, res = cfg.context, cfg.model["resolution"]
    faces, tau = card_faces(res), recall_tau(res)
    r = recall_episode(a.seed, index, cfg)
    n = len(r["history"])
    frames = torch.cat([r["history"], r["truth"]])
    action = torch.cat([r["history_action"], r["action"]])
    pose = torch.cat([r["history_pose"], r["pose"]])
    seen, recalled = reveals(ep, 0, n, k), reveals(ep, n, len(frames), k)
    targets = {"model": None, "blocks": DEFAULT_TARGETS}.get(a.targets, a.targets.split(","))
    mem = LoRAMemory(base, rank=a.rank, targets=targets)
    gen = torch.Generator().manual_seed(0)
    memorize_reveals(mem, windows(frames, action, pose, seen, k), k, cfg, sched, a, gen)
    row = {"episode": index, "reveals": len(seen)}
    for name, adapter in (("base", BASE_ADAPTER), ("memory", mem.adapter)):
        for phase, ends in (("observed", seen), ("recall", recalled)):
            score_phase(row, name, adapter, mem, phase, ends, ep, frames, action, pose, k, sched, a, gen, faces, tau)
    return row


def main():
    a = parse_args()
    sched = make_scheduler()
    rows, t0, index = [], time.time(), 0
    while len(rows) < a.episodes:
        if generate_episode(a.seed, index, "zigzag")["start_covered"]:
            rows.append(episode_row(a, index, sched))
            print(json.dumps({key: round(v, 3) if isinstance(v, float) else v for key, v in rows[-1].items()}),
                  flush=True)
        index += 1
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "episode"}
    print("mean", json.dumps({key: round(v, 3) for key, v in mean.items()}))
    print(f"{time.time() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "episodes": rows, "mean": mean}, f, indent=2)


if __name__ == "__main__":
    main()
