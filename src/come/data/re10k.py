"""RealEstate10K in the layout DFoT (History-Guided Video Diffusion) prepares, read in place
(``come train --preset re10k-tiny --data re10k``).

Source: kwsong0113/diffusion-forcing-transformer, ``datasets/video/realestate10k_video_dataset.py``
(``RealEstate10KBaseVideoDataset``: ``_build_download_plan`` saves each clip's cameras with ``torch.save`` to
``<split>_poses/<clip>.pt``; ``_preprocess_video`` writes its frames, centre-cropped to squares, as
``<split>_64/<clip>.npz`` (array ``video``, (T,3,64,64) uint8) and ``<split>_256/<clip>.mp4`` (10 fps); splits
``training`` and ``test``; ``load_cond`` and ``_process_external_cond`` read a camera as 18 numbers, the
RealEstate10K line without its timestamp: fx, fy, cx, cy (normalized by the frame size), two zeros, then the 3x4
world-to-camera matrix [R|t] row by row)::

    re10k/
      training_poses/<clip>.pt    cameras, a float32 tensor (T, 18)
      training_64/<clip>.npz      video (T,3,64,64) uint8
      training_256/<clip>.mp4     the same T frames at 256x256
      test_poses/ test_64/ test_256/

An episode is a clip, named by its ``.pt`` file (``come sample --episode re10k/test_poses/<clip>.pt``); its frames
come from the smallest stored size at least the model's (else the largest), so a 32x32 model reads the ``.npz``
and a 256x256 one the ``.mp4``. come's ``train`` split is DFoT's ``training``.

What maps to what: ``action[t]`` (6 numbers) is camera ``t`` seen from camera ``t-1``: the translation of its
centre (x right, y down, z forward: RealEstate10K's OpenCV axes, in the clip's own structure-from-motion scale)
and its rotation as a rotation vector (axis times angle, radians), both in camera ``t-1``'s axes; ``action[0]`` is
zeros. With a frame skip the motions of the skipped steps add up (come.data.clips). The cameras ride along as
``intrinsics`` (T,4: fx, fy, cx, cy) and ``extrinsics`` (T,3,4: world-to-camera); no pose source reads them.

The ``.pt`` files are read with ``torch.load(weights_only=True)``, which unpickles tensors only and runs no code
from the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .convert import raw_frames
from .episodes import EpisodeError, Layout, read_npz, register_layout

# come's split names -> DFoT's
SPLITS = {"train": "training", "test": "test"}
ACTIONS = ("x", "y", "z", "rotation x", "rotation y", "rotation z")


def matches(folder: Path) -> bool:
    return any((folder / f"{split}_poses").is_dir() for split in SPLITS.values())


def episodes(folder: Path, split: str | None) -> list[Path]:
    return sorted((folder / f"{SPLITS.get(split or 'train', split)}_poses").glob("*.pt"))


def owns(path: Path) -> bool:
    return path.suffix == ".pt" and path.parent.name.endswith("_poses")


def load(path: Path, resolution: int | None = None) -> dict[str, np.ndarray]:
    """One clip as come's arrays (see the module docstring)."""
    cameras = read_cameras(path)
    frames_file = pick_frames(path, resolution)
    frames = read_frames(frames_file)
    if len(frames) != len(cameras):
        raise EpisodeError(f"{frames_file}: {len(frames)} frames for the {len(cameras)} cameras of {path.name}")
    extrinsics = cameras[:, 6:].reshape(-1, 3, 4)
    return {"image": frames, "action": camera_motion(extrinsics), "intrinsics": cameras[:, :4],
            "extrinsics": extrinsics}


def read_cameras(path: Path) -> np.ndarray:
    """A clip's (T, 18) cameras, loaded without running code from the file."""
    import pickle

    import torch

    if not path.is_file():
        raise EpisodeError(f"{path}: camera file not found")
    try:
        cameras = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EpisodeError(f"{path}: not a tensor saved by torch.save ({first})") from None
    if not isinstance(cameras, torch.Tensor) or cameras.ndim != 2 or cameras.shape[1] != 18:
        got = tuple(cameras.shape) if isinstance(cameras, torch.Tensor) else type(cameras).__name__
        raise EpisodeError(f"{path}: expected a (T, 18) tensor of cameras, got {got}")
    cameras = cameras.double().numpy()
    if not np.isfinite(cameras).all():
        bad = int((~np.isfinite(cameras)).any(1).argmax())
        raise EpisodeError(f"{path}: camera {bad} holds NaN or infinite values")
    return cameras


def pick_frames(path: Path, resolution: int | None) -> Path:
    """The frames file of a clip: the smallest stored size at least ``resolution`` (else the largest)."""
    split = path.parent.name.removesuffix("_poses")
    stored = {}
    for folder in path.parent.parent.glob(f"{split}_*"):
        size = re.fullmatch(rf"{re.escape(split)}_(\d+)", folder.name)
        found = [f for f in (folder / f"{path.stem}.npz", folder / f"{path.stem}.mp4") if f.is_file()]
        if size and found:
            stored[int(size.group(1))] = found[0]
    if not stored:
        raise EpisodeError(f"{path}: no frames for this clip (expected {split}_64/{path.stem}.npz or "
                           f"{split}_256/{path.stem}.mp4 beside {path.parent.name}/)")
    fits = [size for size in stored if resolution is not None and size >= resolution]
    return stored[min(fits) if fits else max(stored)]


def read_frames(path: Path) -> np.ndarray:
    """(T,H,W,3) uint8 frames from DFoT's ``.npz`` (stored (T,3,H,W)) or ``.mp4``."""
    if path.suffix == ".mp4":
        return np.stack(list(raw_frames(path)))
    video = read_npz(path).get("video")
    if video is None or video.ndim != 4 or video.shape[1] != 3 or video.dtype != np.uint8:
        got = "nothing" if video is None else f"{video.shape} {video.dtype}"
        raise EpisodeError(f"{path}: expected an array 'video' of (T,3,H,W) uint8 frames, got {got}")
    return np.ascontiguousarray(video.transpose(0, 2, 3, 1))


def camera_motion(extrinsics: np.ndarray) -> np.ndarray:
    """(T, 6) float32: per frame, the camera's translation and rotation vector in the previous camera's axes."""
    from scipy.spatial.transform import Rotation

    world_to_camera = np.tile(np.eye(4), (len(extrinsics), 1, 1))
    world_to_camera[:, :3] = extrinsics
    # camera t's own axes -> the world -> camera t-1's axes
    step = world_to_camera[:-1] @ np.linalg.inv(world_to_camera[1:])
    out = np.zeros((len(extrinsics), 6), np.float32)
    out[1:, :3] = step[:, :3, 3]
    if len(step):
        out[1:, 3:] = Rotation.from_matrix(step[:, :3, :3]).as_rotvec()
    return out


LAYOUT = register_layout(Layout("RealEstate10K (DFoT)", "<split>_poses/*.pt, <split> 'training' or 'test'", matches,
                                episodes, owns, load))
