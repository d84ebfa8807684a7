"""Random clips of ``context + future`` frames from a folder of episodes.

A clip holds frames in [-1, 1] as (T,C,H,W) float32 (kept as uint8 in memory), its actions (T,A) and,
when the dataset has one, a pose track (T,P). With a frame skip ``k`` a clip
takes every k-th frame, and a frame's action is the sum of the one-hot actions
taken since the previous kept frame. Frames are resized (area / bilinear) when
the episode's resolution differs from the model's. Memory Cards folders and
Memory Maze folders (``come data maze`` or the public offline dataset, whose
held-out split is ``eval/``) and the published datasets' own layouts
(``come.data.episodes.LAYOUTS``) load the same way.

Pose sources (``POSE_SOURCES``, a function ``(episode, skip) -> (T',P)`` per name):

    cursor     (2)  Memory Cards: the cursor's card centre in image coordinates, in (-1, 1)
    absolute   (4)  Memory Maze: (x, y, cos yaw, sin yaw), x and y scaled to [-1, 1] by the maze size
    relative   (3)  Memory Maze: per kept frame, the displacement since the previous kept frame in
                    the agent's own frame then (forward, left; grid cells) and the change of heading
                    (radians, counter-clockwise positive); zeros on the first frame
    planar     (4)  a pose on a plane (RECON, or your own x, y, yaw): (x, y, cos yaw, sin yaw) in the frame
                    of the episode's first pose (x along its heading, y to its left; the episode's own units)

``absolute`` reads ``agent_pos``, ``agent_dir`` and ``maze_layout``; ``relative`` and ``planar`` read ``agent_pos``
and ``agent_dir`` alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm import tqdm

from ..errors import InputError
from .cards import GRID
from .episodes import EpisodeError, episode_files, load_episode
from .places import relative_view_pose, views_before, wrap_angle


def cursor_pose(ep: dict, skip: int = 1) -> np.ndarray:
    """Memory Cards cursor (row, col) as the card's centre in image coordinates, in (-1, 1)."""
    return ((ep["cursor"].astype(np.float32) + 0.5) / GRID * 2 - 1)[::skip]


def _maze_pose(ep: dict) -> tuple[np.ndarray, np.ndarray]:
    """Memory Maze position (T,2) in grid cells and heading (T,) in radians."""
    pos, d = ep["agent_pos"].astype(np.float64), ep["agent_dir"].astype(np.float64)
    return pos, np.arctan2(d[:, 1], d[:, 0])


def absolute_pose(ep: dict, skip: int = 1) -> np.ndarray:
    """Memory Maze absolute pose (x, y, cos yaw, sin yaw), x and y scaled to [-1, 1] by the maze size."""
    size = np.asarray(ep["maze_layout"]).shape[-1]  # (S,S), or (T,S,S) as in the public dataset
    pos, yaw = _maze_pose(ep)
    out = np.concatenate([pos / size * 2 - 1, np.cos(yaw)[:, None], np.sin(yaw)[:, None]], axis=-1)
    return out[::skip].astype(np.float32)


def relative_motion(ep: dict, skip: int = 1) -> np.ndarray:
    """Memory Maze motion per kept frame: (forward, left) displacement in the agent's frame at the
    previous kept frame (grid cells) and the change of heading (radians); the first frame is zeros."""
    pos, yaw = _maze_pose(ep)
    pos, yaw = pos[::skip], yaw[::skip]
    out = np.zeros((len(pos), 3), np.float32)
    delta = np.diff(pos, axis=0)
    c, s = np.cos(yaw[:-1]), np.sin(yaw[:-1])
    out[1:, 0] = delta[:, 0] * c + delta[:, 1] * s
    out[1:, 1] = -delta[:, 0] * s + delta[:, 1] * c
    out[1:, 2] = wrap_angle(np.diff(yaw))
    return out


def planar_pose(ep: dict, skip: int = 1) -> np.ndarray:
    """(x, y, cos yaw, sin yaw) per kept frame in the frame of the episode's first pose: the position relative
    to the first, along the first heading and to its left, and the heading relative to the first."""
    pos, yaw = _maze_pose(ep)
    delta, c, s = pos - pos[0], np.cos(yaw[0]), np.sin(yaw[0])
    turn = yaw - yaw[0]
    out = np.stack([delta[:, 0] * c + delta[:, 1] * s, -delta[:, 0] * s + delta[:, 1] * c, np.cos(turn),
                    np.sin(turn)], axis=-1)
    return out[::skip].astype(np.float32)


POSE_SOURCES = {"cursor": cursor_pose, "absolute": absolute_pose, "relative": relative_motion,
                "planar": planar_pose}
_POSE_KEYS = {"cursor": ("cursor",), "absolute": ("agent_pos", "agent_dir", "maze_layout"),
              "relative": ("agent_pos", "agent_dir"), "planar": ("agent_pos", "agent_dir")}


def check_pose_source(pose: str) -> None:
    if pose not in POSE_SOURCES:
        raise InputError(f"unknown pose source '{pose}' (choose from {', '.join(POSE_SOURCES)})")


def pose_track(ep: dict, pose: str, skip: int = 1, path: str | Path = "<episode>") -> torch.Tensor:
    """The episode's pose track (T',P) for the kept frames; a clear error when it lacks the arrays."""
    check_pose_source(pose)
    missing = [k for k in _POSE_KEYS[pose] if k not in ep]
    if missing:
        raise EpisodeError(f"{path}: pose source '{pose}' needs array(s) {', '.join(missing)}, which this episode "
                           f"lacks (it has: {', '.join(sorted(ep))})")
    short = [k for k in _POSE_KEYS[pose] if len(ep[k]) != len(ep["image"])]
    if short:
        raise EpisodeError(f"{path}: '{short[0]}' has {len(ep[short[0]])} entries for {len(ep['image'])} frames")
    return torch.from_numpy(np.ascontiguousarray(POSE_SOURCES[pose](ep, skip), dtype=np.float32))


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


class ClipDataset(Dataset):
    """Episodes held in memory, sampled as random clips with a seeded numpy generator.

    With ``views`` > 0 (a place memory; needs the ``absolute`` pose) each clip also carries the
    ``views`` frames of its episode seen from the poses nearest its last frame's, among the frames
    that end a random 0 to ``view_gap`` frames before the clip (a model rolling out 1 to ``view_gap``
    frames past its history meets such views), their poses relative to that frame, and
    ``view_keep`` False where the episode has too few earlier frames.
    """

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
        views: int = 0,
        view_gap: int = 40,
    ):
        if pose is not None:
            check_pose_source(pose)  # before loading any episode
        if views and pose != "absolute":
            raise InputError(f"place views are retrieved by the absolute pose; pose source is '{pose}'")
        self.views, self.view_gap = views, view_gap
        self.clip_frames, self.resolution, self.frame_skip, self.pose = clip_frames, resolution, frame_skip, pose
        self.files = episode_files(folder, split)
        self.frames: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []
        self.poses: list[torch.Tensor] = []
        for path in tqdm(self.files, desc="loading episodes", disable=not progress, unit="ep"):
            ep = load_episode(path, resolution)
            if action_dim is not None and ep["action"].shape[1] != action_dim:
                raise EpisodeError(f"{path}: actions have {ep['action'].shape[1]} dims, the model expects {action_dim}")
            img = ep["image"][::frame_skip]
            if img.shape[0] < clip_frames:
                continue
            if pose is not None:
                self.poses.append(pose_track(ep, pose, frame_skip, path))
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

    def draw_keys(self, batch_size: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """Keys of ``batch_size`` random clips: (episode, first frame, place views' gap)."""
        eps = rng.choice(len(self.frames), size=batch_size, p=self._weights)
        return [(int(e), int(rng.integers(0, self._starts[e])), int(rng.integers(0, self.view_gap + 1)))
                for e in eps]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        """The clip of a key from :meth:`draw_keys`: frames (T,C,H,W), action (T,A), pose (T,P) if any, and
        its place views if the dataset has them."""
        e, s, gap = key
        clip = slice(s, s + self.clip_frames)
        out = {"frames": uint8_to_tensor(self.frames[e][clip]), "action": self.actions[e][clip]}
        if self.poses:
            out["pose"] = self.poses[e][clip]
        if self.views:
            out |= self._views(e, s, gap)
        return out

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A batch of random clips: frames (B,T,C,H,W), action (B,T,A), pose (B,T,P) if any."""
        return default_collate([self[k] for k in self.draw_keys(batch_size, rng)])

    def loader(self, batch_size: int, seed: int, start: int, end: int, workers: int = 0) -> DataLoader:
        """The training batches of steps ``start`` to ``end``: step ``s`` draws its clips from a generator
        seeded by ``(seed, s)``, so a resumed run draws what it would have, and a run split across
        processes (accelerate's ``split_batches``) draws the clips of one process's run."""
        return DataLoader(self, batch_sampler=StepBatches(self, batch_size, seed, start, end), num_workers=workers,
                          persistent_workers=workers > 0)

    def _views(self, e: int, s: int, gap: int) -> dict[str, torch.Tensor]:
        """Place views of a clip (see the class docstring)."""
        target = self.poses[e][s + self.clip_frames - 1]
        idx, ok = views_before(self.poses[e].numpy(), s - gap, target.numpy(), self.views)
        return {"views": uint8_to_tensor(self.frames[e][idx]),
                "view_pose": relative_view_pose(self.poses[e][idx], target), "view_keep": torch.tensor(ok)}


class StepBatches(Sampler):
    """Batch sampler of :meth:`ClipDataset.loader`: the clip keys of each training step."""

    drop_last = False

    def __init__(self, data: ClipDataset, batch_size: int, seed: int, start: int, end: int):
        self.data, self.batch_size, self.seed, self.start, self.end = data, batch_size, seed, start, end

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self):
        for step in range(self.start, self.end):
            yield self.data.draw_keys(self.batch_size, np.random.default_rng((self.seed, step)))
