"""Held-out rollouts: a model against copy-the-last-frame, on random windows of test episodes.

For each of ``episodes`` held-out episodes, a seeded random window gives the
model ``context`` frames and it rolls ``frames`` frames out under the episode's
actions. Reported per variant: PSNR (of the window's mean squared error) and
SSIM (and LPIPS where its network can run), means with 95% confidence intervals over episodes; on Memory
Cards also the share of frames whose cursor
lands on the right card and of cards rendered right (per-card MSE below
``CARD_TAU``) among cards that changed, and counts of flips drawn right by kind
(covering, which the action fully determines; uncovering; uncovering an object
visible in the context frames).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import load_model
from ..data.clips import tensor_to_frames
from ..data.episodes import episode_files
from ..metrics.cards import card_mse, cursor_cell
from ..metrics.image import ssim, window_psnr
from ..metrics.intervals import interval_text, mean_ci95
from ..metrics.perceptual import lpips
from ..runtime import use_bf16
from ..sample import episode_tensors, rollout_window
from ..video import side_by_side, write_video

CARD_TAU = 0.01  # per-card MSE under which a card counts as right (a wrong object's card is >= 0.06 at 32x32)


def score_cards(pred: torch.Tensor, r: dict, covered, start: int, context: int, frames: int, row: dict,
                flips: dict) -> None:
    """Memory Cards diagnostics of one rollout into ``row`` and ``flips``: the cursor on the right card, the
    cards that changed drawn right, and (with the episode's ``covered`` track) right per kind of flip."""
    row["cursor"].append(float((cursor_cell(pred) == cursor_cell(r["truth"])).all(-1).float().mean()))
    before = torch.cat([r["copy_last"][:1], r["truth"][:-1]])
    flipped = card_mse(before, r["truth"]) > CARD_TAU  # cards that changed since the previous frame
    right = card_mse(pred, r["truth"]) < CARD_TAU
    if flipped.any():
        row["flips"].append(float(right[flipped].float().mean()))
    if covered is not None:
        for kind, mask in flip_masks(covered, start, context, frames).items():
            flips[kind][0] += int(right[mask].sum())
            flips[kind][1] += int(mask.sum())


def evaluate_rollouts(
    ckpt: str | Path,
    data: str | Path,
    episodes: int = 20,
    frames: int = 5,
    seed: int = 0,
    steps: int = 20,
    precision: str = "auto",
    out: str | Path | None = None,
    videos: int = 4,
    progress: bool = True,
    device: torch.device | str = "cpu",
    perceptual=None,
) -> dict:
    """Run the protocol on ``device``; returns a JSON-ready dict and writes videos (truth | model | copy-last)
    to ``out``. ``perceptual``: an LPIPS network (:func:`~come.metrics.perceptual.lpips_network`) adds LPIPS."""
    model, cfg = load_model(ckpt, device)
    bf16 = use_bf16(precision, device)
    files = episode_files(data, "test")[:episodes]
    rng = np.random.default_rng(seed)
    rows = {"model": {"psnr": [], "ssim": [], "cursor": [], "flips": []},
            "copy_last": {"psnr": [], "ssim": [], "cursor": [], "flips": []}}
    cards = cfg.dataset == "cards"
    flips = {name: {kind: [0, 0] for kind in FLIP_KINDS} for name in rows}
    t0 = time.time()
    for i, path in enumerate(tqdm(files, desc="rollouts", unit="ep", disable=not progress)):
        ep = episode_tensors(path, cfg)
        covered = ep.get("covered") if cards else None
        start = int(rng.integers(0, len(ep["frames"]) - cfg.context - frames + 1))
        r = rollout_window(model, cfg, ep, start, cfg.context, frames, steps, None, bf16, seed + i)
        for name, pred in (("model", r["pred"]), ("copy_last", r["copy_last"])):
            rows[name]["psnr"].append(window_psnr(pred, r["truth"]))
            rows[name]["ssim"].append(float(ssim(pred, r["truth"]).mean()))
            if perceptual is not None:
                rows[name].setdefault("lpips", []).append(float(lpips(pred, r["truth"], perceptual).mean()))
            if cards:
                score_cards(pred, r, covered, start, cfg.context, frames, rows[name], flips[name])
        if out is not None and i < videos:
            panels = [tensor_to_frames(r[k]) for k in ("truth", "pred", "copy_last")]
            write_video(Path(out) / f"rollout_{i:02d}.mp4", side_by_side(panels), fps=2)
    result = {
        "checkpoint": str(ckpt),
        "data": str(data),
        "episodes": len(files),
        "frames": frames,
        "context": cfg.context,
        "seed": seed,
        "ddim_steps": steps,
        "bf16": bf16,
        "seconds_per_episode": (time.time() - t0) / len(files),
    }
    result["variants"] = {name: summarize(r, flips[name]) for name, r in rows.items()}
    return result


def summarize(row: dict, flips: dict) -> dict:
    """One variant's scores over episodes: means with 95% intervals, and the card flips drawn right by kind."""
    entry = {"psnr": mean_ci95(row["psnr"]), "ssim": mean_ci95(row["ssim"])}
    for key, name in (("lpips", "lpips"), ("cursor", "cursor_accuracy"), ("flips", "changed_cards_right")):
        if row.get(key):
            entry[name] = mean_ci95(row[key])
    if any(n for _, n in flips.values()):
        entry["flips"] = {k: {"right": a, "total": n} for k, (a, n) in flips.items()}
    return entry


FLIP_KINDS = ("covering", "uncovering", "uncovering_seen")


def flip_masks(covered, start: int, context: int, frames: int) -> dict[str, torch.Tensor]:
    """Cards that flip into each target frame (frames, 4, 4), by kind: covering (fully determined by the
    action), uncovering, and uncovering an object that is face up somewhere in the context frames."""
    covered = torch.as_tensor(np.asarray(covered, bool))
    cov = covered[start + context - 1 : start + context + frames]
    prev, now = cov[:-1], cov[1:]
    seen = (~covered[start : start + context]).any(0)
    uncovering = prev & ~now
    return {"covering": ~prev & now, "uncovering": uncovering, "uncovering_seen": uncovering & seen}


def format_table(result: dict) -> str:
    """Markdown table of a result from :func:`evaluate_rollouts`."""
    heads = {"psnr": "PSNR (dB)", "ssim": "SSIM", "cursor_accuracy": "cursor on right card",
             "changed_cards_right": "changed cards right", "lpips": "LPIPS"}
    cols = [c for c in heads if any(c in entry for entry in result["variants"].values())]  # cards' only on cards
    heads = [heads[c] for c in cols]
    lines = ["| variant | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, entry in result["variants"].items():
        cells = []
        for c in cols:
            if c in entry:
                digits = 2 if c == "psnr" else 3
                cells.append(f"{entry[c]['mean']:.{digits}f} {interval_text(entry[c], digits)}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, entry in result["variants"].items():
        if "flips" in entry:
            parts = [f"{k} {v['right']}/{v['total']}" for k, v in entry["flips"].items()]
            lines.append(f"\n{name} flips right: " + ", ".join(parts))
    return "\n".join(lines)
