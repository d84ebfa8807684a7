"""Your own videos as come episodes (``come data convert``): a folder of videos, each with its actions and,
optionally, its poses, written as ``OUT/train/ep_00000.npz ...`` (and ``OUT/test/``) with ``meta.json``.

Layout (NAME is a video's file name without its suffix)::

    videos/
      walk1.mp4        frames: .mp4, .avi, .webm, .mov, .mkv (through ffmpeg) or .gif (through Pillow)
      walk1.csv        its actions: NAME.csv or NAME.npy, beside the video or in another folder (--actions)
      walk1.pose.csv   optional, beside its actions: its poses, NAME.pose.csv or NAME.pose.npy

Actions come as
  - ids: one CSV column, or a 1-D ``.npy``, of whole numbers >= 0, written as one-hot vectors of
    ``num_actions`` (default: the largest id of all the videos + 1);
  - vectors: two or more CSV columns, or a 2-D ``.npy`` (T, A), kept as float32; every video's A the same.

A CSV holds one row per line, cells separated by commas, and may start with a header row (a row in which no
cell is a number). A video of T frames takes T or T - 1 rows of actions:
  - T rows: row t is the action that produced frame t (row 0 the one before the first frame, often a no-op);
  - T - 1 rows: row t is the action taken between frames t and t + 1; the episode's ``action[0]`` is zeros.
Either way the episode's ``action[t]`` produced frame ``t``, as in every come episode (``come.data.episodes``).

Poses take T rows, one per frame, of the same width for every video (or no video has poses):
  - 3 columns (x, y, yaw in radians) or 4 columns (x, y, cos yaw, sin yaw) are written as ``agent_pos`` (T,2)
    and ``agent_dir`` (T,2, the unit heading (cos yaw, sin yaw)), float64, the arrays of Memory Maze episodes:
    the ``relative`` pose source (``come.data.clips.POSE_SOURCES``) and ``come eval pose`` read them as they
    are, x and y in your own units. The ``absolute`` source also needs a ``maze_layout`` array, whose side
    scales x and y to [-1, 1], which this converter does not write;
  - any other width is kept as ``pose`` (T, P) float32, which no pose source reads.

Frames are centre-cropped to a square and resized to ``resolution`` (area averaging when shrinking, bilinear
when growing, as ``come.data.clips`` resizes). ``max_frames`` cuts a video into consecutive episodes of at most
that many frames (the last one shorter; each keeps the action that produced its first frame); without it, a
video too long for one episode to load (``MAX_EPISODE_BYTES``) is refused. Videos are taken in the order of
their names; with ``test`` N the last N go to ``OUT/test/``.

Every input is checked before anything is written: each video is decoded once to count its frames (ffmpeg
counts without handing the frames to Python), then actions' and poses' rows are checked against it. Videos are
then read a frame at a time, so a long one is never held whole at its own size.
"""

from __future__ import annotations

import csv
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from .clips import frames_to_uint8
from .episodes import MAX_EPISODE_BYTES, prepare_dataset_folder, save_episode, write_meta

FFMPEG_SUFFIXES = (".mp4", ".avi", ".webm", ".mov", ".mkv")
VIDEO_SUFFIXES = (*FFMPEG_SUFFIXES, ".gif")
# every decoded frame once, whatever the timestamps say: actions are given per frame, not per second
_FFMPEG_OUTPUT = ["-fps_mode", "passthrough"]


@dataclass
class Table:
    """Numbers read from a ``.csv`` or ``.npy`` file, with the file line of each row (CSV) for messages."""

    path: Path
    values: np.ndarray  # (rows,) or (rows, columns) float64
    lines: list[int] | None = None

    def at(self, row: int) -> str:
        return f"{self.path}, line {self.lines[row]}" if self.lines else f"{self.path}, row {row}"


@dataclass
class Video:
    """One video and what pairs with it."""

    path: Path
    actions: Table
    poses: Table | None = None
    frames: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per-frame arrays besides the image, (T, ...)


def convert_videos(videos: str | Path, out: str | Path, actions: str | Path | None = None, resolution: int = 32,
                   num_actions: int | None = None, test: int = 0, max_frames: int | None = None,
                   progress: bool = True) -> dict:
    """Convert the videos of ``videos`` (with actions and poses from ``actions``, default the same folder) into
    ``out/train/`` and, with ``test`` > 0, ``out/test/`` (see the module docstring); returns what was written:
    per split its folder and counts, the action width and kind and the pose arrays."""
    videos, out = Path(videos), Path(out)
    if resolution < 8:
        raise InputError(f"--resolution {resolution}: give at least 8 pixels")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames {max_frames}: give at least 1")
    found = pair_videos(videos, Path(actions) if actions is not None else videos)
    if not 0 <= test < len(found):
        raise InputError(f"--test {test}: {videos} holds {len(found)} video(s); keep at least one for train/")
    kind, width = action_width([v.actions for v in found], num_actions)
    check_pose_widths(found)
    if any(v.path.suffix.lower() in FFMPEG_SUFFIXES for v in found):
        check_ffmpeg()
    for video in tqdm(found, desc="counting frames", unit="video", disable=not progress):
        video.frames = count_frames(video.path)
        check_episode_size(video, resolution, max_frames)
        video.arrays = {"action": frame_actions(video.actions, kind, width, video), **frame_poses(video)}
    settings = {"generator": "convert", "source": str(videos.resolve()),
                "actions_from": str(found[0].actions.path.parent.resolve()), "resolution": resolution,
                "max_frames": max_frames, "action_dim": width, "action_kind": kind}
    splits = {split: group for split, group in (("train", found[:len(found) - test]),
                                                ("test", found[len(found) - test:])) if group}
    for split, group in splits.items():  # every folder is checked before the first episode is written
        prepare_dataset_folder(out / split, {**settings, "split": split}, episode_count(group, max_frames))
    with tqdm(total=sum(v.frames for v in found), desc="converting", unit="frame", disable=not progress) as bar:
        written = {split: write_split(out / split, group, {**settings, "split": split}, bar)
                   for split, group in splits.items()}
    poses = sorted({key for v in found for key in v.arrays} - {"action"})
    return {"splits": written, "action_dim": width, "action_kind": kind, "pose": poses}


def find_videos(folder: Path) -> list[Path]:
    """The videos of a folder, sorted by name."""
    if not folder.is_dir():
        raise InputError(f"{folder}: videos folder not found")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise InputError(f"{folder}: no videos ({', '.join(VIDEO_SUFFIXES)}) in this folder")
    return found


def pair_videos(videos: Path, actions: Path) -> list[Video]:
    """Each video of ``videos`` with its actions (required) and poses (optional) from ``actions``."""
    if not actions.is_dir():
        raise InputError(f"{actions}: actions folder not found")
    paired = []
    for path in find_videos(videos):
        table = paired_file(actions, path.stem, path, required=True)
        poses = paired_file(actions, f"{path.stem}.pose", path, required=False)
        paired.append(Video(path, read_table(table), read_table(poses) if poses else None))
    return paired


def pose_width(video: Video) -> int | None:
    return None if video.poses is None else video.poses.values.reshape(len(video.poses.values), -1).shape[1]


def check_pose_widths(videos: list[Video]) -> None:
    """Every video with poses of one width, or none with poses: a pose source reads every episode."""
    first = videos[0]
    other = next((v for v in videos if pose_width(v) != pose_width(first)), None)
    if other is not None:
        def has(v: Video) -> str:
            return f"poses of {pose_width(v)} columns" if v.poses else "no poses"

        raise InputError(f"{other.path}: {has(other)}, where {first.path.name} has {has(first)}; give every video "
                         "poses of the same width, or none")


def paired_file(folder: Path, name: str, video: Path, required: bool) -> Path | None:
    """``folder/name.csv`` or ``folder/name.npy``; an error when both exist or a required one is missing."""
    have = [p for p in (folder / f"{name}.csv", folder / f"{name}.npy") if p.is_file()]
    if len(have) == 2:
        raise InputError(f"{have[0]} and {have[1].name} both pair with {video.name}; keep one")
    if required and not have:
        raise InputError(f"{video}: no actions for this video (expected {folder / name}.csv or .npy)")
    return have[0] if have else None


def read_table(path: Path) -> Table:
    """The numbers of a ``.csv`` or ``.npy`` file; an error naming the file (and line) when they are not."""
    table = read_csv(path) if path.suffix == ".csv" else read_npy(path)
    if not len(table.values):
        raise InputError(f"{path}: no rows")
    bad = ~np.isfinite(table.values.reshape(len(table.values), -1)).all(1)
    if bad.any():
        raise InputError(f"{table.at(int(bad.argmax()))}: NaN or infinite value")
    return table


def read_csv(path: Path) -> Table:
    """A CSV of numbers (one column: a 1-D table), with an optional header row."""
    rows, lines, first = [], [], True
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                numbers = [_number(c) for c in cells]
                header, first = first and all(n is None for n in numbers), False
                if header:
                    continue
                where = f"{path}, line {reader.line_num}"
                bad = next((c for c, n in zip(cells, numbers) if n is None), None)
                if bad is not None:
                    raise InputError(f"{where}: '{bad}' is not a number")
                if rows and len(numbers) != len(rows[0]):
                    raise InputError(f"{where}: {len(numbers)} cells, where the first row has {len(rows[0])}")
                rows.append(numbers)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a CSV text file ({e})") from None
    values = np.array(rows, np.float64).reshape(len(rows), -1)
    return Table(path, values[:, 0] if values.shape[1] == 1 else values, lines)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def read_npy(path: Path) -> Table:
    """A (T,) or (T, A) array of numbers from a ``.npy`` file."""
    try:
        values = np.load(path, allow_pickle=False)
    except Exception as e:  # ValueError, OSError, EOFError...
        raise InputError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(values, np.ndarray) or values.ndim not in (1, 2) or values.dtype.kind not in "biuf":
        got = f"{values.shape} {values.dtype}" if isinstance(values, np.ndarray) else "an archive of arrays"
        raise InputError(f"{path}: expected a (T,) or (T, A) array of numbers, got {got}")
    return Table(path, values.astype(np.float64))


def action_width(tables: list[Table], num_actions: int | None) -> tuple[str, int]:
    """("ids", width) or ("vectors", width), the same for every video's actions."""
    ids = [t for t in tables if t.values.ndim == 1]
    vectors = [t for t in tables if t.values.ndim == 2]
    if ids and vectors:
        raise InputError(f"{vectors[0].path}: action vectors ({vectors[0].values.shape[1]} columns), where "
                         f"{ids[0].path.name} gives action ids (one column); give every video the same kind")
    return ("vectors", vector_width(vectors, num_actions)) if vectors else ("ids", id_width(ids, num_actions))


def vector_width(tables: list[Table], num_actions: int | None) -> int:
    width = tables[0].values.shape[1]
    other = next((t for t in tables if t.values.shape[1] != width), None)
    if other is not None:
        raise InputError(f"{other.path}: {other.values.shape[1]} action columns, where {tables[0].path.name} has "
                         f"{width}; every video needs actions of the same width")
    if num_actions is not None and num_actions != width:
        raise InputError(f"--num-actions {num_actions}: the actions are vectors of {width} ({tables[0].path.name}); "
                         "leave the option out for vectors")
    return width


def id_width(tables: list[Table], num_actions: int | None) -> int:
    """The one-hot width of action ids: ``num_actions``, or the largest id + 1."""
    for t in tables:
        bad = (t.values < 0) | (t.values != np.round(t.values))
        if bad.any():
            row = int(bad.argmax())
            raise InputError(f"{t.at(row)}: action id {t.values[row]:g} is not a whole number >= 0 (give action "
                             "vectors as two or more columns)")
    if num_actions is None:
        return int(max(t.values.max() for t in tables)) + 1
    for t in tables:
        if t.values.max() >= num_actions:
            row = int(t.values.argmax())
            raise InputError(f"{t.at(row)}: action id {t.values[row]:g} is not below --num-actions {num_actions}")
    return num_actions


def frame_actions(table: Table, kind: str, width: int, video: Video) -> np.ndarray:
    """(T, width) float32 actions of a video of T frames, ``action[t]`` the one that produced frame t."""
    frames, rows = video.frames, len(table.values)
    if rows not in (frames, frames - 1):
        raise InputError(f"{table.path}: {rows} rows of actions for the {frames} frames of {video.path.name} "
                         f"(give {frames}, one per frame, or {frames - 1}, one per transition)")
    if kind == "ids":
        values = one_hot(table.values, width)
    else:
        values = table.values.astype(np.float32)
    if rows == frames - 1:
        values = np.concatenate([np.zeros((1, width), np.float32), values])
    return values


def one_hot(ids: np.ndarray, width: int) -> np.ndarray:
    """(T,) whole-number ids in [0, width) -> (T, width) float32 one-hot rows."""
    return np.eye(width, dtype=np.float32)[np.asarray(ids).astype(np.int64)]


def frame_poses(video: Video) -> dict[str, np.ndarray]:
    """A video's poses as ``agent_pos`` and ``agent_dir`` (or ``pose``), one row per frame; none without poses."""
    table = video.poses
    if table is None:
        return {}
    values = table.values.reshape(len(table.values), -1)
    if len(values) != video.frames:
        raise InputError(f"{table.path}: {len(values)} rows of poses for the {video.frames} frames of "
                         f"{video.path.name} (give one per frame)")
    if values.shape[1] not in (3, 4):
        return {"pose": values.astype(np.float32)}
    if values.shape[1] == 3:
        heading = np.stack([np.cos(values[:, 2]), np.sin(values[:, 2])], axis=1)
    else:
        norm = np.linalg.norm(values[:, 2:], axis=1, keepdims=True)
        if (norm == 0).any():
            raise InputError(f"{table.at(int((norm == 0).argmax()))}: heading (cos yaw, sin yaw) is (0, 0)")
        heading = values[:, 2:] / norm
    return {"agent_pos": values[:, :2].copy(), "agent_dir": heading}  # float64, as in Memory Maze episodes


@contextmanager
def video_errors(path: Path) -> Iterator[None]:
    """Report a video that imageio cannot read as one line naming it."""
    try:
        yield
    except InputError:
        raise
    except Exception as e:  # OSError, RuntimeError, ValueError... as the plugin raises them
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise InputError(f"{path}: not a readable video ({lines[-1] if lines else type(e).__name__})") from None


def check_ffmpeg() -> None:
    """One line when no ffmpeg can be found (the imageio-ffmpeg wheels ship one; some platforms have none)."""
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise InputError("reading videos needs ffmpeg: install it, or set IMAGEIO_FFMPEG_EXE to its path "
                         "(only .gif files are read without it)") from None


def raw_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video as decoded, (H,W,3) uint8, one at a time."""
    import imageio
    import imageio.v3 as iio

    with video_errors(path):
        if path.suffix.lower() == ".gif":
            yield from iio.imiter(path, plugin="pillow", mode="RGB")
        else:
            with imageio.get_reader(path, format="FFMPEG", output_params=_FFMPEG_OUTPUT) as reader:
                yield from reader


def count_frames(path: Path) -> int:
    """The number of frames of a video (ffmpeg decodes it without handing the frames over)."""
    import imageio

    with video_errors(path):
        if path.suffix.lower() == ".gif":
            count = sum(1 for _ in raw_frames(path))
        else:
            with imageio.get_reader(path, format="FFMPEG", output_params=_FFMPEG_OUTPUT) as reader:
                count = reader.count_frames()
    if count < 1:
        raise InputError(f"{path}: holds no frames")
    return count


def square_frame(frame: np.ndarray, resolution: int) -> np.ndarray:
    """(H,W,3) uint8 -> (R,R,3) uint8: the centred square, resized."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.asarray(frame)[None, top:top + side, left:left + side, :3]
    return frames_to_uint8(crop, resolution)[0].permute(1, 2, 0).numpy()


def episodes_of(video: Video, resolution: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, (n,R,R,3) frames) of each episode cut from a video read a frame at a time."""
    frames = (square_frame(f, resolution) for f in raw_frames(video.path))
    start = 0
    # one frame more than counted when taken whole, so that a video decoding to more frames is caught
    while chunk := list(islice(frames, max_frames or video.frames + 1)):
        if start + len(chunk) > video.frames:
            raise InputError(f"{video.path}: decoding gave more than the {video.frames} frames counted; "
                             "re-encode it at a constant frame rate")
        yield start, np.stack(chunk)
        start += len(chunk)
    if start != video.frames:
        raise InputError(f"{video.path}: decoding gave {start} of the {video.frames} frames counted; "
                         "re-encode it at a constant frame rate")


def check_episode_size(video: Video, resolution: int, max_frames: int | None) -> None:
    """Refuse a video whose episodes would be too large to load (``come.data.episodes.MAX_EPISODE_BYTES``)."""
    frames = min(video.frames, max_frames or video.frames)
    size = frames * resolution * resolution * 3
    if size > MAX_EPISODE_BYTES:
        raise InputError(f"{video.path}: {frames} frames at {resolution}x{resolution} take {size / 2**30:.1f} GiB in "
                         f"one episode, more than the {MAX_EPISODE_BYTES / 2**30:.0f} GiB an episode may take; cut it "
                         "with --max-frames")


def episode_count(videos: list[Video], max_frames: int | None) -> int:
    return sum(math.ceil(v.frames / max_frames) if max_frames else 1 for v in videos)


def write_split(folder: Path, videos: list[Video], settings: dict, bar: tqdm) -> dict:
    """Write the episodes of ``videos`` into a prepared ``folder``, then its final ``meta.json``."""
    sources = []
    for video in videos:
        for start, image in episodes_of(video, settings["resolution"], settings["max_frames"]):
            name = f"ep_{len(sources):05d}.npz"
            arrays = {key: values[start:start + len(image)] for key, values in video.arrays.items()}
            save_episode(folder / name, {"image": image, **arrays})
            sources.append({"episode": name, "video": video.path.name, "start": start, "frames": len(image)})
            bar.update(len(image))
    counts = {"videos": len(videos), "episodes": len(sources), "frames": sum(s["frames"] for s in sources)}
    write_meta(folder, {**settings, **counts, "sources": sources, "complete": True})
    return {"folder": str(folder), **counts}
