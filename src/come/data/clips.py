"""Random clips of ``context + future`` frames from a folder of episodes.

A clip holds frames in [-1, 1] as (T,C,H,W) float32 (kept as uint8 in memory), its actions (T,A) and,
when the dataset has one, a pose track (T,P). With a frame skip ``k`` a clip
takes every k-th frame, and a frame's action is the sum of the one-hot actions
taken since the previous kept frame. Frames are resized (area / bilinear) when
the episode's resolution differs from the model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .cards import GRID
from .episodes import EpisodeError, episode_files, load_episode


def cursor_pose(ep: dict) -> np.ndarray:
    """Memory Cards cursor (row, col) as the card's centre in image coordinates, in (-1, 1)."""
    return (ep["cursor"].astype(np.float32) + 0.5) / GRID * 2 - 1


def agent_pose(ep: dict) -> np.ndarray:
    """Memory Maze absolute pose (x, y, cos yaw, sin yaw), x and y scaled by the maze size."""
    size = max(np.asarray(ep["maze_layout"]).shape) if "maze_layout" in ep else 1
    pos = ep["agent_pos"].astype(np.float32) / size * 2 - 1
    d = ep["agent_dir"].astype(np.float32)
    d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-8)
    return np.concatenate([pos, d], axis=-1)


POSE_SOURCES = {"cursor": cursor_pose, "agent": agent_pose}


def frames_to_tensor(image: np.ndarray, resolution: int | None = None) -> torch.Tensor:
    """uint8 (T,H,W,3) -> float (T,3,R,R) in [-1, 1], resized to ``resolution`` if given."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if resolution is not None and x.shape[-1] != resolution:
        mode = "area" if x.shape[-1] > resolution else "bilinear"
        x = F.interpolate(x, size=(resolution, resolution), mode=mode)
    return x


def frames_to_uint8(image: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (T,H,W,3) -> uint8 (T,3,R,R), resized if needed (clips are kept in memory this way)."""
    if image.shape[1] == image.shape[2] == resolution:
        return torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).contiguous()
    x = frames_to_tensor(image, resolution)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def uint8_to_tensor(x: torch.Tensor) -> torch.Tensor:
    """uint8 (...,3,H,W) -> float in [-1, 1]."""
    return x.float() / 127.5 - 1


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (...,3,H,W) in [-1, 1] -> uint8 (...,H,W,3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def skip_actions(action: np.ndarray, skip: int) -> np.ndarray:
    """Per kept frame, the sum of actions since the previous kept frame (frame t keeps t*skip)."""
    if skip == 1:
        return action.astype(np.float32)
    T = (len(action) - 1) // skip + 1
    out = np.zeros((T, action.shape[1]), np.float32)
    out[0] = action[0]
    for i in range(1, T):
        out[i] = action[(i - 1) * skip + 1 : i * skip + 1].sum(0)
    return out


class ClipDataset:
    """Episodes held in memory, sampled as random clips with a seeded numpy generator."""

    def __init__(
        self,
        folder: str | Path,
        split: str | None = "train",
        clip_frames: int = 8,
        resolution: int = 32,
        frame_skip: int = 1,
        pose: str | None = None,
        action_dim: int | None = None,
        progress: bool = False,
    ):
        if pose is not None and pose not in POSE_SOURCES:
            raise ValueError(f"unknown pose source '{pose}' (choose from {', '.join(POSE_SOURCES)})")
        self.clip_frames, self.resolution, self.frame_skip, self.pose = clip_frames, resolution, frame_skip, pose
        self.files = episode_files(folder, split)
        self.frames: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []
        self.poses: list[torch.Tensor] = []
        for path in tqdm(self.files, desc="loading episodes", disable=not progress, unit="ep"):
            ep = load_episode(path)
            if action_dim is not None and ep["action"].shape[1] != action_dim:
                raise EpisodeError(f"{path}: actions have {ep['action'].shape[1]} dims, the model expects {action_dim}")
            img = ep["image"][::frame_skip]
            if img.shape[0] < clip_frames:
                continue
            if pose is not None:
                try:
                    p = POSE_SOURCES[pose](ep)
                except KeyError as e:
                    raise EpisodeError(f"{path}: pose source '{pose}' needs array {e}") from None
                self.poses.append(torch.from_numpy(np.ascontiguousarray(p[::frame_skip])))
            self.frames.append(frames_to_uint8(img, resolution))
            self.actions.append(torch.from_numpy(skip_actions(ep["action"], frame_skip)))
        if not self.frames:
            raise EpisodeError(f"{folder}: no episode has {clip_frames} frames (frame skip {frame_skip})")
        starts = np.array([len(f) - clip_frames + 1 for f in self.frames])
        self._weights = starts / starts.sum()
        self._starts = starts

    @property
    def action_dim(self) -> int:
        return self.actions[0].shape[1]

    def __len__(self) -> int:
        return len(self.frames)

    def episode(self, i: int) -> dict[str, torch.Tensor]:
        """Whole episode ``i``: frames (T,C,H,W), actions (T,A) and pose (T,P) if any."""
        out = {"frames": uint8_to_tensor(self.frames[i]), "action": self.actions[i]}
        if self.poses:
            out["pose"] = self.poses[i]
        return out

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A batch of random clips: frames (B,T,C,H,W), action (B,T,A), pose (B,T,P) if any."""
        eps = rng.choice(len(self.frames), size=batch_size, p=self._weights)
        starts = [int(rng.integers(0, self._starts[e])) for e in eps]
        sl = [slice(s, s + self.clip_frames) for s in starts]
        batch = {
            "frames": uint8_to_tensor(torch.stack([self.frames[e][s] for e, s in zip(eps, sl)])),
            "action": torch.stack([self.actions[e][s] for e, s in zip(eps, sl)]),
        }
        if self.poses:
            batch["pose"] = torch.stack([self.poses[e][s] for e, s in zip(eps, sl)])
        return batch
