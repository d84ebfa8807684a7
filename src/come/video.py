"""Videos a person can look at: side-by-side panels as mp4 (imageio-ffmpeg) and gif."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from .errors import InputError


def side_by_side(panels: list[np.ndarray], scale: int = 4, gap: int = 2) -> np.ndarray:
    """Frames (T,H,W,3) uint8 per panel -> (T, H*scale, (W*scale+gap)*n - gap, 3), panels left to right."""
    T = min(len(p) for p in panels)
    big = [np.repeat(np.repeat(p[:T], scale, axis=1), scale, axis=2) for p in panels]
    sep = np.full((T, big[0].shape[1], gap, 3), 255, np.uint8)
    parts = []
    for i, b in enumerate(big):
        parts += [b] if i == 0 else [sep, b]
    return np.concatenate(parts, axis=2)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 4) -> Path:
    """Write (T,H,W,3) uint8 frames as .mp4 or .gif (by suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
    elif path.suffix == ".mp4":
        h, w = frames.shape[1:3]
        pad = ((0, 0), (0, (-h) % 16), (0, (-w) % 16), (0, 0))
        frames = np.pad(frames, pad)
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=16,
                                ffmpeg_log_level="error") as w_:
            for f in frames:
                w_.append_data(f)
    else:
        raise InputError(f"{path}: video must end in .mp4 or .gif")
    return path
