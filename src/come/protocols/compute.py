"""The compute table (the paper's Table 9): what memory costs, relative to the base model.

For one episode, each LoRA rank gets a fresh world that observes the history, memorizes it and imagines the
future under every variant (:meth:`~come.world.WorldModel.predict`), side by side in one run on one device:
seconds to memorize and seconds per variant, each also as a multiple of the base model's rollout of the same
frames in the same world. An untimed base rollout first pays the one-time costs (threads, allocator).
"""

from __future__ import annotations

import torch
from tqdm import tqdm


def compute_table(make_world, episode: dict[str, torch.Tensor], variants: tuple[str, ...], ranks: tuple[int, ...],
                  memorization_steps: int, seed: int = 0, progress: bool = True) -> dict:
    """Seconds to memorize ``episode`` (its ``history``, ``history_action``, ``history_pose``) and to imagine its
    future (``action``, ``pose``) per variant, for each LoRA rank; ``make_world(rank=r)`` builds a world."""
    history = [episode[k][None] if episode.get(k) is not None else None
               for k in ("history", "history_action", "history_pose", "action", "pose")]
    frames = len(episode["action"])
    names = ("base", *[v for v in variants if v != "base"])
    rows = []
    for rank in tqdm(ranks, desc="LoRA ranks", disable=not progress):
        world = make_world(rank=rank)
        world.predict(*history, ("base",), seed)  # untimed warm-up
        _, spent = world.predict(*history, names, seed, steps=memorization_steps)
        base = spent["base"]
        row = {"rank": rank, "variants": {v: {"seconds": spent[v], "seconds_per_frame": spent[v] / frames,
                                              "x_base": spent[v] / base} for v in names}}
        if "memorize" in spent:
            seconds = spent["memorize"]
            row["memorize"] = {"seconds": seconds, "seconds_per_step": seconds / max(1, memorization_steps),
                               "x_base": seconds / base}
        rows.append(row)
    return {"frames": frames, "history": len(episode["history"]), "memorization_steps": memorization_steps,
            "variants": list(names), "rows": rows}


def format_compute_table(result: dict) -> str:
    """The table as markdown: one row per LoRA rank, memorization then each variant, seconds and x base."""
    names = result["variants"]
    head = ["LoRA rank", f"memorize ({result['memorization_steps']} steps)"] + names
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        mem = row.get("memorize")
        cells = [str(row["rank"]), f"{mem['seconds']:.2f} s ({mem['x_base']:.1f}x)" if mem else "-"]
        cells += [f"{row['variants'][v]['seconds']:.2f} s ({row['variants'][v]['x_base']:.1f}x)" for v in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
