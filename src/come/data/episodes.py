"""Episode files: one compressed ``.npz`` per episode, arrays with a leading time axis.

Required keys: ``image`` (T,H,W,3) uint8 and ``action`` (T,A). Anything else the
environment gives (``cursor``, ``agent_pos``, ``layout``...) rides along. Every
dataset folder carries a ``meta.json``.

Files are written byte-deterministically (fixed zip timestamps) and atomically
(temp file + rename), so the same seed gives identical bytes and a killed writer
never leaves a half-written episode. ``numpy.savez_compressed`` stamps the
current time into the zip, which is why the writer is hand-written here.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

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


def load_episode(path: str | Path) -> dict[str, np.ndarray]:
    """Load and validate one episode; raise :class:`EpisodeError` naming the file. An episode whose arrays
    exceed :data:`MAX_EPISODE_BYTES` is refused before it is read (a small file can hold a huge array)."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeError(f"{path}: episode file not found")
    try:
        with zipfile.ZipFile(path) as zf:
            size = sum(info.file_size for info in zf.infolist())
        if size > MAX_EPISODE_BYTES:
            raise EpisodeError(f"{path}: its arrays take {size / 2**30:.1f} GiB, more than the "
                               f"{MAX_EPISODE_BYTES / 2**30:.0f} GiB an episode may take here; split it")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except EpisodeError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, OSError...
        raise EpisodeError(f"{path}: not a readable .npz episode ({type(e).__name__}: {e})") from None
    validate_episode(arrays, path)
    return arrays


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
    """Sorted ``.npz`` files of a dataset folder, or of its ``split`` subfolder when that exists
    (``test`` also finds ``eval/``, the public Memory Maze dataset's held-out split)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EpisodeError(f"{folder}: dataset folder not found")
    if split is not None:
        folder = split_folder(folder, split) or folder
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise EpisodeError(f"{folder}: no .npz episodes in this folder")
    if read_meta(folder).get("complete") is False:
        raise EpisodeError(f"{folder}: its generation did not finish (meta.json says incomplete); re-run the same "
                           "'come data' command to complete it")
    return files
