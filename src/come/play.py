"""``come play``: play inside the world model, its memory switched on and off by key.

The game opens on a real Memory Cards board just after the recall protocol's observe phase (every card
uncovered once along the zig-zag, then covered again): those frames are the history, and the long-term
memory is memorized on them before the first key (or loaded from a saved memory). Each key is one action:
the model draws the next frame from its own frames so far, composed as CoME (memory on) or by the base
model alone (memory off). In twin mode the real board runs beside it under the same keys, so a player sees
where imagination departs from reality. A pygame window takes the keyboard (arrows, space; M switches the
memory; Esc ends), or a key file plays without one.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .data.cards import ACTIONS, generate_episode, render, simulate
from .data.clips import cursor_pose, frames_to_tensor, tensor_to_frames
from .errors import InputError
from .metrics.image import psnr
from .video import side_by_side, write_video

MEMORY_KEY = "memory"  # a key-file line that switches the memory on or off
KEY_NAMES = (*ACTIONS, MEMORY_KEY)


def read_keys(path: str | Path) -> list[str]:
    """The key names of a key file: one a line (``up``, ``down``, ``left``, ``right``, ``toggle`` or ``memory``);
    blank lines and ``#`` comments are skipped, an unknown name is refused with its line number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: key file not found")
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.split("#")[0].strip()
        if name and name not in KEY_NAMES:
            raise InputError(f"{path}:{number}: unknown key '{name}' (choose from {', '.join(KEY_NAMES)})")
        keys += [name] if name else []
    return keys


@dataclass
class CardsBoard:
    """The real Memory Cards board under the player's actions (``come.data.cards.simulate``)."""

    layout: np.ndarray
    covered: np.ndarray
    cursor: np.ndarray
    resolution: int

    def step(self, action: int) -> np.ndarray:
        """Apply one action id; returns the frame the board shows (H,W,3) uint8."""
        covered, cursor = simulate(self.layout, self.covered, tuple(self.cursor), np.array([action]))
        self.covered, self.cursor = covered[-1], cursor[-1]
        return render(self.layout, covered[-1:], cursor[-1:], self.resolution)[0]


class CardsGame:
    """A game on a Memory Cards world model: the model's own stream of frames, the real board beside it and
    the memory switch. ``memorize`` changes settings of the memorization recipe (``WorldModel.memorize``)."""

    def __init__(self, world, seed: int = 0, memory: bool = True, memories: str | Path | None = None,
                 progress: bool = True, **memorize):
        if world.cfg.pose != "cursor":
            raise InputError("come play cards needs a Memory Cards model conditioned on the cursor pose")
        resolution = world.cfg.model["resolution"]
        ep = generate_episode(seed, 0, "zigzag", resolution=resolution)
        n = int((ep["phase"] == 0).sum())
        self.board = CardsBoard(ep["layout"], ep["covered"][n - 1], ep["cursor"][n - 1], resolution)
        world.observe(frames_to_tensor(ep["image"][:n])[None], torch.from_numpy(ep["action"][:n])[None],
                      torch.from_numpy(cursor_pose({"cursor": ep["cursor"][:n]}))[None])
        if memories is not None:
            world.load_memories(memories)
        else:
            world.memorize(seed=seed, progress=progress, **memorize)
        self.world, self.memory = world, memory
        self.model_frame = self.real_frame = ep["image"][n - 1]

    def press(self, key: str) -> bool:
        """Play one key; returns whether it drew a frame (``memory`` only switches the memory)."""
        if key == MEMORY_KEY:
            self.memory = not self.memory
            return False
        action_id = ACTIONS.index(key)
        self.real_frame = self.board.step(action_id)
        action = torch.zeros(1, 1, len(ACTIONS))
        action[..., action_id] = 1.0
        pose = torch.from_numpy(cursor_pose({"cursor": self.board.cursor[None]}))[None]
        w = self.world
        pred = w.imagine(action, pose, variant="come" if self.memory else "base")
        w.observe(torch.cat([w.frames, pred.to(w.device)], 1), torch.cat([w.action, action.to(w.device)], 1),
                  torch.cat([w.pose, pose.to(w.device)], 1), keep_memory=True)
        self.model_frame = tensor_to_frames(pred[0, 0])
        return True


def has_display() -> bool:
    """Whether a window can be shown and played: a desktop display, not SDL's dummy or offscreen driver."""
    if os.environ.get("SDL_VIDEODRIVER") in ("dummy", "offscreen"):
        return False
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """A pygame window: the model's frame (and the real board's) scaled up; the title says which memory is on
    and the frame rate. :meth:`keys` yields the key names the player presses."""

    PYGAME_KEYS = {"up": "K_UP", "down": "K_DOWN", "left": "K_LEFT", "right": "K_RIGHT", "toggle": "K_SPACE",
                   MEMORY_KEY: "K_m"}

    def __init__(self, width: int, height: int):
        try:
            import pygame
        except ImportError:
            raise InputError("come play needs pygame for its window: pip install 'come[play]' "
                             "(or play a key file with --keys)") from None
        self.pygame = pygame
        pygame.display.init()
        self.screen = pygame.display.set_mode((width, height))
        self.names = {getattr(pygame, code): name for name, code in self.PYGAME_KEYS.items()}

    def show(self, image: np.ndarray, title: str) -> None:
        surface = self.pygame.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
        self.screen.blit(surface, (0, 0))
        self.pygame.display.set_caption(title)
        self.pygame.display.flip()

    def keys(self) -> Iterator[str]:
        """The player's keys until Esc or the window closes."""
        pygame = self.pygame
        while True:
            event = pygame.event.wait()
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                pygame.display.quit()
                return
            if event.type == pygame.KEYDOWN and event.key in self.names:
                yield self.names[event.key]


def screen(game: CardsGame, twin: bool, scale: int) -> np.ndarray:
    """What the player sees: the model's frame, and the real board's beside it in twin mode, scaled up."""
    panels = [game.model_frame[None]] + ([game.real_frame[None]] if twin else [])
    return side_by_side(panels, scale=scale)[0]


def play(game: CardsGame, keys: list[str] | None = None, twin: bool = False, record: str | Path | None = None,
         scale: int = 8, window: Window | None = None) -> dict:
    """Play ``keys`` (a key script) or the keyboard of ``window``; returns the game's statistics: frames drawn,
    frames per second of the play loop, the memory per frame and, in twin mode, PSNR against the real board
    per frame. ``record`` writes what the player saw as a video."""
    shown, memory_on, twin_psnr = [screen(game, twin, scale)], [], []
    if window is not None:
        window.show(shown[0], _title(game, None))
    seconds = 0.0
    for key in window.keys() if window is not None else keys:
        t0 = time.perf_counter()
        drew = game.press(key)
        if drew:
            seconds += time.perf_counter() - t0
            memory_on.append(game.memory)
            if twin:
                twin_psnr.append(float(psnr(frames_to_tensor(game.model_frame[None]),
                                            frames_to_tensor(game.real_frame[None]))[0]))
            shown.append(screen(game, twin, scale))
        if window is not None:
            window.show(shown[-1], _title(game, len(memory_on) / seconds if seconds else None))
    if record is not None:
        write_video(record, np.stack(shown), fps=4)
    return _stats(memory_on, seconds, twin_psnr)


def _title(game: CardsGame, fps: float | None) -> str:
    rate = f" | {fps:.1f} frames/s" if fps else ""
    return f"come play cards | memory {'ON' if game.memory else 'off'} (M){rate} | arrows, space, Esc"


def _stats(memory_on: list[bool], seconds: float, twin_psnr: list[float]) -> dict:
    stats = {"frames": len(memory_on), "seconds": seconds,
             "frames_per_second": len(memory_on) / seconds if seconds else None, "memory_on": memory_on}
    if twin_psnr:
        stats["twin_psnr"] = twin_psnr
        for state, label in ((True, "memory_on"), (False, "memory_off")):
            values = [p for p, m in zip(twin_psnr, memory_on) if m == state]
            stats[f"mean_twin_psnr_{label}"] = float(np.mean(values)) if values else None
    return stats
