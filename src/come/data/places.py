"""Places: which history frames were seen from near a pose, and where they were seen from.

The place memory (``VideoDiT`` with ``views`` > 0) is given, for the frame it generates, the history
frames seen from the nearest poses, with each one's pose relative to that frame. The same retrieval
serves training (from the episode's frames before the clip) and sampling (from the observed history),
so the network meets the same kind of views in both.

Poses are the absolute pose source of ``come.data.clips`` (x, y, cos yaw, sin yaw) or a (x, y, yaw)
track; the cost of a view is its distance plus ``turn_cost`` per radian of heading difference.
"""

from __future__ import annotations

import numpy as np
import torch
from ..errors import InputError

TURN_COST = 0.5  # per radian: a view facing elsewhere shows other walls, however close it was taken


def wrap_angle(angle):
    """Angles (radians; a number or an array) wrapped into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def to_track(pose: np.ndarray | torch.Tensor) -> np.ndarray:
    """(…,4) absolute pose (x, y, cos yaw, sin yaw) -> (…,3) track (x, y, yaw); a (…,3) track as is."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-1] == 3:
        return pose
    return np.concatenate([pose[..., :2], np.arctan2(pose[..., 3], pose[..., 2])[..., None]], axis=-1)


def view_costs(keys: np.ndarray, queries: np.ndarray, turn_cost: float = TURN_COST) -> np.ndarray:
    """(Q,M) cost of seeing each query pose (Q,·) from each key pose (M,·): distance + turn_cost * |turn|."""
    keys, queries = to_track(keys), to_track(queries)
    dist = np.linalg.norm(keys[None, :, :2] - queries[:, None, :2], axis=2)
    turn = np.abs(wrap_angle(keys[None, :, 2] - queries[:, None, 2]))
    return dist + turn_cost * turn


def nearest_views(keys: np.ndarray, queries: np.ndarray, k: int = 1, turn_cost: float = TURN_COST) -> np.ndarray:
    """(Q,k) indices of the ``k`` key poses nearest each query pose, nearest first."""
    if len(keys) < k:
        raise InputError(f"{k} views asked from {len(keys)} frames")
    cost = view_costs(keys, queries, turn_cost)
    part = np.argpartition(cost, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(cost, part, axis=1).argsort(axis=1)
    return np.take_along_axis(part, order, axis=1)


def relative_view_pose(view: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Where each view (…,4) was seen from, in the frame of the target pose (…,4): the offset rotated
    into the target's heading (forward, left) and the heading difference (cos, sin)."""
    d = view[..., :2] - target[..., :2]
    c, s = target[..., 2], target[..., 3]
    forward, left = d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c
    cos = view[..., 2] * c + view[..., 3] * s
    sin = view[..., 3] * c - view[..., 2] * s
    return torch.stack([forward, left, cos, sin], dim=-1)


def views_before(poses: np.ndarray, end: int, target: np.ndarray, k: int) -> tuple[list[int], bool]:
    """Indices of the ``k`` frames among the first ``end`` (poses (N,·)) seen from nearest ``target``, and
    whether there were ``k`` of them (if not: ``k`` zeros, views the network is told to leave out)."""
    if end < k:
        return [0] * k, False
    return [int(i) for i in nearest_views(poses[:end], target[None], k)[0]], True
