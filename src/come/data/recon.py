"""RECON in the processed layout NWM reads, read in place
(``come train --preset recon-tiny --data recon --allow-pickle``).

Source: facebookresearch/nwm, ``datasets.py`` (``BaseDataset``: trajectory names one a line in a split folder's
``traj_names.txt``; ``_get_trajectory`` unpickles ``DATA/<trajectory>/traj_data.pkl``; frame ``t`` is
``DATA/<trajectory>/<t>.jpg``, ``misc.get_data_path``) and ``misc.py`` (``to_local_coords``,
``angle_difference``: the motion NWM conditions on). The files are written by robodhruv/visualnav-transformer,
``train/process_recon.py`` (``traj_data.pkl``: a pickled dict of ``position`` (T,2), the Jackal's x and y in
metres, and ``yaw`` (T,) in radians; ``<i>.jpg``: frame ``i`` of the RECON release's ``images/rgb_left``) and
``train/data_split.py`` (``data_splits/recon/train/traj_names.txt`` and ``test/traj_names.txt``)::

    recon/
      <trajectory>/0.jpg 1.jpg ... traj_data.pkl
      train/traj_names.txt    optional, data_split.py's lists copied here: without them every trajectory
      test/traj_names.txt     is in every split

What maps to what: the frames are ``image``, each jpg's centred square (NWM crops to 4:3 and squeezes to a
square). ``action[t]`` = (dx, dy, dyaw): the motion from frame ``t-1`` to frame ``t`` in the robot's frame at
``t-1`` (forward and left in metres, the change of heading in radians in [-pi, pi)), as NWM's ``to_local_coords``
and ``angle_difference`` compute it (NWM then divides by RECON's ``metric_waypoint_spacing``, 0.25 m; come keeps
metres); ``action[0]`` is zeros. The pose is stored as ``agent_pos`` (T,2) and ``agent_dir`` (T,2, the unit
heading), which the ``planar`` pose source reads as (x, y, cos yaw, sin yaw) in the frame of the episode's first
pose (come.data.clips).

``traj_data.pkl`` is a pickle, and unpickling runs code from the file: it is read only where allowed
(``load_episode(..., allow_pickle=True)``, ``come.data.episodes.allowing_pickle``, ``--allow-pickle``), with a
warning, and refused with one line otherwise.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from .clips import relative_motion
from .convert import square_frame
from .episodes import EpisodeError, Layout, pickle_allowed, register_layout

SPLITS = ("train", "test")
ACTIONS = ("dx", "dy", "dyaw")
PICKLE_WARNING = ("unpickling RECON's traj_data.pkl files, as allowed: a pickle runs code from its file, so allow "
                  "it only for files you trust")


def matches(folder: Path) -> bool:
    return next(folder.glob("*/traj_data.pkl"), None) is not None


def episodes(folder: Path, split: str | None) -> list[Path]:
    """The trajectory folders of a split's ``traj_names.txt``; every one when no split has a list."""
    names = folder / (split or "train") / "traj_names.txt"
    if names.is_file():
        return [folder / name.strip() for name in names.read_text().splitlines() if name.strip()]
    if any((folder / other / "traj_names.txt").is_file() for other in SPLITS):
        return []
    return sorted(p.parent for p in folder.glob("*/traj_data.pkl"))


def owns(path: Path) -> bool:
    return path.is_dir()


def load(path: Path, resolution: int | None = None) -> dict[str, np.ndarray]:
    """One trajectory as come's arrays (see the module docstring); frames resized to ``resolution`` if given."""
    if not path.is_dir():
        raise EpisodeError(f"{path}: trajectory folder not found")
    position, yaw = read_trajectory(path / "traj_data.pkl")
    heading = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    pose = {"agent_pos": position, "agent_dir": heading}
    return {"image": read_frames(path, len(yaw), resolution), "action": relative_motion(pose), **pose}


def read_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions (T,2) and yaws (T,) from ``traj_data.pkl``, unpickled only where allowed."""
    if not path.is_file():
        raise EpisodeError(f"{path.parent}: no traj_data.pkl in this trajectory folder")
    if not pickle_allowed():
        raise EpisodeError(f"{path}: a pickle, and unpickling runs code from the file; if you trust it, allow it "
                           "with --allow-pickle (allow_pickle=True)")
    warnings.warn(PICKLE_WARNING, stacklevel=2)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
        position, yaw = np.asarray(data["position"], np.float64), np.asarray(data["yaw"], np.float64).reshape(-1)
    except Exception as e:  # whatever a pickle holds: UnpicklingError, KeyError, TypeError, ValueError...
        raise EpisodeError(f"{path}: not a trajectory of 'position' and 'yaw' ({type(e).__name__}: {e})") from None
    if position.ndim != 2 or position.shape[1] < 2 or len(position) != len(yaw) or not len(yaw):
        raise EpisodeError(f"{path}: 'position' must be (T,2) with T={len(yaw)} like 'yaw', got {position.shape}")
    return position[:, :2], yaw


def read_frames(folder: Path, count: int, resolution: int | None) -> np.ndarray:
    """Frames ``0.jpg`` to ``<count-1>.jpg`` of a trajectory, each its centred square (of ``resolution``)."""
    from PIL import Image

    frames, side = [], resolution
    for t in range(count):
        path = folder / f"{t}.jpg"
        if not path.is_file():
            raise EpisodeError(f"{path}: frame {t} of the {count} poses of traj_data.pkl is missing")
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except OSError as e:  # PIL.UnidentifiedImageError is an OSError
            raise EpisodeError(f"{path}: not a readable image ({e})") from None
        side = side or min(frame.shape[:2])  # the first frame's square sets the size of all
        frames.append(square_frame(frame, side))
    return np.stack(frames)


LAYOUT = register_layout(Layout("RECON (NWM)", "<split>/traj_names.txt naming <trajectory>/ folders", matches,
                                episodes, owns, load))
