"""Memory Maze episodes from the real ``memory-maze`` environment, walked by a scripted explorer.

The environment is ``memory_maze.tasks.memory_maze_<size>(global_observables=True)`` (dm_env API,
MuJoCo, 64x64 first-person camera, 6 discrete actions at 4 Hz; the target colour is drawn as the
image border). The walk mimics the policy behind the public Memory Maze offline dataset: pick a
random free cell of the maze, follow the shortest path to it (BFS on the layout grid), turning and
moving with the discrete actions, with a share of uniformly random actions (``noise``, 0.15); pick a
new cell when it is reached (or when the agent is stuck). Random targets make the walk come back to
places it has seen, which is what long-term memory is tested on.

One ``.npz`` per episode (``OUT/<split>/ep_00000.npz``, ``split`` train or eval as in the public
dataset, plus ``meta.json``). The keys, shapes and dtypes are those of the public dataset (keys and
shapes checked against a listing of a real file, ``train/20220923T132217-1000.npz``; dtypes are what
the environment returns and what its author's collection wrapper, pydreamer's
``ActionRewardResetWrapper``, stores), with T = steps + 1 (1001):

    image         (T,64,64,3)  uint8    first-person view; image[0] is before the first action
    action        (T,6)        float64  one-hot action that produced the frame; action[0] = 0
    reward        (T,)         float64  reward received on reaching the frame; reward[0] = 0
    terminal      (T,)         bool     always False (Memory Maze episodes end by time limit)
    reset         (T,)         bool     True on frame 0 only
    agent_pos     (T,2)        float64  (x, y) in grid cells, (0, 0) the bottom-left corner
    agent_dir     (T,2)        float64  unit heading (cos yaw, sin yaw); forward moves along it
    maze_layout   (T,S,S)      uint8    1 = free cell, indexed [y, x] (row 0 at the bottom)
    targets_pos   (T,K,2)      float64  the K objects' positions, grid cells
    targets_vec   (T,K,2)      float64  the objects relative to the agent, in its own frame
    target_pos    (T,2)        float64  current target object, grid cells
    target_vec    (T,2)        float64  current target, agent frame
    target_color  (T,3)        float64  current target colour, RGB in [0, 1]

S is the maze size (9, 11, 13, 15) and K its number of objects (3, 4, 5, 6). Actions: noop,
forward, left, right, forward+left, forward+right. Files are deterministic in (seed, split, index)
(MuJoCo physics and its software renderers, EGL or OSMesa, gave identical bytes here).

Rendering is headless: when ``MUJOCO_GL`` is unset, ``select_renderer`` probes EGL then OSMesa in a
subprocess and sets the first that renders (a clear error when neither does).

Speed (2-core CPU, BENCHMARKS.md): a 1000-step 9x9 episode takes 40-45 s of one core (34 ms per
step, mostly the environment's own physics at 50 substeps per action; 3-5 s build the environment);
20 such episodes took 13 minutes with two workers on cores shared with another job (about 7 on
idle cores). A worker holds about 1.5-2 GB.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from .episodes import prepare_dataset_folder, save_episode, write_meta
from .places import wrap_angle

SIZES = {"9x9": (9, 3), "11x11": (11, 4), "13x13": (13, 5), "15x15": (15, 6)}  # maze cells, objects
MAX_STEPS = {"9x9": 1000, "11x11": 2000, "13x13": 3000, "15x15": 4000}  # the environment's time limit
ACTIONS = ("noop", "forward", "left", "right", "forward_left", "forward_right")
NOOP, FORWARD, LEFT, RIGHT, FORWARD_LEFT, FORWARD_RIGHT = range(6)
SPLITS = ("train", "eval")
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}
GENERATOR_VERSION = 1

_RENDER_PROBE = (
    "import mujoco; m = mujoco.MjModel.from_xml_string("
    "'<mujoco><worldbody><light pos=\"0 0 1\"/><geom size=\".1\"/></worldbody></mujoco>'); "
    "r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); r.update_scene(d); r.render(); r.close()"
)


class MazeEnvError(RuntimeError):
    """The Memory Maze environment cannot run here (not installed, or no headless rendering)."""


def episode_spec(size: str = "9x9", steps: int = 1000) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an episode file (the public offline dataset's format)."""
    s, k = SIZES[size]
    T = steps + 1
    f64, u8 = np.dtype(np.float64), np.dtype(np.uint8)
    return {
        "image": ((T, 64, 64, 3), u8),
        "action": ((T, len(ACTIONS)), f64),
        "reward": ((T,), f64),
        "terminal": ((T,), np.dtype(bool)),
        "reset": ((T,), np.dtype(bool)),
        "agent_pos": ((T, 2), f64),
        "agent_dir": ((T, 2), f64),
        "maze_layout": ((T, s, s), u8),
        "targets_pos": ((T, k, 2), f64),
        "targets_vec": ((T, k, 2), f64),
        "target_pos": ((T, 2), f64),
        "target_vec": ((T, 2), f64),
        "target_color": ((T, 3), f64),
    }


# --- the explorer ---------------------------------------------------------------------------

def shortest_path(layout: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]] | None:
    """Shortest 4-neighbour path of free cells from ``start`` to ``goal``, both ends included.

    ``layout`` is indexed ``[y, x]`` with 1 for a free cell (Memory Maze's ``maze_layout``);
    cells are ``(x, y)``. None when the goal cannot be reached.
    """
    h, w = layout.shape
    parent = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = []
            while cell is not None:
                path.append(cell)
                cell = parent[cell]
            return path[::-1]
        x, y = cell
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if 0 <= nxt[0] < w and 0 <= nxt[1] < h and layout[nxt[1], nxt[0]] and nxt not in parent:
                parent[nxt] = cell
                queue.append(nxt)
    return None


class Explorer:
    """Scripted explorer: shortest paths to random free cells under action noise.

    ``act(agent_pos, agent_dir)`` returns an action id. The agent heads for the centre of the next
    cell on its path (first for the middle of the doorway when it is off the corridor's axis, so
    it does not clip wall corners), turns in place when the heading is off by more than
    ``turn_deg``, arcs (forward+turn) when off by more than ``arc_deg`` and goes straight otherwise.
    With probability ``noise`` it takes a uniformly random action instead. A new target cell is drawn
    when the agent reaches the target cell or has not moved for ``patience`` steps.
    """

    def __init__(self, layout: np.ndarray, rng: np.random.Generator, noise: float = 0.15,
                 turn_deg: float = 30.0, arc_deg: float = 8.0, patience: int = 25):
        self.layout = np.asarray(layout).astype(bool)
        self.free = [(int(x), int(y)) for y, x in zip(*np.nonzero(self.layout))]
        if len(self.free) < 2:
            raise InputError("the maze layout needs at least two free cells")
        self.rng, self.noise = rng, noise
        self.turn, self.arc, self.patience = math.radians(turn_deg), math.radians(arc_deg), patience
        self.goal: tuple[int, int] | None = None
        self.path: list[tuple[int, int]] = []
        self._last_pos: np.ndarray | None = None
        self._still = 0

    def cell(self, pos) -> tuple[int, int]:
        """The grid cell ``(x, y)`` holding ``pos`` (the nearest free cell if ``pos`` is on a wall's edge)."""
        h, w = self.layout.shape
        c = (min(max(int(pos[0]), 0), w - 1), min(max(int(pos[1]), 0), h - 1))
        if self.layout[c[1], c[0]]:
            return c
        return min(self.free, key=lambda f: (f[0] + 0.5 - pos[0]) ** 2 + (f[1] + 0.5 - pos[1]) ** 2)

    def _new_goal(self, here: tuple[int, int]) -> None:
        for _ in range(100 * len(self.free)):
            goal = self.free[int(self.rng.integers(len(self.free)))]
            path = shortest_path(self.layout, here, goal) if goal != here else None
            if path is not None:
                self.goal, self.path = goal, path
                return
        raise InputError(f"no free cell can be reached from cell {here} of the maze layout")

    def waypoint(self, pos) -> np.ndarray:
        """The point the agent steers towards now (re-plans from its current cell)."""
        here = self.cell(pos)
        if self.goal is None or here == self.goal or self._still >= self.patience:
            self._still = 0
            self._new_goal(here)
        if here not in self.path:
            self.path = shortest_path(self.layout, here, self.goal)
        self.path = self.path[self.path.index(here):]
        nxt = np.array(self.path[1], float)
        centre = np.array(here, float) + 0.5
        axis = nxt - np.array(here, float)
        lateral = float(np.dot(np.asarray(pos, float) - centre, (-axis[1], axis[0])))
        if abs(lateral) > 0.2:
            return centre + 0.5 * axis  # the middle of the doorway into the next cell
        return nxt + 0.5

    def act(self, agent_pos, agent_dir) -> int:
        pos = np.asarray(agent_pos, float)
        if self._last_pos is not None and np.abs(pos - self._last_pos).max() < 0.01:
            self._still += 1
        else:
            self._still = 0
        self._last_pos = pos
        target = self.waypoint(pos)
        if self.rng.random() < self.noise:
            return int(self.rng.integers(len(ACTIONS)))
        err = wrap_angle(math.atan2(target[1] - pos[1], target[0] - pos[0]) - math.atan2(agent_dir[1], agent_dir[0]))
        if abs(err) > self.turn:
            return LEFT if err > 0 else RIGHT
        if abs(err) > self.arc:
            return FORWARD_LEFT if err > 0 else FORWARD_RIGHT
        return FORWARD


# --- the environment ------------------------------------------------------------------------

def select_renderer() -> str:
    """Make sure ``MUJOCO_GL`` names a headless backend that renders here; returns it.

    An already set ``MUJOCO_GL`` is kept. Otherwise EGL, then OSMesa, is tried in a subprocess
    (the backend cannot change once MuJoCo's GL is loaded) and the first that renders is set.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend in ("egl", "osmesa"):
        env = {**os.environ, "MUJOCO_GL": backend}
        env.pop("PYOPENGL_PLATFORM", None)
        try:
            ok = subprocess.run([sys.executable, "-c", _RENDER_PROBE], env=env, capture_output=True,
                                timeout=120).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise MazeEnvError("MuJoCo cannot render headless here (tried MUJOCO_GL=egl and MUJOCO_GL=osmesa): "
                       "install EGL (Debian: libegl1 libgl1-mesa-dri) or OSMesa (libosmesa6), or set MUJOCO_GL")


def make_env(size: str = "9x9", seed: int = 0):
    """The dm_env ``memory_maze_<size>(global_observables=True)`` environment, seeded."""
    if size not in SIZES:
        raise InputError(f"unknown maze size '{size}' (choose from {', '.join(SIZES)})")
    select_renderer()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # gym's deprecation banner on import
            from memory_maze import tasks
    except ImportError as e:
        raise MazeEnvError(f"the Memory Maze environment is not installed ({e}): "
                           "pip install memory-maze gym mujoco==3.17.0 (or pip install -e '.[maze]')") from None
    except Exception as e:  # dm_control refuses an unknown MUJOCO_GL, or its GL library fails to load
        raise MazeEnvError(f"the Memory Maze environment failed to load with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                           f"({type(e).__name__}: {e})") from None
    logging.getLogger("absl").setLevel(logging.ERROR)  # one harmless warning per reset
    return getattr(tasks, f"memory_maze_{size}")(global_observables=True, seed=seed)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def episode_env_seed(seed: int, index: int, split: str = "train") -> int:
    """The environment seed of episode ``index`` of a dataset generated with ``seed``: the first draw of the
    episode's generator, before the explorer's. ``make_env(size, episode_env_seed(...))`` then a reset gives the
    episode's maze and start; its recorded actions replayed from there give its frames again."""
    return int(_rng(seed, split, index).integers(2**31 - 1))


def _check_settings(split: str, size: str, steps: int) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    if size not in SIZES:
        raise InputError(f"unknown maze size '{size}' (choose from {', '.join(SIZES)})")
    if not 1 <= steps <= MAX_STEPS[size]:
        raise InputError(
            f"steps must be between 1 and {MAX_STEPS[size]} (the {size} environment's time limit), got {steps}")


def generate_episode(seed: int, index: int, split: str = "train", size: str = "9x9", steps: int = 1000,
                     noise: float = 0.15) -> dict[str, np.ndarray]:
    """One explorer episode (``steps`` actions, ``steps + 1`` frames); deterministic in (seed, split, index)."""
    _check_settings(split, size, steps)
    rng = _rng(seed, split, index)
    env = make_env(size, seed=int(rng.integers(2**31 - 1)))  # = episode_env_seed(seed, index, split)
    try:
        try:
            ts = env.reset()
        except Exception as e:  # a GL backend that imports but cannot render
            raise MazeEnvError(f"the Memory Maze environment failed to render with MUJOCO_GL="
                               f"{os.environ.get('MUJOCO_GL')} ({type(e).__name__}: {e})") from None
        frames = [{k: np.array(v, copy=True) for k, v in ts.observation.items()}]
        actions, rewards, terminal = [np.zeros(len(ACTIONS))], [0.0], [False]
        explorer = Explorer(frames[0]["maze_layout"], rng, noise)
        for _ in range(steps):
            obs = frames[-1]
            a = explorer.act(obs["agent_pos"], obs["agent_dir"])
            ts = env.step(a)
            frames.append({k: np.array(v, copy=True) for k, v in ts.observation.items()})
            actions.append(np.eye(len(ACTIONS))[a])
            rewards.append(float(ts.reward or 0.0))
            terminal.append(bool(ts.last() and ts.discount == 0.0))
    finally:
        env.close()
    spec = episode_spec(size, steps)
    ep = {k: np.stack([f[k] for f in frames]) for k in spec if k in frames[0]}
    ep.update(action=np.stack(actions), reward=np.array(rewards), terminal=np.array(terminal),
              reset=np.arange(steps + 1) == 0)
    return {k: np.ascontiguousarray(ep[k], dtype=dt) for k, (_, dt) in spec.items()}


# --- datasets -------------------------------------------------------------------------------

def episode_name(index: int) -> str:
    return f"ep_{index:05d}.npz"


def _write_episode(job: tuple) -> tuple[int, float, float]:
    """Worker: generate one episode and save it (atomically); returns (index, total reward, seconds)."""
    folder, seed, split, index, size, steps, noise, parent = job
    t = time.perf_counter()
    ep = generate_episode(seed, index, split, size, steps, noise)
    if parent not in (os.getpid(), os.getppid()):  # the command was killed: an orphan writes nothing more
        return index, float("nan"), 0.0
    save_episode(Path(folder) / episode_name(index), ep)
    return index, float(ep["reward"].sum()), time.perf_counter() - t


def generate_dataset(out: str | Path, episodes: int, seed: int = 0, size: str = "9x9", steps: int = 1000,
                     split: str = "train", workers: int = 1, noise: float = 0.15, progress: bool = True) -> Path:
    """Write ``episodes`` episodes to ``out/<split>/`` plus its ``meta.json``; returns that folder.

    Resumable: episodes already in the folder are kept and skipped (a folder generated with other
    settings is refused). ``workers`` > 1 runs episodes in parallel processes (spawn).
    """
    if episodes < 1:
        raise InputError(f"episodes must be at least 1, got {episodes}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if not 0.0 <= noise <= 1.0:
        raise InputError(f"noise must be in [0, 1], got {noise}")
    _check_settings(split, size, steps)
    folder = Path(out) / split
    settings = {"generator": "come.data.maze", "version": GENERATOR_VERSION, "seed": seed, "split": split,
                "size": size, "steps": steps, "noise": noise}
    select_renderer()  # fail fast, and let the workers inherit the backend
    prepare_dataset_folder(folder, settings, episodes)
    todo = [i for i in range(episodes) if not (folder / episode_name(i)).is_file()]
    meta = {**settings, "episodes": episodes, "frames": episodes * (steps + 1), "resolution": 64,
            "actions": list(ACTIONS),
            "keys": list(episode_spec(size, steps)), "environment": f"memory_maze.tasks.memory_maze_{size}"
            f"(global_observables=True)", "memory_maze": _package_version("memory-maze")}
    write_meta(folder, {**meta, "complete": not todo})
    jobs = [(str(folder), seed, split, i, size, steps, noise, os.getpid()) for i in todo]
    bar = tqdm(total=episodes, initial=episodes - len(todo), desc=f"maze/{split}", unit="ep", disable=not progress)
    try:
        if workers == 1 or len(jobs) <= 1:
            results = map(_write_episode, jobs)
            pool = contextlib.nullcontext()
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_write_episode, jobs)
        with pool:
            for _, reward, seconds in results:
                bar.update()
                bar.set_postfix(s_per_ep=f"{seconds:.1f}", reward=f"{reward:g}")
    finally:
        bar.close()
    write_meta(folder, {**meta, "complete": True})
    return folder


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
