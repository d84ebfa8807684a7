"""Where recall is won or lost: each card at the frame the rollout uncovers it, and at the end.

    python benchmarks/recall_reveals.py --seed 102 --episodes 12 --json reveals.json

Runs the recall protocol's ``ltm`` rollout (``come.protocols.recall``) on zig-zag episodes of
``--seed`` with the given memorization settings, and scores every card twice: at the frame of
the recall phase where it is first face up (was the object drawn right when uncovered?) and in
the last frame (the protocol's score). ``kept`` is the share of cards right at their reveal that
are still right at the end: below 1, the rollout drifts. Cards are also split by when the rollout
uncovers them (first or second half of the phase; the second half was seen first in the observe
phase) and by the episode's start (face down: the observe phase reveals each card; face up: it
covers each card).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from come.checkpoint import load_model
from come.metrics.cards import card_mse
from come.recipes import RECIPES
from come.protocols.recall import recall_episode, recall_rollouts, recall_tau
from come.world import ExpertWeights, WorldModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="src/come/assets/cards-tiny")
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--steps", type=int, default=50, help="memorization steps")
    recipe = RECIPES["cards"]
    ap.add_argument("--lr", type=float, default=recipe.lr)
    ap.add_argument("--batch", type=int, default=recipe.batch_size, help="windows per memorization step")
    ap.add_argument("--context-dropout", type=float, default=recipe.p_context_dropout)
    ap.add_argument("--no-undo", action="store_true", help="memorize the history alone, not followed by its undoing")
    ap.add_argument("--no-first-frames", action="store_true",
                    help="without the undoing, never make the history's first frames targets")
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    ap.add_argument("--w", type=float, default=1.5, help="contrast weight of the memory")
    ap.add_argument("--ddim-steps", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    base, cfg = load_model(args.ckpt)
    world = WorldModel(base, cfg, steps=args.ddim_steps, weights=ExpertWeights(ltm=args.w))
    tau = recall_tau(cfg.model["resolution"])
    eps = [recall_episode(args.seed, i, cfg) for i in range(args.episodes)]
    options = {"lr": args.lr, "batch_size": args.batch, "p_context_dropout": args.context_dropout,
               "first_frames": not args.no_first_frames, "lr_schedule": args.lr_schedule, "undo": not args.no_undo}
    t0 = time.time()
    predictions, _ = recall_rollouts(world, eps, ("ltm",), args.steps, args.seed, **options)
    cards = []  # (right at reveal, right at the end, second half, face-down start)
    for p, e in zip(predictions["ltm"], eps):
        covered = e["covered"]
        right = (card_mse(p, e["truth"]) < tau).numpy()  # (T,4,4)
        for r, c in zip(*np.nonzero(~covered[-1])):
            first = int(np.nonzero(~covered[:, r, c])[0][0])
            cards.append((right[first, r, c], right[-1, r, c], first >= len(covered) // 2, e["start_covered"]))
    a = np.array(cards, dtype=float)

    def share(col, rows=slice(None)):
        sel = a[rows]
        return round(float(sel[:, col].mean()), 3) if len(sel) else None

    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "right_at_reveal": share(0),
        "right_at_end": share(1),
        "kept": share(1, a[:, 0] == 1),
        "end_by_half": {"first": share(1, a[:, 2] == 0), "second": share(1, a[:, 2] == 1)},
        "end_by_start": {"face_down": share(1, a[:, 3] == 1), "face_up": share(1, a[:, 3] == 0)},
        "seconds": round(time.time() - t0),
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
