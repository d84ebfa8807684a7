"""Planning with a world model: the cross-entropy method over Memory Maze's discrete actions, as NWM plans.

Navigation World Models (Bar et al., CVPR 2025, "planning" in sec. 3-4) plan by simulation: sample action
sequences, roll each one out with the world model from the current observations, score the last imagined frame
against the goal image (LPIPS there) and refit the sampling distribution to the best of them, a few times (the
cross-entropy method, CEM); the plan is the best sequence found. NWM samples continuous actions from a Gaussian;
Memory Maze's six actions (noop, forward, left, right, forward+left, forward+right) are drawn here from a
categorical distribution per step, refit to the action frequencies of the best ``elites`` (:func:`cem`).

All candidates of an iteration are one batch of :meth:`~come.world.WorldModel.imagine`, each row the same history
(:class:`WorldRollout`). The imagined frames need poses, which the place memory retrieves the history's views by:
they are dead-reckoned from the current true pose by :class:`MotionModel`, the environment's motion per action
measured on explorer walks. A memory fitted on the history (the long-term memory) is memorized once, on the
history alone, and copied to every row (:meth:`~come.world.WorldModel.set_memory_states`).

The distance to the goal needs no downloaded weights: ``ssim`` (1 - SSIM, the default) or ``mse`` on frames in
[-1, 1]; ``lpips`` (NWM's) where its network is at hand (:func:`come.metrics.perceptual.lpips_network`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..data.maze import ACTIONS
from ..data.places import wrap_angle
from ..errors import InputError

FORWARDS = np.array([float("forward" in a) for a in ACTIONS])  # actions that drive the agent forward
TURNS = np.array([("left" in a) - float("right" in a) for a in ACTIONS])  # +1 turns left (counter-clockwise)
DISTANCES = ("ssim", "mse", "lpips")


def _walls(layout: np.ndarray) -> np.ndarray:
    """The layout ([y, x], 1 = free) as wall cells, padded by one wall cell on every side (outside is wall)."""
    return ~np.pad(np.asarray(layout).astype(bool), 1)


def _wall_at(walls: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return walls[np.clip(y + 1, 0, walls.shape[0] - 1), np.clip(x + 1, 0, walls.shape[1] - 1)]


def push_out_of_walls(layout: np.ndarray, pos: np.ndarray, radius: float) -> np.ndarray:
    """Positions (N,2) in cells, each in a free cell, moved to at least ``radius`` from every wall cell around
    them (nearest point first): a ball against a wall or a corner."""
    walls = _walls(layout)
    out = np.array(pos, dtype=float, copy=True)
    cell = np.floor(out).astype(int)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            cx, cy = cell[:, 0] + dx, cell[:, 1] + dy
            near = np.stack([np.clip(out[:, 0], cx, cx + 1), np.clip(out[:, 1], cy, cy + 1)], axis=1)
            away = out - near
            dist = np.linalg.norm(away, axis=1)
            hit = _wall_at(walls, cx, cy) & (dist < radius) & (dist > 1e-9)
            out[hit] = near[hit] + away[hit] / dist[hit, None] * radius
    return out


def move_in_maze(layout: np.ndarray, pos: np.ndarray, step: np.ndarray, radius: float) -> np.ndarray:
    """Positions (N,2) moved by ``step`` (N,2), shorter than a cell, as a ball of ``radius`` cells: along x then
    y, each stopped at the face of a wall cell ahead of the centre's row or column (so it never enters one), then
    pushed out of the corners it touches (:func:`push_out_of_walls`)."""
    walls = _walls(layout)
    out = np.array(pos, dtype=float, copy=True)
    for axis in (0, 1):
        new, ahead_of = out[:, axis] + step[:, axis], step[:, axis] > 0
        ahead = np.floor(np.where(ahead_of, new + radius, new - radius)).astype(int)
        line = np.floor(out[:, 1 - axis]).astype(int)
        hit = _wall_at(walls, *((ahead, line) if axis == 0 else (line, ahead))) & (step[:, axis] != 0)
        out[:, axis] = np.where(hit, np.where(ahead_of, ahead - radius, ahead + 1 + radius), new)
    return push_out_of_walls(layout, out, radius)


@dataclass(frozen=True)
class MotionModel:
    """Memory Maze's motion per action, dead reckoning from a pose (x, y, yaw; cells, radians).

    The agent is a rolling ball with damped joints, so a step carries part of the previous one: with ``v`` the
    previous step's advance and ``w`` its turn, an action gives ``v' = speed_decay * v + forward_gain * f`` and
    ``w' = turn_decay * w + turn_gain * s`` (``f`` 1 for the actions that go forward, ``s`` +1 left, -1 right);
    the agent turns by ``w'`` and advances ``v'`` along the mean of its old and new heading, a ball of ``radius``
    stopped by walls (:func:`move_in_maze`). The constants are least squares on three 400-step explorer walks
    (seeds 5 and 7): steady 0.25 cells and 18.7 degrees a step; one step off by 0.019 cells and 0.7 degrees
    (std); from a true pose, 8 steps off by 0.07 cells on average (at most 0.22) and 1.5 degrees, 32 steps by
    0.16 cells (at most 0.52) and 3.4 degrees.
    """

    forward_gain: float = 0.10
    speed_decay: float = 0.60
    turn_gain: float = math.radians(14.6)
    turn_decay: float = 0.22
    radius: float = 0.15  # the walks came within 0.10-0.34 cells of a wall; 0.10 and 0.20 reckoned a little worse

    @staticmethod
    def velocity(track: np.ndarray) -> tuple[float, float]:
        """The last step's advance along the previous heading and turn, from a track (T,3) (zeros for T = 1)."""
        if len(track) < 2:
            return 0.0, 0.0
        (x0, y0, yaw0), (x1, y1, yaw1) = track[-2], track[-1]
        advance = (x1 - x0) * math.cos(yaw0) + (y1 - y0) * math.sin(yaw0)
        return advance, float(wrap_angle(yaw1 - yaw0))

    def integrate(self, layout: np.ndarray, track: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Tracks (N,H+1,3) of action sequences (N,H) of ids from the last pose of ``track`` (T,3), the
        motion carried in from its last step; the first pose of each is that last pose."""
        actions = np.asarray(actions, dtype=int)
        n = len(actions)
        v0, w0 = self.velocity(np.asarray(track, float))
        pos, yaw = np.repeat(np.asarray(track, float)[-1:, :2], n, axis=0), np.full(n, float(track[-1][2]))
        v, w = np.full(n, v0), np.full(n, w0)
        out = [np.column_stack([pos, yaw])]
        for step in actions.T:
            v = self.speed_decay * v + self.forward_gain * FORWARDS[step]
            w = self.turn_decay * w + self.turn_gain * TURNS[step]
            mid = yaw + w / 2
            pos = move_in_maze(layout, pos, v[:, None] * np.column_stack([np.cos(mid), np.sin(mid)]), self.radius)
            yaw = yaw + w
            out.append(np.column_stack([pos, yaw]))
        return np.stack(out, axis=1)


MOTION = MotionModel()


def absolute_poses(track: np.ndarray, size: int) -> torch.Tensor:
    """Tracks (...,3) in cells -> the ``absolute`` pose source (x, y scaled to [-1, 1] by the maze size,
    cos yaw, sin yaw), float32."""
    track = np.asarray(track, float)
    xy = track[..., :2] / size * 2 - 1
    return torch.from_numpy(np.concatenate([xy, np.cos(track[..., 2:]), np.sin(track[..., 2:])], -1)).float()


def goal_distance(name: str = "ssim", perceptual=None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``distance(frames (N,C,H,W), goal (C,H,W)) -> (N,)``, lower is nearer: ``ssim`` (1 - SSIM), ``mse`` or
    ``lpips`` (needs ``perceptual``, the network of :func:`~come.metrics.perceptual.lpips_network`)."""
    from ..metrics.image import ssim
    from ..metrics.perceptual import lpips

    if name not in DISTANCES:
        raise InputError(f"unknown distance '{name}' (choose from {', '.join(DISTANCES)})")
    if name == "lpips" and perceptual is None:
        raise InputError("the lpips distance needs the LPIPS network, which is not at hand here: use ssim or mse")

    def distance(frames: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        goal = goal.to(frames.device).expand_as(frames)
        if name == "ssim":
            return 1 - ssim(frames, goal).cpu()
        if name == "mse":
            return (frames.float() - goal.float()).pow(2).mean(dim=(1, 2, 3)).cpu()
        return lpips(frames, goal, perceptual).cpu()

    return distance


@dataclass(frozen=True)
class CEMSettings:
    """The cross-entropy method's sizes: ``candidates`` sequences of ``horizon`` actions an iteration, the
    ``elites`` best refit the distribution, ``iterations`` times; at a refit a share ``smoothing`` of the old
    distribution is kept, so that no action's probability drops to zero on a few elites."""

    candidates: int = 16
    elites: int = 4
    horizon: int = 8
    iterations: int = 3
    smoothing: float = 0.1

    def __post_init__(self):
        for name in ("candidates", "elites", "horizon", "iterations"):
            if getattr(self, name) < 1:
                raise InputError(f"CEM {name} must be at least 1, got {getattr(self, name)}")
        if self.elites > self.candidates:
            raise InputError(f"CEM elites ({self.elites}) cannot outnumber the candidates ({self.candidates})")
        if not 0 <= self.smoothing < 1:
            raise InputError(f"CEM smoothing must be in [0, 1), got {self.smoothing}")


@dataclass
class CEMResult:
    actions: np.ndarray  # (H,) the best sequence of action ids found
    cost: float  # its cost
    rollout: object  # what the rollout gave for it (imagined frames (H,C,H,W))
    probs: np.ndarray  # (H,A) the distribution after the last refit
    costs: list[np.ndarray] = field(default_factory=list)  # every candidate's cost, per iteration
    seconds: list[float] = field(default_factory=list)  # per iteration


def sample_sequences(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences (n,H) of action ids, step h drawn from the categorical ``probs[h]``."""
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random((n, len(probs), 1)) * cumulative[None, :, -1:]
    return np.minimum((u >= cumulative[None]).sum(-1), probs.shape[1] - 1)


def refit(elites: np.ndarray, probs: np.ndarray, smoothing: float) -> np.ndarray:
    """The categorical per step refit to the elites' (K,H) action frequencies, keeping ``smoothing`` of ``probs``."""
    freq = np.eye(probs.shape[1])[elites].mean(axis=0)
    return (1 - smoothing) * freq + smoothing * probs


def cem(rollout: Callable[[np.ndarray, int], object], cost: Callable[[object], object], settings: CEMSettings,
        n_actions: int = len(ACTIONS), seed: int = 0) -> CEMResult:
    """The cross-entropy method over sequences of discrete actions: from uniform categoricals, each iteration
    draws ``settings.candidates`` sequences, rolls them all out at once (``rollout(actions (N,H), iteration)``),
    costs them (``cost(rolled) -> (N,)``, lower is better) and refits to the ``elites`` cheapest. Returns the
    cheapest sequence of all iterations, with its rollout (``rolled[i]``)."""
    rng = np.random.default_rng(seed)
    probs = np.full((settings.horizon, n_actions), 1.0 / n_actions)
    best = CEMResult(np.zeros(settings.horizon, int), math.inf, None, probs)
    for i in range(settings.iterations):
        t0 = time.perf_counter()
        actions = sample_sequences(probs, settings.candidates, rng)
        rolled = rollout(actions, i)
        costs = np.asarray(cost(rolled), dtype=float)
        order = np.argsort(costs, kind="stable")
        if costs[order[0]] < best.cost:
            best.actions, best.cost, best.rollout = actions[order[0]].copy(), float(costs[order[0]]), rolled[order[0]]
        probs = refit(actions[order[: settings.elites]], probs, settings.smoothing)
        best.costs.append(costs)
        best.seconds.append(time.perf_counter() - t0)
    best.probs = probs
    return best


@dataclass
class AgentHistory:
    """What the agent has seen up to now: frames (T,C,H,W) in [-1, 1], one-hot actions (T,A), absolute poses
    (T,4) and the same poses as a track (T,3) in cells."""

    frames: torch.Tensor
    action: torch.Tensor
    pose: torch.Tensor
    track: np.ndarray

    def extended(self, frame: torch.Tensor, action: int, pose: torch.Tensor, point: np.ndarray) -> "AgentHistory":
        """This history with one more step: the frame seen after ``action``, its pose and track point."""
        onehot = torch.zeros(1, self.action.shape[1])
        onehot[0, action] = 1
        return AgentHistory(torch.cat([self.frames, frame[None]]), torch.cat([self.action, onehot]),
                       torch.cat([self.pose, pose[None]]), np.concatenate([self.track, point[None]]))


def memorize_history(world, variant: str, history: AgentHistory, seed: int = 0, **memorize) -> dict | None:
    """What the memories ``variant`` composes memorized of ``history`` (to copy to every candidate), or None
    when it composes none."""
    needed = world.memories_for([variant])
    if not needed:
        return None
    world.observe(history.frames[None], history.action[None], history.pose[None])
    world.memorize(seed=seed, experts=needed, **memorize)
    return world.memory_states()


class WorldRollout:
    """Candidate action sequences (N,H) rolled out through a world under a variant as one batch, every row
    the same history; their poses dead-reckoned by ``motion`` on the maze ``layout``."""

    def __init__(self, world, variant: str, history: AgentHistory, layout: np.ndarray, memory: dict | None = None,
                 motion: MotionModel = MOTION, seed: int = 0):
        self.world, self.variant, self.history, self.memory = world, variant, history, memory
        self.layout, self.motion, self.seed = np.asarray(layout), motion, seed

    def tracks(self, actions: np.ndarray) -> np.ndarray:
        """The dead-reckoned tracks (N,H+1,3) of action sequences, from the history's last pose."""
        return self.motion.integrate(self.layout, self.history.track, actions)

    def __call__(self, actions: np.ndarray, iteration: int = 0) -> torch.Tensor:
        """The imagined frames (N,H,C,H,W) of action sequences (N,H), on the CPU."""
        n, h = np.asarray(actions).shape
        hist = self.history
        self.world.observe(hist.frames[None].expand(n, *hist.frames.shape), hist.action[None].expand(n, -1, -1),
                           hist.pose[None].expand(n, -1, -1))
        if self.memory is not None:
            self.world.set_memory_states({e: states * n for e, states in self.memory.items()})
        onehot = torch.eye(hist.action.shape[1])[torch.as_tensor(np.asarray(actions), dtype=torch.long)]
        pose = absolute_poses(self.tracks(actions)[:, 1:], self.layout.shape[-1])
        return self.world.imagine(onehot, pose, variant=self.variant, seed=self.seed + iteration).cpu()


@dataclass
class Plan:
    actions: np.ndarray  # (H,) action ids
    frames: torch.Tensor  # (H,C,H,W) what the world imagines they show
    track: np.ndarray  # (H+1,3) dead-reckoned from the current pose
    cost: float  # the distance of the last imagined frame to the goal
    seconds: list[float]  # per CEM iteration


def plan(world, variant: str, history: AgentHistory, goal: torch.Tensor, layout: np.ndarray,
         settings: CEMSettings = CEMSettings(), distance: Callable | None = None, memory: dict | None = None,
         motion: MotionModel = MOTION, seed: int = 0) -> Plan:
    """The CEM plan toward the goal image (C,H,W) from ``history`` under ``variant``: the action sequence whose
    last imagined frame is nearest the goal (``distance``, by default 1 - SSIM). ``memory``: what
    :func:`memorize_history` memorized of the history, for variants that compose a memorized expert."""
    distance = distance or goal_distance("ssim")
    rollout = WorldRollout(world, variant, history, layout, memory, motion, seed)
    found = cem(rollout, lambda frames: distance(frames[:, -1], goal), settings, seed=seed)
    return Plan(found.actions, found.rollout, rollout.tracks(found.actions[None])[0], found.cost, found.seconds)
