"""Memory Cards recall: after watching every card once, draw which object lies under each card.

The protocol (issue "Memory Cards recall"), on ``zigzag`` episodes:

1. *Observe* (phase 0): the cursor walks the grid row by row in boustrophedon
   order and every card is uncovered and covered again, so each object is seen
   once and everything ends face down. This is the history: the base model sees
   its last ``context`` frames, the short-term expert its window, the long-term
   expert memorizes all of it.
2. *Recall* (phase 1): the cursor walks back and uncovers every card. The model
   gets these actions (and cursor poses) and rolls the phase out.

The last predicted frame (every card face up) is scored card by card: a card is
recalled when its mean squared error to the truth (pixels in [0, 1], inside the
cursor margin) is below ``tau``, a quarter of the smallest error between two
different cards the renderer can draw (:func:`recall_tau`). Chance is measured
with a predictor that draws a random layout.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.cards import GRID, N_OBJECTS, generate_episode, render
from ..data.clips import frames_to_tensor, pose_track, tensor_to_frames
from ..recipes import RECIPES
from ..metrics.cards import card_mse
from ..metrics.intervals import interval_text, mean_ci95, proportion_ci95
from ..metrics.perceptual import lpips
from ..plotting import bar_chart, save_figure, subplots
from ..presets import TrainConfig
from ..video import side_by_side, write_video

def card_faces(resolution: int) -> torch.Tensor:
    """(N_OBJECTS + 1, 3, R, R) frames in [-1, 1]: the whole grid showing one object (then the back)."""
    cursor = np.zeros((1, 2), np.int64)
    faces = []
    for k in range(N_OBJECTS + 1):
        layout = np.full((GRID, GRID), min(k, N_OBJECTS - 1))
        covered = np.full((1, GRID, GRID), k == N_OBJECTS)
        faces.append(frames_to_tensor(render(layout, covered, cursor, resolution))[0])
    return torch.stack(faces)


def card_distances(resolution: int) -> torch.Tensor:
    """(9, 9) per-card MSE between every pair of card faces (8 objects, then the back)."""
    faces = card_faces(resolution)
    d = card_mse(faces[:, None], faces[None, :])  # (9,9,4,4); the same on every card but the cursor's
    return d[..., GRID - 1, GRID - 1]  # a card far from the cursor


def recall_tau(resolution: int) -> float:
    """A quarter of the smallest per-card MSE between two different faces (objects or the back)."""
    d = card_distances(resolution)
    off = ~torch.eye(len(d), dtype=torch.bool)
    return float(d[off].min()) / 4


def tile_recall(pred: torch.Tensor, truth: torch.Tensor, tau: float) -> torch.Tensor:
    """Share of the 16 cards drawn right (per-card MSE < ``tau``), per frame: (...,3,H,W) -> (...)."""
    return (card_mse(pred, truth) < tau).float().flatten(-2).mean(-1)


def random_layout_frame(cursor: np.ndarray, resolution: int, rng: np.random.Generator) -> torch.Tensor:
    """The chance predictor: every card face up on a random layout, the cursor where it truly is."""
    layout = rng.permutation(np.repeat(np.arange(N_OBJECTS), 2)).reshape(GRID, GRID)
    return frames_to_tensor(render(layout, np.zeros((1, GRID, GRID), bool), cursor[None], resolution))[0]


def recall_episode(seed: int, index: int, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """A zig-zag episode split for the protocol: history (phase 0) and recall (phase 1) tensors."""
    ep = generate_episode(seed, index, "zigzag", resolution=cfg.model["resolution"])
    n = int((ep["phase"] == 0).sum())
    frames = frames_to_tensor(ep["image"])
    action = torch.from_numpy(ep["action"])
    pose = pose_track(ep, cfg.pose) if cfg.pose else None
    out = {"history": frames[:n], "history_action": action[:n], "truth": frames[n:], "action": action[n:],
           "cursor": ep["cursor"], "covered": ep["covered"][n:], "start_covered": bool(ep["start_covered"])}
    if pose is not None:
        out["history_pose"], out["pose"] = pose[:n], pose[n:]
    return out


def cards_recalled(per_episode: list[float]) -> dict:
    """Recall over all scored cards (16 an episode) with its Wilson 95% interval (``n``: cards)."""
    cards = GRID * GRID
    return proportion_ci95(round(sum(per_episode) * cards), cards * len(per_episode))


def _stack(episodes: list[dict], key: str, last: int = 0) -> torch.Tensor | None:
    """The episodes' ``key`` arrays (their ``last`` frames only, if given) as one batch."""
    return torch.stack([e[key][-last:] for e in episodes]) if key in episodes[0] else None


def recall_rollouts(world, eps: list[dict], variants: tuple[str, ...], memorization_steps: int, seed: int,
                    progress: bool = False, **memorize) -> tuple[dict[str, list], dict[str, float]]:
    """Observe, memorize (the ``cards`` recipe, with the ``memorize`` changes) and roll out the recall phase
    of episodes from :func:`recall_episode`.

    Episodes of the same history length (zig-zag episodes start all covered or all face up: two lengths)
    are memorized together, one adapter per episode. The rollouts are batched over every episode, from the
    last frames of each history, as many as the shortest has, when no expert reads further back than that
    (else over each history length). Returns per variant the predicted recall phase of each episode
    (F,C,H,W), and the total seconds spent memorizing and in each variant's rollouts.
    """
    needed = world.memories_for(variants)
    memories, seconds = _memorize_by_length(world, eps, needed, seed, progress,
                                            {**memorize, "steps": memorization_steps})
    shortest, reads = min(len(e["history"]) for e in eps), world.frames_read()
    together = reads is not None and shortest >= reads
    predictions: dict[str, list] = {name: [None] * len(eps) for name in variants}
    for members in _groups(eps, lambda history: shortest if together else len(history)).values():
        group = [eps[i] for i in members]
        keep = min(len(e["history"]) for e in group)
        world.observe(*(_stack(group, key, keep) for key in ("history", "history_action", "history_pose")))
        world.set_memory_states({expert: [memories[i][expert] for i in members] for expert in needed})
        preds, spent = world.imagine_variants(_stack(group, "action"), _stack(group, "pose"), variants, seed,
                                              progress)
        for name in variants:
            seconds[name] = seconds.get(name, 0.0) + spent[name]
            for i, pred in zip(members, preds[name]):
                predictions[name][i] = pred.cpu()
    return predictions, seconds


def _memorize_by_length(world, eps: list[dict], experts: set[str], seed: int, progress: bool,
                        settings: dict) -> tuple[list[dict], dict[str, float]]:
    """Memorize the history of each episode into ``experts``, the episodes of one history length together;
    returns each episode's memories ({expert: adapter weights}) and the seconds spent memorizing."""
    memories: list[dict] = [{} for _ in eps]
    seconds = {"memorize": 0.0}
    if not experts:
        return memories, seconds
    for members in tqdm(_groups(eps, len).values(), desc="memorize", disable=not progress, leave=False):
        group = [eps[i] for i in members]
        world.observe(_stack(group, "history"), _stack(group, "history_action"), _stack(group, "history_pose"))
        t0 = time.time()
        world.memorize(recipe="cards", seed=seed, progress=progress, experts=experts, **settings)
        seconds["memorize"] += time.time() - t0
        for expert, states in world.memory_states().items():
            for i, state in zip(members, states):
                memories[i][expert] = state
    return memories, seconds


def _groups(eps: list[dict], key) -> dict:
    """Indices of the episodes by ``key(history)`` and recall-phase length: the batches."""
    groups: dict = {}
    for i, e in enumerate(eps):
        groups.setdefault((key(e["history"]), len(e["truth"])), []).append(i)
    return groups


def variant_scores(predictions: list[torch.Tensor], eps: list[dict], tau: float, perceptual=None) -> dict:
    """One variant's tile recall of the last frame per episode (mean, Wilson interval over cards) and, with an
    LPIPS network, LPIPS over each episode's recall phase (mean, t interval over episodes)."""
    per_episode = [float(tile_recall(p[-1], e["truth"][-1], tau)) for p, e in zip(predictions, eps)]
    stats = cards_recalled(per_episode)
    scores = {"recall": stats["mean"], "ci95": stats["ci95"], "cards": stats["n"], "per_episode": per_episode}
    if perceptual is not None:
        scores["lpips"] = mean_ci95([float(lpips(p, e["truth"], perceptual).mean()) for p, e in zip(predictions, eps)])
    return scores


def evaluate_recall(
    world,
    episodes: int = 50,
    seed: int = 0,
    memorization_steps: int = 20,
    variants: tuple[str, ...] = ("base", "ltm", "come", "poe", "hg"),
    out: str | Path | None = None,
    videos: int = 4,
    progress: bool = True,
    memorize: dict | None = None,
    perceptual=None,
) -> dict:
    """Run the recall protocol with a :class:`~come.world.WorldModel`; returns a JSON-ready dict.

    The rollouts are :func:`recall_rollouts`'s; ``memorize`` changes settings of the ``cards`` memorization
    recipe (``come.recipes.RECIPES``); ``perceptual``, an LPIPS network, adds LPIPS over the recall phase.
    """
    cfg = world.cfg
    tau = recall_tau(cfg.model["resolution"])
    eps = [recall_episode(seed, i, cfg) for i in range(episodes)]
    truth_last = torch.stack([e["truth"][-1] for e in eps])
    rng = np.random.default_rng(seed)
    chance = [float(tile_recall(random_layout_frame(e["cursor"][-1], cfg.model["resolution"], rng), t, tau))
              for e, t in zip(eps, truth_last)]
    predictions, seconds = recall_rollouts(world, eps, variants, memorization_steps, seed, progress,
                                           **(memorize or {}))
    seconds = {k: v / episodes for k, v in seconds.items() if k != "memorize" or v > 0}
    result_variants = {name: variant_scores(predictions[name], eps, tau, perceptual) for name in variants}
    chance_stats = cards_recalled(chance)
    shown = [n for n in ("base", "come") if n in predictions] or list(predictions)[:1]
    if out is not None:
        out = Path(out)
        for i in range(min(videos, episodes)):
            panels = [tensor_to_frames(eps[i]["truth"])] + [tensor_to_frames(predictions[n][i]) for n in shown]
            write_video(out / f"recall_{i:02d}.mp4", side_by_side(panels), fps=4)
        plot_recall(result_variants, chance_stats["mean"], out / "recall.png")
        shown_n = max(1, min(videos, episodes))
        final_frames_grid(truth_last[:shown_n], {n: torch.stack([p[-1] for p in ps[:shown_n]])
                                                 for n, ps in predictions.items()}, out / "recall_frames.png")
    return {
        "tau": tau,
        "chance": chance_stats["mean"],
        "chance_ci95": chance_stats["ci95"],
        "episodes": episodes,
        "seed": seed,
        "memorization_steps": memorization_steps,
        "memorization": RECIPES["cards"].with_overrides(**{**(memorize or {}), "steps": memorization_steps}),
        "lora_rank": world.memory.config.r,
        "ddim_steps": world.steps,
        "variants": result_variants,
        "seconds_per_episode": seconds,
        "videos": shown,
    }


def final_frames_grid(truth: torch.Tensor, predictions: dict[str, torch.Tensor], path: Path) -> Path:
    """PNG of the last recall frame: one row per episode, columns truth then each variant (titled)."""
    cols = {"truth": truth, **predictions}
    n = len(truth)
    fig, axes = subplots(n, len(cols), figsize=(1.4 * len(cols), 1.4 * n + 0.3), squeeze=False)
    for j, (name, frames) in enumerate(cols.items()):
        images = tensor_to_frames(frames)
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(images[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    return save_figure(fig, path, dpi=100)


def plot_recall(variants: dict, chance: float, path: Path) -> Path:
    """Bar chart of mean recall per variant with 95% intervals and the chance line."""
    entries = {n: {"mean": v["recall"], "ci95": v["ci95"]} for n, v in variants.items()}
    return bar_chart(entries, "tile recall", path, ylim=(0, 1), chance=chance)


def plot_sweep(xs, curves: dict[str, list[float]], xlabel: str, path: Path) -> Path:
    """Recall against a swept setting (memorization steps or LoRA rank), one line per variant."""
    fig, ax = subplots(figsize=(4.5, 3.2))
    for name, ys in curves.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tile recall")
    ax.legend()
    return save_figure(fig, path, dpi=120)


def format_recall_table(result: dict) -> str:
    """Markdown table of a result from :func:`evaluate_recall`."""
    perceptual = any("lpips" in v for v in result["variants"].values())
    lines = ["| variant | tile recall | 95% CI (Wilson, n cards) | s/episode |" + (" LPIPS |" if perceptual else ""),
             "|---|---|---|---|" + ("---|" if perceptual else "")]
    for name, v in result["variants"].items():
        ci = interval_text({"ci95": v["ci95"], "n": v["cards"]}, 3)
        lpips_cell = f" {v['lpips']['mean']:.3f} {interval_text(v['lpips'], 3)} |" if perceptual else ""
        lines.append(f"| {name} | {v['recall']:.3f} | {ci} | "
                     f"{result['seconds_per_episode'].get(name, float('nan')):.2f} |" + lpips_cell)
    lines.append(f"\ntau {result['tau']:.4f} (per-card MSE), chance {result['chance']:.3f} (random layout), "
                 f"{result['episodes']} episodes, seed {result['seed']}, {result['memorization_steps']} memorization "
                 f"steps at LoRA rank {result['lora_rank']}")
    return "\n".join(lines)


def recall_sweeps(
    make_world,
    episodes: int,
    seed: int,
    steps: tuple[int, ...] = (),
    ranks: tuple[int, ...] = (),
    memorization_steps: int = 20,
    variants: tuple[str, ...] = ("ltm", "come"),
    out: str | Path | None = None,
    progress: bool = True,
    memorize: dict | None = None,
) -> dict:
    """Recall against memorization steps (at the default rank) and against LoRA rank (at
    ``memorization_steps``); ``make_world(rank=r)`` builds a fresh :class:`~come.world.WorldModel` (``make_world()`` at
    the default rank)."""
    result = {}
    for key, values, label in (("steps", steps, "memorization steps"), ("rank", ranks, "LoRA rank")):
        if not values:
            continue
        curves = {v: [] for v in variants}
        for value in tqdm(values, desc=f"sweep {label}", disable=not progress):
            world = make_world(rank=value) if key == "rank" else make_world()
            k = value if key == "steps" else memorization_steps
            r = evaluate_recall(world, episodes, seed, k, variants, progress=False, memorize=memorize)
            for v in variants:
                curves[v].append(r["variants"][v]["recall"])
        result[key] = {"values": list(values), "recall": curves}
        if out is not None:
            plot_sweep(list(values), curves, label, Path(out) / f"recall_vs_{key}.png")
    return result
