"""Where results go, checked before any work starts, so that a long run never ends in a failed write.

A folder or a file is usable when it can be created and written (checked by writing a probe file that is
removed at once); a folder already holding a different kind of output (a run, an export) is refused by
the command that would overwrite it. Each file is written atomically (:func:`atomic_write_bytes`: a temp
file and a rename; the next writer removes a killed one's temp files), and :func:`run_lock` keeps two
processes out of one run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_write_in(folder: Path, option: str, path: Path) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise InputError(f"{option} {path}: cannot write in {existing} ({e.strerror or e})") from None


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder results can be written into (it may not exist yet); nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: is a file; a folder is needed here")
    _check_can_write_in(path, option, path)
    return path


def writable_file(path: str | Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file that can be written (replacing a file there); nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; a file path is needed here")
    if suffixes and path.suffix not in suffixes:
        raise InputError(f"{option} {path}: must end in {' or '.join(suffixes)}")
    _check_can_write_in(path.parent, option, path)
    return path


def finite_json(value):
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def json_text(value) -> str:
    """Strict JSON of a result (NaN and infinities as null; paths as strings)."""
    return json.dumps(finite_json(value), indent=2, allow_nan=False, default=str) + "\n"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_json(path: str | Path, value) -> None:
    """Write ``value`` to ``path`` as strict JSON (:func:`json_text`), atomically."""
    atomic_write_bytes(path, json_text(value).encode())


def remove_stale_temp_files(folder: Path) -> int:
    """Remove the temp files an atomic writer killed mid-write left in ``folder``; returns how many."""
    stale = list(Path(folder).glob(".*.tmp[0-9]*")) if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def run_lock(folder: Path):
    """Hold ``folder/.lock`` for the duration: a second process on the same folder is refused in one line."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: run unguarded
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{folder}: another process is writing this folder (it holds {folder / '.lock'})") \
                from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
