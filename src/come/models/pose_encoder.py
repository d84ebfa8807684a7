"""Pose encoder: absolute pose from frames and actions, for the spatial expert (SLTM).

The spatial expert is conditioned on absolute pose ``(x, y, cos yaw, sin yaw)``.
Where a dataset has no poses (or at test time in a new environment), this small
network infers them: a convolutional net reads each pair of consecutive frames
and the action taken between them and predicts that step's relative motion
``(forward, left, change of heading)`` in the agent's own frame (the ``relative``
pose source of :mod:`come.data.clips`); :func:`integrate_motion` chains the
steps from a known start pose into an absolute track (dead reckoning), and
:func:`to_absolute_pose` writes it in the ``absolute`` pose source's format.

It is trained with ``come train --preset maze-pose`` (an MSE on each step's motion,
scaled per component by ``motion_scale``) and measured with ``come eval pose``
(ATE and RPE of whole held-out episodes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from ..errors import InputError


@dataclass
class PoseEncoderConfig:
    """Architecture of a :class:`PoseEncoder` (saved beside every checkpoint)."""

    resolution: int = 32
    channels: int = 3
    action_dim: int = 6
    width: int = 32
    hidden: int = 128
    motion_scale: list[float] = field(default_factory=lambda: [0.1, 0.02, 0.2])  # one step's typical motion

    def __post_init__(self):
        if self.resolution % 8 or self.resolution < 8:
            raise InputError(f"the pose encoder needs a resolution divisible by 8, got {self.resolution}")
        if len(self.motion_scale) != 3 or min(self.motion_scale) <= 0:
            raise InputError(f"motion_scale needs 3 positive values (forward, left, heading), got {self.motion_scale}")

    def to_dict(self) -> dict:
        return asdict(self)


class PoseEncoder(nn.Module):
    """Per-step relative motion ``(forward, left, dyaw)`` from consecutive frames and the action."""

    def __init__(self, cfg: PoseEncoderConfig):
        super().__init__()
        self.config = cfg
        w = cfg.width
        self.frames = nn.Sequential(  # (prev, cur) stacked on channels, down to R/8 x R/8
            nn.Conv2d(2 * cfg.channels, w, 4, 2, 1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 4, 2, 1), nn.GELU(),
            nn.Flatten(),
            nn.Linear(2 * w * (cfg.resolution // 8) ** 2, cfg.hidden),
        )
        self.action = nn.Linear(cfg.action_dim, cfg.hidden)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 3))
        self.register_buffer("scale", torch.tensor(cfg.motion_scale, dtype=torch.float32), persistent=False)

    def forward(self, frames: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """frames (B,T,C,H,W) in [-1, 1], action (B,T,A) -> motion (B,T,3); the first frame's motion is 0
        (frame t's action is the one taken between frames t-1 and t)."""
        B, T = frames.shape[:2]
        if T < 2:
            return frames.new_zeros(B, T, 3)
        pairs = torch.cat([frames[:, :-1], frames[:, 1:]], dim=2).flatten(0, 1)  # (B*(T-1),2C,H,W)
        h = self.frames(pairs) + self.action(action[:, 1:].flatten(0, 1).to(pairs.dtype))
        motion = (self.head(h) * self.scale).view(B, T - 1, 3)
        return torch.cat([motion.new_zeros(B, 1, 3), motion], dim=1)



def motion_loss(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """MSE of predicted and true per-step motion (B,T,3), each component divided by its typical size
    ``scale`` (3,); the first frame (no motion) is left out. ``target`` is the ``relative`` pose source."""
    return ((pred.float() - target.float()) / scale.to(pred.device)).pow(2)[:, 1:].mean()


def integrate_motion(motion: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Dead reckoning: per-step motion (...,T,3) (forward, left, dyaw; the first step ignored)
    from ``start`` (...,3) = (x, y, yaw) -> track (...,T,3) = (x, y, yaw).

    The exact inverse of :func:`come.data.clips.relative_motion`: step t moves by
    ``R(yaw_{t-1}) (forward, left)`` and turns by ``dyaw``.
    """
    motion = motion.clone()
    motion[..., 0, :] = 0
    yaw = start[..., None, 2] + torch.cumsum(motion[..., 2], dim=-1)  # (...,T)
    prev = torch.cat([start[..., None, 2], yaw[..., :-1]], dim=-1)
    c, s = torch.cos(prev), torch.sin(prev)
    dx = motion[..., 0] * c - motion[..., 1] * s
    dy = motion[..., 0] * s + motion[..., 1] * c
    x = start[..., None, 0] + torch.cumsum(dx, dim=-1)
    y = start[..., None, 1] + torch.cumsum(dy, dim=-1)
    return torch.stack([x, y, yaw], dim=-1)


def to_absolute_pose(track: torch.Tensor, maze_size: int) -> torch.Tensor:
    """(x, y, yaw) in grid cells -> the ``absolute`` pose source's (x, y, cos yaw, sin yaw),
    x and y scaled to [-1, 1] by the maze size."""
    xy = track[..., :2] / maze_size * 2 - 1
    return torch.cat([xy, torch.cos(track[..., 2:3]), torch.sin(track[..., 2:3])], dim=-1)


@torch.no_grad()
def infer_track(encoder: PoseEncoder, frames: torch.Tensor, action: torch.Tensor, start: torch.Tensor,
                chunk: int = 256) -> torch.Tensor:
    """A whole episode's (x, y, yaw) track from its frames (T,C,H,W), actions (T,A) and first pose (3,)."""
    motion = []
    for i in range(0, len(frames) - 1, chunk):  # chunks overlap by one frame: every pair is seen once
        sl = slice(i, min(len(frames), i + chunk + 1))
        motion.append(encoder(frames[None, sl], action[None, sl])[0, 1:])
    motion = torch.cat([frames.new_zeros(1, 3)] + motion).float()
    return integrate_motion(motion, start.float())
