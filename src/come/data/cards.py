"""Memory Cards: the paper's discrete-recall environment, generated here.

A 4x4 grid of cards holds 8 objects, each twice, shuffled per episode. A covered
card shows one uniform back; a white frame (the cursor) marks the player's card.
Actions (one-hot, 5): up, down, left, right (p=0.15 each) and toggle (p=0.4),
which covers/uncovers the card under the cursor. ``action[t]`` is the action
that produced frame ``t`` from frame ``t-1``; ``action[0]`` is all zeros.

Splits: ``train`` and ``test`` are random walks; ``zigzag`` is the recall
structure: the cursor walks the grid row by row in boustrophedon order,
revealing every object once (phase 0, "observe"), then walks back and uncovers
every card (phase 1, "recall").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..metrics.cards import GRID  # the 4x4 grid of cards, which the per-card metrics read off frames too
from .episodes import prepare_dataset_folder, save_episode, write_meta

N_OBJECTS = 8
ACTIONS = ("up", "down", "left", "right", "toggle")
ACTION_PROBS = (0.15, 0.15, 0.15, 0.15, 0.4)
_MOVES = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
TOGGLE = 4
INVERSE_ACTIONS = (1, 0, 3, 2, TOGGLE)  # the action that undoes each one: up/down, left/right; a toggle undoes itself
SPLITS = ("train", "test", "zigzag")
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}
GENERATOR_VERSION = 1

OBJECT_COLOURS = np.array(
    [
        (230, 40, 40),  # square, red
        (40, 200, 60),  # disc, green
        (60, 90, 255),  # triangle, blue
        (245, 225, 40),  # plus, yellow
        (225, 50, 225),  # X, magenta
        (40, 225, 225),  # ring, cyan
        (255, 140, 20),  # stripes, orange
        (255, 150, 200),  # diamond, pink
    ],
    dtype=np.uint8,
)
OBJECT_NAMES = ("square", "disc", "triangle", "plus", "cross", "ring", "stripes", "diamond")
BACK_COLOUR = np.array((110, 110, 110), np.uint8)
FACE_COLOUR = np.array((0, 0, 0), np.uint8)
CURSOR_COLOUR = np.array((255, 255, 255), np.uint8)


def _shape_mask(obj: int, n: int) -> np.ndarray:
    """Boolean (n,n) mask of object ``obj`` drawn in an n-pixel square."""
    c = (np.arange(n) + 0.5) / n * 2 - 1  # pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # v: down, u: right
    r = np.sqrt(u**2 + v**2)
    masks = [
        np.ones_like(u, bool),  # square
        r <= 0.95,  # disc
        (v >= -0.9) & (np.abs(u) <= (v + 1.0) / 2),  # triangle, apex up
        (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34),  # plus
        (np.abs(u - v) <= 0.45) | (np.abs(u + v) <= 0.45),  # X
        (r >= 0.45) & (r <= 1.0),  # ring
        (np.floor((v + 1) * 2).astype(int) % 2 == 0),  # horizontal stripes
        (np.abs(u) + np.abs(v)) <= 1.0,  # diamond
    ]
    return masks[obj]


def card_tiles(resolution: int) -> np.ndarray:
    """Tiles (N_OBJECTS + 1, s, s, 3) uint8: each object's face, then the back (last)."""
    if resolution % GRID or resolution < 16:
        raise InputError(f"resolution must be a multiple of {GRID} and at least 16, got {resolution}")
    s = resolution // GRID
    b = cursor_width(resolution)
    tiles = np.empty((N_OBJECTS + 1, s, s, 3), np.uint8)
    tiles[:] = FACE_COLOUR
    inner = s - 2 * b
    for k in range(N_OBJECTS):
        m = _shape_mask(k, inner)
        tiles[k, b : s - b, b : s - b][m] = OBJECT_COLOURS[k]
    tiles[N_OBJECTS] = FACE_COLOUR
    tiles[N_OBJECTS, b : s - b, b : s - b] = BACK_COLOUR
    return tiles


def cursor_width(resolution: int) -> int:
    """Width in pixels of the cursor frame (and of the card margin it is drawn on)."""
    return max(1, resolution // GRID // 8)


def render(layout: np.ndarray, covered: np.ndarray, cursor: np.ndarray, resolution: int = 32) -> np.ndarray:
    """Render frames (T,H,W,3) uint8 from ``layout`` (4,4), ``covered`` (T,4,4) and ``cursor`` (T,2)."""
    tiles = card_tiles(resolution)
    s, b = resolution // GRID, cursor_width(resolution)
    ids = np.where(covered, N_OBJECTS, layout[None])  # (T,4,4)
    frames = tiles[ids]  # (T,4,4,s,s,3)
    ring = np.zeros((s, s), bool)
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    t = np.arange(len(cursor))
    under = frames[t, cursor[:, 0], cursor[:, 1]]
    frames[t, cursor[:, 0], cursor[:, 1]] = np.where(ring[..., None], CURSOR_COLOUR, under)
    return frames.transpose(0, 1, 3, 2, 4, 5).reshape(len(cursor), resolution, resolution, 3)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def _random_layout(rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(N_OBJECTS), 2)).reshape(GRID, GRID)


def simulate(layout: np.ndarray, covered0: np.ndarray, cursor0: tuple[int, int], actions: np.ndarray):
    """Run action ids (T-1,) from a start state; returns ``covered`` (T,4,4), ``cursor`` (T,2)."""
    T = len(actions) + 1
    covered = np.empty((T, GRID, GRID), bool)
    cursor = np.empty((T, 2), np.int64)
    covered[0], cursor[0] = covered0, cursor0
    for t, a in enumerate(actions, start=1):
        covered[t], cursor[t] = covered[t - 1], cursor[t - 1]
        if a == TOGGLE:
            r, c = cursor[t]
            covered[t, r, c] = not covered[t, r, c]
        else:
            dr, dc = _MOVES[int(a)]
            cursor[t] = np.clip(cursor[t] + (dr, dc), 0, GRID - 1)
    return covered, cursor


def boustrophedon(reverse: bool = False) -> list[tuple[int, int]]:
    """Row-by-row snake order over the grid, from (0,0); ``reverse`` walks it backwards."""
    order = [(r, c if r % 2 == 0 else GRID - 1 - c) for r in range(GRID) for c in range(GRID)]
    return order[::-1] if reverse else order


def _step_towards(a: tuple[int, int], b: tuple[int, int]) -> int:
    if b[0] != a[0]:
        return 1 if b[0] > a[0] else 0
    return 3 if b[1] > a[1] else 2


def zigzag_actions(start_covered: bool) -> tuple[np.ndarray, np.ndarray]:
    """Action ids (T-1,) and phase per frame (T,) of a zig-zag recall episode.

    Observe (phase 0): along the snake, each card is uncovered then covered again
    (start covered), or covered (start uncovered); every object is seen once and
    everything ends covered. Recall (phase 1): the snake backwards, uncovering
    every card, so the episode ends with all cards face up.
    """
    actions, phase = [], [0]
    for pass_, order in enumerate((boustrophedon(), boustrophedon(reverse=True))):
        toggles = 2 if (pass_ == 0 and start_covered) else 1
        for i, cell in enumerate(order):
            actions += [TOGGLE] * toggles
            if i + 1 < len(order):
                actions.append(_step_towards(cell, order[i + 1]))
        phase += [pass_] * (len(actions) - len(phase) + 1)
    return np.array(actions, np.int64), np.array(phase, np.int64)


def generate_episode(seed: int, index: int, split: str = "train", length: int = 250, resolution: int = 32) -> dict:
    """One episode as a dict of arrays; deterministic in (seed, split, index)."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    rng = _rng(seed, split, index)
    layout = _random_layout(rng)
    extra = {}
    if split == "zigzag":
        start_covered = bool(rng.random() < 0.5)
        action_ids, phase = zigzag_actions(start_covered)
        covered0 = np.full((GRID, GRID), start_covered)
        cursor0 = (0, 0)
        extra = {"phase": phase, "start_covered": np.array(start_covered)}
    else:
        if length < 2:
            raise InputError(f"length must be at least 2, got {length}")
        action_ids = rng.choice(len(ACTIONS), size=length - 1, p=ACTION_PROBS)
        covered0 = rng.random((GRID, GRID)) < 0.5
        cursor0 = tuple(int(x) for x in rng.integers(0, GRID, size=2))
    covered, cursor = simulate(layout, covered0, cursor0, action_ids)
    action = np.zeros((len(cursor), len(ACTIONS)), np.float32)
    action[np.arange(1, len(cursor)), action_ids] = 1.0
    return {
        "image": render(layout, covered, cursor, resolution),
        "action": action,
        "cursor": cursor,
        "covered": covered,
        "layout": layout.astype(np.int64),
        **extra,
    }


def generate_dataset(
    out: str | Path,
    episodes: int,
    seed: int = 0,
    split: str = "train",
    length: int = 250,
    resolution: int = 32,
    progress: bool = True,
) -> Path:
    """Write ``episodes`` episodes to ``out/<split>/`` plus its ``meta.json``; returns that folder."""
    if episodes < 1:
        raise InputError(f"episodes must be at least 1, got {episodes}")
    card_tiles(resolution)  # validates the resolution before anything is written
    folder = Path(out) / split
    settings = {"generator": "come.data.cards", "version": GENERATOR_VERSION, "seed": seed, "split": split,
                "resolution": resolution, "length": None if split == "zigzag" else length}
    prepare_dataset_folder(folder, settings, episodes)
    frames = 0
    for i in tqdm(range(episodes), desc=f"cards/{split}", unit="ep", disable=not progress):
        ep = generate_episode(seed, i, split, length, resolution)
        frames += len(ep["image"])
        save_episode(folder / f"ep_{i:05d}.npz", ep)
    write_meta(folder, {**settings, "episodes": episodes, "frames": frames, "actions": list(ACTIONS),
                        "objects": list(OBJECT_NAMES), "complete": True})
    return folder
