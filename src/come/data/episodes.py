"""Episode files: one compressed ``.npz`` per episode, arrays with a leading time axis.

Required keys: ``image`` (T,H,W,3) uint8 and ``action`` (T,A). Anything else the
environment gives (``cursor``, ``agent_pos``, ``layout``...) rides along. Every
dataset folder carries a ``meta.json``.

Published datasets are read in their own folder layouts, as downloaded (:data:`LAYOUTS`: TECO's DMLab and
Minecraft, DFoT's RealEstate10K, NWM's RECON; ``docs/datasets.md``): :func:`episode_files` lists a split's
episodes in whichever layout the folder is in, and :func:`load_episode` reads each into the arrays above.

Files are written byte-deterministically (fixed zip timestamps) and atomically
(temp file + rename), so the same seed gives identical bytes and a killed writer
never leaves a half-written episode. ``numpy.savez_compressed`` stamps the
current time into the zip, which is why the writer is hand-written here.
"""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..outputs import atomic_write_bytes, remove_stale_temp_files, writable_folder

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# A Memory Maze episode (1,001 frames at 64x64) takes 12 MB; a loader converts frames to float (4x).
MAX_EPISODE_BYTES = 2**30


class EpisodeError(InputError):
    """An episode file is missing, corrupt, or has arrays of the wrong shape."""


def save_episode(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays as a compressed, byte-deterministic ``.npz`` (atomic)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def load_episode(path: str | Path, resolution: int | None = None, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Load and validate one episode; raise :class:`EpisodeError` naming the file. A published layout's episode
    is read by its layout (:data:`LAYOUTS`): ``resolution``, the frame size the caller will resize to, lets a
    layout that stores several sizes read the nearest; ``allow_pickle`` lets one that stores pickles unpickle
    them (see :func:`allowing_pickle`)."""
    path = Path(path)
    layout = next((lay for lay in public_layouts() if lay.owns(path)), None)
    if layout is None:
        arrays = read_npz(path)
    else:
        with allowing_pickle(allow_pickle or pickle_allowed()):
            arrays = layout.load(path, resolution)
    validate_episode(arrays, path)
    return arrays


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, without pickles. A file whose arrays exceed :data:`MAX_EPISODE_BYTES` is
    refused before it is read (a small file can hold a huge array)."""
    if not path.is_file():
        raise EpisodeError(f"{path}: episode file not found")
    try:
        with zipfile.ZipFile(path) as zf:
            size = sum(info.file_size for info in zf.infolist())
        if size > MAX_EPISODE_BYTES:
            raise EpisodeError(f"{path}: its arrays take {size / 2**30:.1f} GiB, more than the "
                               f"{MAX_EPISODE_BYTES / 2**30:.0f} GiB an episode may take here; split it")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except EpisodeError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, OSError...
        raise EpisodeError(f"{path}: not a readable .npz episode ({type(e).__name__}: {e})") from None


def validate_episode(arrays: dict[str, np.ndarray], path: str | Path = "<episode>") -> None:
    """Check the required keys, dtypes, a shared time axis and finite values."""
    for key in ("image", "action"):
        if key not in arrays:
            raise EpisodeError(f"{path}: missing array '{key}' (has: {', '.join(sorted(arrays)) or 'nothing'})")
    image, action = arrays["image"], arrays["action"]
    if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise EpisodeError(f"{path}: 'image' must be (T,H,W,3) uint8, got {tuple(image.shape)} {image.dtype}")
    if action.ndim != 2 or action.shape[0] != image.shape[0]:
        raise EpisodeError(
            f"{path}: 'action' must be (T,A) with T={image.shape[0]} like 'image', got {tuple(action.shape)}"
        )
    for key, values in arrays.items():  # actions, poses, layouts: a NaN would train or score as a number
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).reshape(len(values), -1).any(1).argmax()) if values.ndim else 0
            raise EpisodeError(f"{path}: '{key}' holds NaN or infinite values (first at index {bad})")


def write_meta(folder: str | Path, meta: dict) -> None:
    """Write ``meta.json`` into a dataset folder (atomic)."""
    atomic_write_bytes(Path(folder) / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def prepare_dataset_folder(folder: Path, settings: dict, episodes: int, episode_glob: str = "ep_*.npz") -> None:
    """Make ``folder`` ready for a generator writing ``episodes`` episodes with ``settings``: refuse a folder
    of another dataset (other settings, or more episodes than asked: a mix the new ``meta.json`` would not
    describe), remove a killed writer's temp files, and mark the folder incomplete until the generator
    writes its final ``meta.json``."""
    writable_folder(folder)
    old = read_meta(folder)
    differ = [f"{k}={old[k]!r} (not {settings[k]!r})" for k in settings if k in old and old[k] != settings[k]]
    if differ:
        raise EpisodeError(f"{folder / 'meta.json'}: this folder holds episodes made with {', '.join(differ)}; "
                           "re-run with the same settings or choose another --out")
    have = len(list(folder.glob(episode_glob))) if folder.is_dir() else 0
    if have > episodes:
        raise EpisodeError(f"{folder}: holds {have} episodes, more than the {episodes} asked for; ask for at "
                           "least as many or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)
    write_meta(folder, {**old, **settings, "complete": False})


def read_meta(folder: str | Path) -> dict:
    """Read a dataset folder's ``meta.json`` (empty dict when absent)."""
    p = Path(folder) / "meta.json"
    return json.loads(p.read_text()) if p.is_file() else {}


# The held-out split: ``test/`` in come's own datasets, ``eval/`` in the public Memory Maze dataset.
SPLIT_ALIASES = {"test": ("test", "eval")}


def split_folder(folder: str | Path, split: str) -> Path | None:
    """``folder/split`` if it exists (for ``test``, else ``folder/eval``); None when there is none."""
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (Path(folder) / name).is_dir():
            return Path(folder) / name
    return None


def episode_files(folder: str | Path, split: str | None = None) -> list[Path]:
    """The episodes of a dataset folder in a published layout (:data:`LAYOUTS`), or else its sorted ``.npz``
    files, or those of its ``split`` subfolder when that exists (``test`` also finds ``eval/``, the public Memory
    Maze dataset's held-out split)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EpisodeError(f"{folder}: dataset folder not found")
    layout = folder_layout(folder)
    if layout is not None:
        files = layout.episodes(folder, split)
        if not files:
            raise EpisodeError(f"{folder}: no episodes of the '{split or 'train'}' split in this {layout.name} folder "
                               f"(expected {layout.splits})")
        return files
    if split is not None:
        folder = split_folder(folder, split) or folder
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise EpisodeError(f"{folder}: no .npz episodes in this folder, nor a published dataset's layout "
                           "(docs/datasets.md)")
    if read_meta(folder).get("complete") is False:
        raise EpisodeError(f"{folder}: its generation did not finish (meta.json says incomplete); re-run the same "
                           "'come data' command to complete it")
    return files


def has_split(folder: str | Path, split: str) -> bool:
    """Whether a dataset folder holds episodes of ``split`` itself (not the whole folder standing in for it)."""
    folder = Path(folder)
    layout = folder_layout(folder)
    if layout is not None:
        return bool(layout.episodes(folder, split))
    found = split_folder(folder, split)
    return found is not None and any(found.glob("*.npz"))


@dataclass(frozen=True)
class Layout:
    """A published dataset's own folder layout, read in place: no conversion step (``docs/datasets.md``)."""

    name: str
    splits: str  # where a split's episodes lie, for messages
    matches: Callable[[Path], bool]  # whether a dataset folder is in this layout
    episodes: Callable[[Path, str | None], list[Path]]  # a split's episodes (None: the training split)
    owns: Callable[[Path], bool]  # whether an episode path is one of this layout's
    load: Callable[[Path, int | None], dict[str, np.ndarray]]  # an episode's arrays (frames near a resolution)


LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add a published layout (or replace one of the same name): :func:`episode_files` and
    :func:`load_episode` read folders in it."""
    LAYOUTS[layout.name] = layout
    return layout


def public_layouts() -> list[Layout]:
    from . import re10k, recon, teco  # noqa: F401  (each registers its layout)

    return list(LAYOUTS.values())


def folder_layout(folder: Path) -> Layout | None:
    """The published layout a dataset folder is in; None for come's own (``*.npz`` episodes)."""
    return next((lay for lay in public_layouts() if lay.matches(folder)), None)


# Some layouts store pickles (NWM's RECON traj_data.pkl), and unpickling runs code from the file.
_ALLOW_PICKLE: ContextVar[bool] = ContextVar("allow_pickle", default=False)


@contextmanager
def allowing_pickle(allowed: bool = True) -> Iterator[None]:
    """Within the block, let episode readers unpickle the files of a layout that stores pickles (``come train
    --allow-pickle``). Allow it only for files you trust."""
    token = _ALLOW_PICKLE.set(allowed)
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def pickle_allowed() -> bool:
    return _ALLOW_PICKLE.get()
