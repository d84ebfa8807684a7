"""The published datasets read as downloaded: DMLab and Minecraft in TECO's layout, RealEstate10K in DFoT's, RECON
in NWM's. Each is written here in its own layout (tiny frames, few steps), trained and evaluated through the command
line; actions and poses are checked on motions computed by hand; RECON's pickles are read only when allowed."""

import json
import math
import pickle

import imageio
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from come.cli import app
from come.data.clips import pose_track
from come.data.episodes import EpisodeError, episode_files, has_split, load_episode

RNG = np.random.default_rng(0)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The one ``error:`` line of a command refused as bad input."""
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    return errors[0]


def frames(length: int, size: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (length, size, size, 3), dtype=np.uint8)


def train_and_evaluate(data, preset, episode, tmp_path, *extra):
    """Two training steps, a rollout of the test split and a sample, all through the command line."""
    run = tmp_path / "run"
    result = invoke("train", "--data", data, "--out", run, "--preset", preset, "--steps", 2, "--batch-size", 2,
                    "--precision", "fp32", *extra)
    assert result.exit_code == 0, result.output
    scores = tmp_path / "rollouts.json"
    result = invoke("eval", "rollouts", "--ckpt", run, "--data", data, "--episodes", 1, "--frames", 1,
                    "--ddim-steps", 2, "--device", "cpu", "--json", scores, *extra)
    assert result.exit_code == 0, result.output
    assert json.loads(scores.read_text())["episodes"] == 1
    out = tmp_path / "sample.mp4"
    result = invoke("sample", "--ckpt", run, "--episode", episode, "--frames", 1, "--ddim-steps", 2, "--device", "cpu",
                    "--out", out, *extra)
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.with_suffix(".json").read_text())["psnr"]) == 1


# --- TECO: DMLab and Minecraft -------------------------------------------------------------------------------------

def write_dmlab(root, length: int = 10) -> None:
    """dmlab/{train,test}/<worker>/<episode>.npz with video (T,H,W,3) uint8 and actions (T,) ids 0-2."""
    for split, worker in (("train", "0"), ("train", "1"), ("test", "0")):
        folder = root / split / worker
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "000000.npz", video=frames(length),
                            actions=RNG.integers(0, 3, length).astype(np.int32))


def write_minecraft(root, length: int = 20) -> None:
    """minecraft/{train,test}/<worker>/<episode>.mp4 with the ids beside it: 0 for the start frame, then 1-3."""
    for split, name in (("train", "000000"), ("train", "000001"), ("test", "000000")):
        folder = root / split / "0"
        folder.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(folder / f"{name}.mp4", frames(length), fps=10, macro_block_size=1)
        ids = np.concatenate([[0], RNG.integers(1, 4, length - 1)]).astype(np.int32)
        np.savez_compressed(folder / f"{name}.npz", actions=ids)


def test_dmlab_in_teco_layout_trains_and_evaluates(tmp_path):
    data = tmp_path / "dmlab"
    write_dmlab(data)
    files = episode_files(data, "train")
    assert [f.relative_to(data).as_posix() for f in files] == ["train/0/000000.npz", "train/1/000000.npz"]
    ep = load_episode(files[0])
    stored = np.load(files[0])
    assert np.array_equal(ep["image"], stored["video"])
    assert ep["action"].shape == (10, 3) and np.array_equal(ep["action"].argmax(1), stored["actions"])
    train_and_evaluate(data, "dmlab-tiny", data / "test" / "0" / "000000.npz", tmp_path)


def test_minecraft_in_teco_layout_trains_and_evaluates(tmp_path):
    data = tmp_path / "minecraft"
    write_minecraft(data)
    path = data / "train" / "0" / "000001.npz"
    ep = load_episode(path)
    ids = np.load(path)["actions"]
    assert ep["image"].shape == (20, 16, 16, 3)
    assert ep["action"].shape == (20, 4) and np.array_equal(ep["action"].argmax(1), ids)
    # one id more than frames: the start frame is not in the video, its id goes
    np.savez_compressed(path, actions=np.concatenate([[0], ids]).astype(np.int32))
    assert np.array_equal(load_episode(path)["action"], ep["action"])
    train_and_evaluate(data, "minecraft-tiny", data / "test" / "0" / "000000.npz", tmp_path)


def test_a_teco_folder_out_of_layout_is_one_line_naming_the_file(tmp_path):
    data = tmp_path / "dmlab"
    write_dmlab(data)
    bad = data / "train" / "0" / "000000.npz"
    np.savez_compressed(bad, actions=np.zeros(10, np.int32))
    with pytest.raises(EpisodeError, match=r"000000.npz: no 'video' array \(DMLab\) and no 000000.mp4 beside it"):
        load_episode(bad)
    np.savez_compressed(bad, video=frames(10), actions=np.full(10, 3, np.int32))
    with pytest.raises(EpisodeError, match=r"000000.npz: action id 3 \(frame 0\) is not in 0-2"):
        load_episode(bad)
    np.savez_compressed(bad, video=frames(10), actions=np.zeros(7, np.int32))
    with pytest.raises(EpisodeError, match="7 actions for 10 frames"):
        load_episode(bad)
    result = invoke("train", "--data", tmp_path / "dmlab", "--out", tmp_path / "run", "--preset", "dmlab-tiny",
                    "--steps", 1)
    assert "7 actions for 10 frames" in error_line(result)


# --- RealEstate10K in DFoT's layout --------------------------------------------------------------------------------

def camera_path(steps: int, forward: float = 0.1, turn: float = 0.2, moving: int = 3) -> np.ndarray:
    """(T, 18) DFoT cameras of a camera moving ``forward`` along its z ``moving`` times, then turning ``turn``
    radians about its y axis: intrinsics, two zeros, the world-to-camera matrix row by row."""
    cam_to_world = [np.eye(4)]
    for t in range(1, steps):
        step = np.eye(4)
        if t <= moving:
            step[2, 3] = forward
        else:
            c, s = math.cos(turn), math.sin(turn)
            step[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        cam_to_world.append(cam_to_world[-1] @ step)
    world_to_camera = np.linalg.inv(np.stack(cam_to_world))[:, :3].reshape(steps, 12)
    intrinsics = np.tile([0.5, 0.9, 0.5, 0.5, 0.0, 0.0], (steps, 1))
    return np.concatenate([intrinsics, world_to_camera], axis=1)


def write_re10k(root, length: int = 6) -> None:
    """re10k/{training,test}_poses/<clip>.pt with {training,test}_64/<clip>.npz; test clips also as _256 .mp4."""
    for split, clips in (("training", ("a", "b")), ("test", ("c",))):
        for name in ("poses", "64"):
            (root / f"{split}_{name}").mkdir(parents=True, exist_ok=True)
        for clip in clips:
            torch.save(torch.tensor(camera_path(length), dtype=torch.float32), root / f"{split}_poses" / f"{clip}.pt")
            np.savez_compressed(root / f"{split}_64" / f"{clip}.npz", video=frames(length).transpose(0, 3, 1, 2))
    (root / "test_256").mkdir()
    imageio.mimwrite(root / "test_256" / "c.mp4", frames(length, 24), fps=10, macro_block_size=1)


def test_re10k_cameras_become_each_frames_motion_from_the_one_before(tmp_path):
    write_re10k(tmp_path)
    ep = load_episode(tmp_path / "training_poses" / "a.pt")
    stored = np.load(tmp_path / "training_64" / "a.npz")["video"]
    assert np.array_equal(ep["image"], stored.transpose(0, 2, 3, 1))
    expected = np.zeros((6, 6))
    expected[1:4, 2] = 0.1  # forward: +z of the camera before
    expected[4:, 4] = 0.2  # turning about its y axis
    np.testing.assert_allclose(ep["action"], expected, atol=1e-6)
    assert ep["intrinsics"].shape == (6, 4) and ep["extrinsics"].shape == (6, 3, 4)
    # the smallest stored size at least the model's: the 64 .npz for a 32x32 model, the 256 .mp4 for a 128 one
    clip = tmp_path / "test_poses" / "c.pt"
    assert load_episode(clip, 32)["image"].shape[1:3] == (16, 16)
    assert load_episode(clip, 128)["image"].shape[1:3] == (24, 24)
    assert [p.name for p in episode_files(tmp_path, "train")] == ["a.pt", "b.pt"]


def test_re10k_in_dfot_layout_trains_and_evaluates(tmp_path):
    data = tmp_path / "re10k"
    write_re10k(data)
    train_and_evaluate(data, "re10k-tiny", data / "test_poses" / "c.pt", tmp_path)


def test_a_re10k_clip_without_frames_or_with_too_few_is_one_line(tmp_path):
    write_re10k(tmp_path)
    (tmp_path / "training_64" / "b.npz").unlink()
    with pytest.raises(EpisodeError, match=r"b.pt: no frames for this clip \(expected training_64/b.npz or"):
        load_episode(tmp_path / "training_poses" / "b.pt")
    np.savez_compressed(tmp_path / "training_64" / "b.npz", video=frames(4).transpose(0, 3, 1, 2))
    with pytest.raises(EpisodeError, match="b.npz: 4 frames for the 6 cameras of b.pt"):
        load_episode(tmp_path / "training_poses" / "b.pt")
    torch.save({"not": "cameras"}, tmp_path / "training_poses" / "b.pt")
    with pytest.raises(EpisodeError, match=r"b.pt: expected a \(T, 18\) tensor of cameras, got dict"):
        load_episode(tmp_path / "training_poses" / "b.pt")


# --- RECON in NWM's layout -----------------------------------------------------------------------------------------

def robot_path() -> tuple[np.ndarray, np.ndarray]:
    """Starting at (1, 2) facing +y: 0.5 m forward three times, turning 0.3 rad left twice, 0.5 m forward."""
    position, yaw = [np.array([1.0, 2.0])], [math.pi / 2]
    for step, turn in ((0.5, 0), (0.5, 0), (0.5, 0), (0, 0.3), (0, 0.3), (0.5, 0)):
        yaw.append(yaw[-1] + turn)
        position.append(position[-1] + step * np.array([math.cos(yaw[-1]), math.sin(yaw[-1])]))
    return np.stack(position), np.array(yaw)


def write_recon(root, names=("t0", "t1", "t2")) -> None:
    """recon/<trajectory>/{0..T-1}.jpg + traj_data.pkl, and data_split.py's train/ and test/ traj_names.txt."""
    position, yaw = robot_path()
    for name in names:
        (root / name).mkdir(parents=True)
        for t in range(len(yaw)):
            Image.fromarray(RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(root / name / f"{t}.jpg")
        with open(root / name / "traj_data.pkl", "wb") as f:
            pickle.dump({"position": position, "yaw": yaw}, f)
    for split, listed in (("train", names[:-1]), ("test", names[-1:])):
        (root / split).mkdir()
        (root / split / "traj_names.txt").write_text("".join(f"{n}\n" for n in listed))


def test_recon_actions_are_the_robots_motion_in_its_own_frame_and_the_pose_is_planar(tmp_path):
    write_recon(tmp_path)
    with pytest.warns(UserWarning, match="a pickle runs code from its file"):
        ep = load_episode(tmp_path / "t0", allow_pickle=True)
    assert ep["image"].shape == (7, 16, 16, 3)  # each 20x16 jpg's centred square
    expected = [[0, 0, 0], [0.5, 0, 0], [0.5, 0, 0], [0.5, 0, 0], [0, 0, 0.3], [0, 0, 0.3], [0.5, 0, 0]]
    np.testing.assert_allclose(ep["action"], expected, atol=1e-6)
    last = [1.5 + 0.5 * math.cos(0.6), 0.5 * math.sin(0.6), math.cos(0.6), math.sin(0.6)]
    pose = pose_track(ep, "planar").numpy()
    np.testing.assert_allclose(pose[[0, 3, 5, 6]], [[0, 0, 1, 0], [1.5, 0, 1, 0],
                                                    [1.5, 0, math.cos(0.6), math.sin(0.6)], last], atol=1e-6)
    assert [p.name for p in episode_files(tmp_path, "train")] == ["t0", "t1"]
    assert [p.name for p in episode_files(tmp_path, "test")] == ["t2"] and has_split(tmp_path, "test")


def test_recon_in_nwm_layout_trains_and_evaluates_with_pickles_allowed(tmp_path):
    data = tmp_path / "recon"
    write_recon(data)
    train_and_evaluate(data, "recon-tiny", data / "t2", tmp_path, "--allow-pickle")


def test_recon_pickles_are_refused_without_the_flag_and_nothing_in_them_runs(tmp_path):
    write_recon(tmp_path / "recon")
    marker = tmp_path / "ran"

    class RunsCode:  # unpickled, it would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tmp_path / "recon" / "t0" / "traj_data.pkl", "wb") as f:
        pickle.dump(RunsCode(), f)
    with pytest.raises(EpisodeError, match="traj_data.pkl: a pickle, and unpickling runs code from the file; if you "
                                           r"trust it, allow it with --allow-pickle \(allow_pickle=True\)"):
        load_episode(tmp_path / "recon" / "t0")
    result = invoke("train", "--data", tmp_path / "recon", "--out", tmp_path / "run", "--preset", "recon-tiny",
                    "--steps", 1)
    assert "--allow-pickle" in error_line(result)
    assert not marker.exists()


def test_a_recon_trajectory_missing_a_frame_is_one_line(tmp_path):
    write_recon(tmp_path)
    (tmp_path / "t1" / "4.jpg").unlink()
    with pytest.raises(EpisodeError, match=r"t1/4.jpg: frame 4 of the 7 poses of traj_data.pkl is missing"):
        load_episode(tmp_path / "t1", allow_pickle=True)


def test_a_folder_in_no_layout_says_so(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    result = invoke("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--preset", "dmlab-tiny")
    assert "no .npz episodes in this folder, nor a published dataset's layout (docs/datasets.md)" in error_line(result)
