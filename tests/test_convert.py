"""`come data convert`: a folder of videos with per-frame actions (and poses) becomes a dataset that `come train`
and `come eval rollouts` take; every mismatch of the inputs is one `error:` line and nothing is written."""

import json

import imageio
import numpy as np
import pytest
from typer.testing import CliRunner

from come.cli import app
from come.data.clips import pose_track
from come.data.episodes import load_episode
from come.datasets import DATASETS, DatasetSpec, register_dataset

HEIGHT, WIDTH = 20, 24  # not square: the converter keeps the centred 20x20


def square_frames(length: int) -> np.ndarray:
    """A bright 6x6 square moving one pixel right a frame, rows 6-11, columns 2+t to 7+t."""
    frames = np.zeros((length, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(length):
        frames[t, 6:12, 2 + t:8 + t] = 255
    return frames


def write_video(path, length: int = 12) -> None:
    if path.suffix == ".gif":
        imageio.mimwrite(path, square_frames(length), duration=100, loop=0)
    else:
        imageio.mimwrite(path, square_frames(length), fps=10, macro_block_size=1)


def write_csv(path, rows, header: str | None = None) -> None:
    lines = ([header] if header else []) + [",".join(str(v) for v in np.atleast_1d(row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def convert(*args):
    return invoke("data", "convert", *args)


def centre_column(image: np.ndarray) -> float:
    """The brightness-weighted column of a frame (H,W,3)."""
    weight = image.astype(np.float64).sum(-1).sum(0)
    return float((weight * np.arange(len(weight))).sum() / weight.sum())


def test_action_ids_become_one_hot_and_frames_are_the_videos_centred_squares(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    ids_a, ids_b = np.array([0, 1, 2, 2, 1, 0, 0, 1, 1, 2, 0, 1]), np.array([2, 1, 1, 0, 0, 2, 1, 0, 2])
    write_video(videos / "a.mp4", 12)
    write_csv(videos / "a.csv", ids_a, header="action")  # 12 rows for 12 frames: aligned to frames
    write_video(videos / "b.gif", 10)
    np.save(videos / "b.npy", ids_b)  # 9 rows for 10 frames: one per transition
    result = convert("--videos", videos, "--out", tmp_path / "data", "--resolution", 16, "--test", 1)
    assert result.exit_code == 0, result.output
    assert "actions: one-hot action ids of width 3" in result.stdout

    a = load_episode(tmp_path / "data" / "train" / "ep_00000.npz")
    assert a["image"].shape == (12, 16, 16, 3) and a["image"].dtype == np.uint8
    assert a["action"].dtype == np.float32 and np.array_equal(a["action"], np.eye(3)[ids_a])
    # columns 2+t..7+t of 24, cropped to columns 2..21 and scaled by 16/20: centre 0.8 t + 1.9
    assert np.allclose([centre_column(f) for f in a["image"]], 0.8 * np.arange(12) + 1.9, atol=0.4)
    b = load_episode(tmp_path / "data" / "test" / "ep_00000.npz")
    assert b["image"].shape == (10, 16, 16, 3)
    assert not b["action"][0].any() and np.array_equal(b["action"][1:], np.eye(3)[ids_b])
    assert np.allclose([centre_column(f) for f in b["image"]], 0.8 * np.arange(10) + 1.9, atol=0.4)

    meta = json.loads((tmp_path / "data" / "train" / "meta.json").read_text())
    assert {k: meta[k] for k in ("generator", "split", "resolution", "episodes", "frames", "videos", "action_dim",
                                 "action_kind", "complete")} == {
        "generator": "convert", "split": "train", "resolution": 16, "episodes": 1, "frames": 12, "videos": 1,
        "action_dim": 3, "action_kind": "ids", "complete": True}
    assert meta["source"] == str(videos.resolve())
    assert json.loads((tmp_path / "data" / "test" / "meta.json").read_text())["sources"] == [
        {"episode": "ep_00000.npz", "video": "b.gif", "start": 0, "frames": 10}]

    wider = convert("--videos", videos, "--out", tmp_path / "wider", "--resolution", 16, "--num-actions", 5)
    assert wider.exit_code == 0, wider.output
    assert load_episode(tmp_path / "wider" / "train" / "ep_00001.npz")["action"].shape == (10, 5)


def test_action_vectors_and_poses_cut_into_episodes_of_max_frames(tmp_path):
    videos, actions = tmp_path / "videos", tmp_path / "actions"
    videos.mkdir(), actions.mkdir()
    write_video(videos / "walk.mp4", 12)
    vectors = np.round(np.random.default_rng(0).normal(size=(11, 2)), 3)
    write_csv(actions / "walk.csv", vectors, header="dx,dy")
    poses = np.stack([np.arange(12.0), np.zeros(12), np.linspace(0, np.pi, 12)], axis=1)
    np.save(actions / "walk.pose.npy", poses)
    args = ["--videos", videos, "--actions", actions, "--resolution", 16, "--max-frames", 5]
    result = convert(*args, "--out", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "wrote 3 episodes (12 frames of 1 video)" in result.stdout

    files = sorted((tmp_path / "data" / "train").glob("*.npz"))
    eps = [load_episode(f) for f in files]
    assert [len(ep["image"]) for ep in eps] == [5, 5, 2]
    action = np.concatenate([ep["action"] for ep in eps])
    assert action.dtype == np.float32 and np.allclose(action, np.r_[np.zeros((1, 2)), vectors])
    assert np.allclose(np.concatenate([ep["agent_pos"] for ep in eps]), poses[:, :2])
    heading = np.concatenate([ep["agent_dir"] for ep in eps])
    assert np.allclose(heading, np.stack([np.cos(poses[:, 2]), np.sin(poses[:, 2])], axis=1))
    motion = pose_track(eps[0], "relative").numpy()  # an existing pose source reads them
    assert motion.shape == (5, 3) and np.allclose(motion[1:, 2], np.pi / 11, atol=1e-5)
    meta = json.loads((tmp_path / "data" / "train" / "meta.json").read_text())
    assert [(s["start"], s["frames"]) for s in meta["sources"]] == [(0, 5), (5, 5), (10, 2)]

    again = convert(*args, "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in
                                               sorted((tmp_path / "again" / "train").glob("*.npz"))]


def _case(folder, name):
    """Write the inputs of one bad case into ``folder``; return the options it adds."""
    write_video(folder / "a.mp4", 12)
    write_csv(folder / "a.csv", np.zeros(12, int))
    if name == "no actions":
        (folder / "a.csv").unlink()
    elif name == "no videos":
        (folder / "a.mp4").unlink()
    elif name == "rows":
        write_csv(folder / "a.csv", np.zeros(7, int))
    elif name == "not a number":
        (folder / "a.csv").write_text("action\n0\n1\nleft\n" + "0\n" * 9)
    elif name == "unreadable":
        (folder / "b.mp4").write_bytes(b"not a video at all")
        write_csv(folder / "b.csv", np.zeros(12, int))
    elif name == "widths":
        write_csv(folder / "a.csv", np.zeros((12, 2)))
        write_video(folder / "b.mp4", 12)
        write_csv(folder / "b.csv", np.zeros((12, 3)))
    elif name == "id over --num-actions":
        write_csv(folder / "a.csv", [0] * 4 + [3] + [0] * 7)
        return ["--num-actions", 3]
    elif name == "pose rows":
        write_csv(folder / "a.pose.csv", np.zeros((11, 3)))
    elif name == "test":
        return ["--test", 1]
    return []


BAD = {
    "no videos": ["videos: no videos (.mp4"],
    "no actions": ["a.mp4: no actions for this video", "a.csv or .npy"],
    "rows": ["a.csv: 7 rows of actions for the 12 frames of a.mp4", "give 12, one per frame, or 11"],
    "not a number": ["a.csv, line 4: 'left' is not a number"],
    "unreadable": ["b.mp4: not a readable video"],
    "widths": ["b.csv: 3 action columns, where a.csv has 2"],
    "id over --num-actions": ["a.csv, line 5: action id 3 is not below --num-actions 3"],
    "pose rows": ["a.pose.csv: 11 rows of poses for the 12 frames of a.mp4"],
    "test": ["--test 1: ", "holds 1 video(s); keep at least one for train/"],
}


@pytest.mark.parametrize("name", BAD)
def test_each_mismatch_is_one_error_line_and_nothing_is_written(tmp_path, name):
    videos = tmp_path / "videos"
    videos.mkdir()
    options = _case(videos, name)
    result = convert("--videos", videos, "--out", tmp_path / "data", *options)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output and sum(line.startswith("error:") for line in lines) == 1
    assert lines[-1].startswith("error:") and all(part in lines[-1] for part in BAD[name]), lines[-1]
    assert not (tmp_path / "data").exists()


VIDEOS = DatasetSpec(
    "squares", "a bright square that moves right", actions=("stay", "left", "right"), recipe="maze",
    presets={"squares-micro": dict(model=dict(resolution=16, patch=8, width=32, depth=1, heads=2, max_frames=4),
                                   context=2, future=1, batch_size=4, steps=3, warmup=1, ckpt_every=3,
                                   sample_every=3, log_every=1, sample_steps=2)},
)


@pytest.fixture
def squares_dataset():
    register_dataset(VIDEOS)
    yield VIDEOS
    DATASETS.pop(VIDEOS.name)


def test_converted_videos_train_and_evaluate_through_the_cli(tmp_path, squares_dataset):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        write_video(videos / f"{name}.mp4", 10)
        write_csv(videos / f"{name}.csv", [0] + [2] * 9)
    result = convert("--videos", videos, "--out", tmp_path / "data", "--resolution", 16, "--test", 1)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = invoke("train", "--data", tmp_path / "data", "--out", run, "--preset", "squares-micro",
                    "--precision", "fp32")
    assert result.exit_code == 0, result.output
    scores = tmp_path / "rollouts.json"
    result = invoke("eval", "rollouts", "--ckpt", run, "--data", tmp_path / "data", "--episodes", 1, "--frames", 2,
                    "--ddim-steps", 2, "--device", "cpu", "--json", scores)
    assert result.exit_code == 0, result.output
    assert json.loads(scores.read_text())["episodes"] == 1
