"""DMLab-40k and Minecraft-200k in TECO's layout, read as downloaded (``come train --preset dmlab-tiny --data dmlab``).

Source: wilson1yan/teco, ``teco/data.py`` (``load_npz`` reads ``DATA/<split>/*/*.npz`` with arrays ``video`` and
``actions``; ``load_video`` reads ``DATA/<split>/*/*.mp4`` with the ``actions`` of the ``.npz`` beside each video)
and ``README.md`` (DMLab: 40k trajectories of 300 frames at 64x64; Minecraft: 200k of 300 frames at 128x128;
``scripts/download/dmlab.sh`` and ``minecraft.sh`` unpack ``dmlab/`` and ``minecraft/``, each with ``train/`` and
``test/``). The action widths come from kwsong0113/diffusion-forcing-transformer,
``datasets/video/dmlab_video_dataset.py`` and ``minecraft_video_dataset.py`` (one-hot of 3 and of 4 ids); the
Minecraft ids and the ``<worker>/<episode>`` subfolders from wilson1yan/collect-minecraft, ``collect.py``::

    dmlab/train/0/000000.npz       video (T,64,64,3) uint8, actions (T,) integer ids 0-2
    dmlab/test/...
    minecraft/train/0/000000.mp4   the frames, 128x128
    minecraft/train/0/000000.npz   actions (T,) integer ids 0-3
    minecraft/test/...

What maps to what: the frames are ``image``; the ids become the one-hot ``action``, 3 wide when the frames are in
the ``.npz`` (DMLab), 4 wide when they are in the ``.mp4`` beside it (Minecraft). ``action[t]`` is the id stored at
``t``, paired with frame ``t`` as TECO pairs them. Minecraft's collector stores id 0 for the start frame, then the id
that produced each frame (1 forward and jump, 2 turn left 20 degrees, 3 turn right 20 degrees), so ``action[t]``
produced frame ``t`` as in every come episode; an actions array one longer than the video (whose start frame is not
in it) loses its first id, as DFoT's loader drops it. The DMLab files number their three actions without naming
them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .convert import one_hot, raw_frames
from .episodes import EpisodeError, Layout, read_npz, register_layout

SPLITS = ("train", "test")
DMLAB_ACTIONS = ("id 0", "id 1", "id 2")
MINECRAFT_ACTIONS = ("start", "forward", "turn left", "turn right")


def matches(folder: Path) -> bool:
    return any(next((folder / split).glob("*/*.npz"), None) is not None for split in SPLITS)


def episodes(folder: Path, split: str | None) -> list[Path]:
    return sorted((folder / (split or "train")).glob("*/*.npz"))


def owns(path: Path) -> bool:
    """A TECO episode: an ``.npz`` with ``actions`` (and no ``image``, which would make it come's own)."""
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "actions.npy" in names and "image.npy" not in names


def load(path: Path, resolution: int | None = None) -> dict[str, np.ndarray]:
    """One TECO episode as come's arrays (see the module docstring); the frames keep their size."""
    arrays = read_npz(path)
    frames, width = episode_frames(path, arrays)
    return {"image": frames, "action": one_hot(episode_ids(path, arrays["actions"], len(frames), width), width)}


def episode_frames(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """The frames (from the ``.npz``, or the ``.mp4`` beside it) and the one-hot width they tell."""
    video = path.with_suffix(".mp4")
    if "video" in arrays:
        frames, width = arrays["video"], len(DMLAB_ACTIONS)
    elif video.is_file():
        frames, width = np.stack(list(raw_frames(video))), len(MINECRAFT_ACTIONS)
    else:
        raise EpisodeError(f"{path}: no 'video' array (DMLab) and no {video.name} beside it (Minecraft)")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise EpisodeError(f"{path}: the frames must be (T,H,W,3) uint8, got {frames.shape} {frames.dtype}")
    return frames, width


def episode_ids(path: Path, ids: np.ndarray, frames: int, width: int) -> np.ndarray:
    """One action id per frame, each in [0, width)."""
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise EpisodeError(f"{path}: 'actions' must be (T,) integer ids, got {ids.shape} {ids.dtype}")
    if len(ids) == frames + 1:
        ids = ids[1:]
    if len(ids) != frames:
        raise EpisodeError(f"{path}: {len(ids)} actions for {frames} frames (expected one per frame, or one more)")
    bad = (ids < 0) | (ids >= width)
    if bad.any():
        raise EpisodeError(f"{path}: action id {ids[bad.argmax()]} (frame {bad.argmax()}) is not in 0-{width - 1}")
    return ids


LAYOUT = register_layout(Layout("TECO", "<split>/*/*.npz", matches, episodes, owns, load))
