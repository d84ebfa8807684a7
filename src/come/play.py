"""``come play``: play inside the world model, its memory switched on and off by key.

A game opens on a real environment after an observe phase, whose frames are the history: on Memory Cards the
recall protocol's observe phase (every card uncovered once along the zig-zag, then covered again), which the
long-term memory memorizes before the first key (or loads from a saved memory); on Memory Maze a walk of the
scripted explorer, which the place memory reads as it is. Each key is one action: the real environment
steps (it gives the pose the model is conditioned on) and the model draws the next frame from its own frames
so far, composed as CoME (memory on) or by the base model alone (memory off). In twin mode the real frame is
shown beside the model's, so a player sees where imagination departs from reality. A pygame window takes the
keyboard (M switches the memory; Esc ends), or a key file plays without one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from .data import cards, maze
from .data.clips import absolute_pose, cursor_pose, frames_to_tensor, tensor_to_frames
from .errors import InputError
from .metrics.image import psnr
from .video import side_by_side, write_video

MEMORY_KEY = "memory"  # a key-file line that switches the memory on or off


def read_keys(path: str | Path, actions: tuple[str, ...] = cards.ACTIONS) -> list[str]:
    """The key names of a key file: one a line (an action name of the game, or ``memory``); blank lines and
    ``#`` comments are skipped, an unknown name is refused with its line number."""
    path, names = Path(path), (*actions, MEMORY_KEY)
    if not path.is_file():
        raise InputError(f"{path}: key file not found")
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.split("#")[0].strip()
        if name and name not in names:
            raise InputError(f"{path}:{number}: unknown key '{name}' (choose from {', '.join(names)})")
        keys += [name] if name else []
    return keys


class Environment(Protocol):
    """A real environment a game runs beside the model: its action names, whether it has ended, and one step
    of an action id that returns the frame it shows (H,W,3) uint8 at the model's resolution and the pose the
    model is given."""

    actions: tuple[str, ...]
    done: bool

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class CardsBoard:
    """The real Memory Cards board under the player's actions (``come.data.cards.simulate``)."""

    layout: np.ndarray
    covered: np.ndarray
    cursor: np.ndarray
    resolution: int
    actions = cards.ACTIONS
    done = False  # a board has no end

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray]:
        covered, cursor = cards.simulate(self.layout, self.covered, tuple(self.cursor), np.array([action]))
        self.covered, self.cursor = covered[-1], cursor[-1]
        return cards.render(self.layout, covered[-1:], cursor[-1:], self.resolution)[0], \
            cursor_pose({"cursor": cursor[-1:]})[0]


class RealMaze:
    """The real Memory Maze (``come.data.maze.make_env``) under the player's actions, seen at the model's
    resolution and posed as the maze models are (x, y, cos yaw, sin yaw). :meth:`walk` plays the scripted
    explorer; ``done`` is set at the environment's time limit."""

    actions = maze.ACTIONS

    def __init__(self, seed: int, resolution: int, size: str = "9x9"):
        self.env, self.resolution, self.done = maze.make_env(size, seed), resolution, False
        self.observation = self.env.reset().observation

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        obs = self.observation
        frame = tensor_to_frames(frames_to_tensor(obs["image"][None], self.resolution))[0]
        pose = absolute_pose({"agent_pos": obs["agent_pos"][None], "agent_dir": obs["agent_dir"][None],
                              "maze_layout": obs["maze_layout"]})[0]
        return frame, pose

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray]:
        step = self.env.step(action)
        self.observation, self.done = step.observation, step.last()
        return self.view()

    def walk(self, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``steps`` actions of the explorer from here: the frames seen (the first before any action), the
        one-hot actions that produced them and the poses."""
        explorer = maze.Explorer(self.observation["maze_layout"], np.random.default_rng(seed))
        frame, pose = self.view()
        frames, poses, actions = [frame], [pose], [np.zeros(len(self.actions), np.float32)]
        for _ in range(steps):
            a = explorer.act(self.observation["agent_pos"], self.observation["agent_dir"])
            frame, pose = self.step(a)
            frames.append(frame), poses.append(pose), actions.append(np.eye(len(self.actions), dtype=np.float32)[a])
        return np.stack(frames), np.stack(actions), np.stack(poses)

    def close(self) -> None:
        self.env.close()


class BackgroundMemory:
    """Memorizes a game's stream as it grows, in a thread, on a world of its own (``learner``: the same model
    loaded again), and hands the memory over between frames, so the frame loop never waits for it. Each
    round continues the last one for ``steps`` more steps of the ``recipe`` on the whole stream so far."""

    def __init__(self, learner, world, steps: int = 10, recipe: str = "cards-play", seed: int = 0):
        self.learner, self.steps, self.recipe, self.seed, self.rounds = learner, steps, recipe, seed, 0
        learner.observe(world.frames, world.action, world.pose)
        name = world.episode_adapters[0]
        learner.memory.set_state(world.memory.state(name), name)  # start from the game's memory
        self._lock, self._wake, self._stop = threading.Lock(), threading.Event(), False
        self._stream = self._memory = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def offer(self, world) -> None:
        """The stream so far, to memorize next (replacing an offer the thread has not started on)."""
        with self._lock:
            self._stream = (world.frames.clone(), world.action.clone(), world.pose.clone())
        self._wake.set()

    def take(self, world) -> bool:
        """Put the newest finished round's memory into ``world``; whether there was one."""
        with self._lock:
            memory, self._memory = self._memory, None
        if memory is not None:
            world.memory.set_state(memory, world.episode_adapters[0])
        return memory is not None

    def close(self) -> None:
        """Stop after the round in progress."""
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                stream, self._stream = self._stream, None
                self._wake.clear()
            if self._stop:
                return
            if stream is None:
                continue
            self.learner.observe(*stream, keep_memory=True)
            self.learner.memorize(self.recipe, seed=self.seed + self.rounds, steps=self.steps)
            with self._lock:
                self._memory = self.learner.memory.state(self.learner.episode_adapters[0])
                self.rounds += 1


class Game:
    """A game: the model's own stream of frames, the real environment beside it under the same keys, and the
    memory switch. ``history`` (frames (N,H,W,3) uint8, one-hot actions (N,A), poses (N,P)) is what the
    model has observed before the first key. With ``learning`` (a :class:`BackgroundMemory`) the long-term
    memory keeps memorizing the stream as it grows."""

    def __init__(self, name: str, world, env: Environment, history: tuple[np.ndarray, np.ndarray, np.ndarray],
                 memory: bool = True):
        frames, action, pose = history
        world.observe(frames_to_tensor(frames)[None], torch.as_tensor(action, dtype=torch.float32)[None],
                      torch.as_tensor(pose, dtype=torch.float32)[None])
        self.name, self.world, self.env, self.memory = name, world, env, memory
        self.model_frame = self.real_frame = frames[-1]
        self.learning: BackgroundMemory | None = None

    @property
    def over(self) -> bool:
        """The real environment has ended (Memory Maze's time limit)."""
        return self.env.done

    def press(self, key: str) -> bool:
        """Play one key; returns whether it drew a frame (``memory`` only switches the memory)."""
        if key == MEMORY_KEY:
            self.memory = not self.memory
            return False
        action_id = self.env.actions.index(key)
        self.real_frame, pose = self.env.step(action_id)
        action = torch.zeros(1, 1, len(self.env.actions))
        action[..., action_id] = 1.0
        pose = torch.from_numpy(pose)[None, None]
        w = self.world
        if self.learning is not None:
            self.learning.take(w)
        pred = w.imagine(action, pose, variant="come" if self.memory else "base")
        w.observe(torch.cat([w.frames, pred.to(w.device)], 1), torch.cat([w.action, action.to(w.device)], 1),
                  torch.cat([w.pose, pose.to(w.device)], 1), keep_memory=True)
        if self.learning is not None:
            self.learning.offer(w)
        self.model_frame = tensor_to_frames(pred[0, 0])
        return True


def cards_game(world, seed: int = 0, memory: bool = True, memories: str | Path | None = None,
               progress: bool = True, learner=None, learn_steps: int = 10, **memorize) -> Game:
    """Memory Cards on board ``seed``, after the recall protocol's observe phase, which the long-term memory
    memorizes (the ``cards-play`` recipe; ``memorize`` changes its settings, :meth:`~come.world.WorldModel.memorize`)
    or loads from ``memories``. With ``learner`` (a second world on the same model) the memory keeps
    memorizing the game's stream in the background, ``learn_steps`` steps a round."""
    if world.cfg.dataset != "cards":
        raise InputError(f"come play cards needs a Memory Cards model; this is a model of {world.cfg.dataset}")
    resolution = world.cfg.model["resolution"]
    ep = cards.generate_episode(seed, 0, "zigzag", resolution=resolution)
    n = int((ep["phase"] == 0).sum())
    board = CardsBoard(ep["layout"], ep["covered"][n - 1], ep["cursor"][n - 1], resolution)
    history = (ep["image"][:n], ep["action"][:n], cursor_pose({"cursor": ep["cursor"][:n]}))
    game = Game("cards", world, board, history, memory)
    if memories is not None:
        world.load_memories(memories)
    else:
        world.memorize("cards-play", seed=seed, progress=progress, **memorize)
    if learner is not None:
        game.learning = BackgroundMemory(learner, world, learn_steps, "cards-play", seed)
    return game


def maze_game(world, seed: int = 0, observe: int = 200, memory: bool = True, size: str = "9x9") -> Game:
    """Memory Maze ``size`` on maze ``seed``, after ``observe`` steps of the scripted explorer, which the
    world's place memory reads as its history (no memorization)."""
    if world.cfg.dataset != "maze" or "place" not in world.denoisers:
        raise InputError("come play maze needs a Memory Maze model with a place memory (e.g. maze-place)")
    if observe < world.cfg.context + world.place_views:
        raise InputError(f"observe at least {world.cfg.context + world.place_views} steps: the place memory takes "
                         f"{world.place_views} views from before the base context of {world.cfg.context}")
    env = RealMaze(seed, world.cfg.model["resolution"], size)
    return Game("maze", world, env, env.walk(observe, seed), memory)


def has_display() -> bool:
    """Whether a window can be shown and played: a desktop display, not SDL's dummy or offscreen driver."""
    if os.environ.get("SDL_VIDEODRIVER") in ("dummy", "offscreen"):
        return False
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# each game's keys: pygame key constant by action name, and the hint in the window's title
PYGAME_KEYS = {
    "cards": {"up": "K_UP", "down": "K_DOWN", "left": "K_LEFT", "right": "K_RIGHT", "toggle": "K_SPACE"},
    "maze": {"forward": "K_UP", "left": "K_LEFT", "right": "K_RIGHT", "forward_left": "K_q", "forward_right": "K_e",
             "noop": "K_SPACE"},
}
KEY_HINTS = {"cards": "arrows, space, Esc", "maze": "up, left, right, Q/E arc, space waits, Esc"}


class Window:
    """A pygame window: the model's frame (and the real one's) scaled up; the title says whether the memory
    is on and the frame rate. :meth:`keys` yields the key names the player presses."""

    def __init__(self, width: int, height: int, game: str = "cards"):
        try:
            import pygame
        except ImportError:
            raise InputError("come play needs pygame for its window: pip install 'come[play]' "
                             "(or play a key file with --keys)") from None
        self.pygame = pygame
        pygame.display.init()
        self.screen = pygame.display.set_mode((width, height))
        codes = PYGAME_KEYS[game] | {MEMORY_KEY: "K_m"}
        self.names = {getattr(pygame, code): name for name, code in codes.items()}

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


def screen(game: Game, twin: bool, scale: int) -> np.ndarray:
    """What the player sees: the model's frame, and the real one beside it in twin mode, scaled up."""
    panels = [game.model_frame[None]] + ([game.real_frame[None]] if twin else [])
    return side_by_side(panels, scale=scale)[0]


def play(game: Game, keys: list[str] | None = None, twin: bool = False, record: str | Path | None = None,
         scale: int = 8, window: Window | None = None) -> dict:
    """Play ``keys`` (a key script) or the keyboard of ``window`` until they end or the environment does;
    returns the game's statistics: frames drawn, frames per second of the play loop (the environment's step
    included), the memory per frame and, in twin mode, PSNR against the real frame per frame. ``record``
    writes what the player saw as a video."""
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
        if game.over:
            break
    if record is not None:
        write_video(record, np.stack(shown), fps=4)
    return _stats(memory_on, seconds, twin_psnr)


def _title(game: Game, fps: float | None) -> str:
    rate = f" | {fps:.1f} frames/s" if fps else ""
    return f"come play {game.name} | memory {'ON' if game.memory else 'off'} (M){rate} | {KEY_HINTS[game.name]}"


def _stats(memory_on: list[bool], seconds: float, twin_psnr: list[float]) -> dict:
    stats = {"frames": len(memory_on), "seconds": seconds,
             "frames_per_second": len(memory_on) / seconds if seconds else None, "memory_on": memory_on}
    if twin_psnr:
        stats["twin_psnr"] = twin_psnr
        for state, label in ((True, "memory_on"), (False, "memory_off")):
            values = [p for p, m in zip(twin_psnr, memory_on) if m == state]
            stats[f"mean_twin_psnr_{label}"] = float(np.mean(values)) if values else None
    return stats
