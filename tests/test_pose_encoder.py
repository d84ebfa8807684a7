"""The SLTM's pose encoder: dead reckoning, training with `come train`, and `come eval pose`,
on synthetic poses whose motion the actions decide."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from come.checkpoint import CheckpointError, load_model
from come.cli import app
from come.data import maze
from come.data.clips import absolute_pose, relative_motion
from come.data.episodes import save_episode
from come.models.pose_encoder import PoseEncoder, PoseEncoderConfig, infer_track, integrate_motion, to_absolute_pose
from come.presets import train_config
from come.protocols.pose import evaluate_pose, track_errors, true_track
from come.train import train

FORWARD, LEFT, RIGHT = 1, 2, 3  # Memory Maze action ids
STEP, TURN = 0.25, 0.35


def synthetic_episode(seed: int, T: int = 48, size: int = 9) -> dict:
    """An episode in the Memory Maze format on synthetic poses: forward moves STEP cells, the turns
    turn by TURN radians; the frame is a pattern drawn from the pose."""
    rng = np.random.default_rng(seed)
    ep = {k: np.zeros(shape, dt) for k, (shape, dt) in maze.episode_spec(f"{size}x{size}", T - 1).items()}
    ids = rng.choice([FORWARD, LEFT, RIGHT], size=T, p=[0.5, 0.25, 0.25])
    pos, yaw = np.array([4.5, 4.5]), rng.uniform(-math.pi, math.pi)
    u = np.linspace(0, 2 * math.pi, 64)
    for t in range(T):
        if t > 0:
            ep["action"][t, ids[t]] = 1.0
            if ids[t] == FORWARD:
                pos = pos + STEP * np.array([math.cos(yaw), math.sin(yaw)])
            else:
                yaw += TURN if ids[t] == LEFT else -TURN
        ep["agent_pos"][t], ep["agent_dir"][t] = pos, (math.cos(yaw), math.sin(yaw))
        pattern = np.sin(u[:, None] * 2 + pos[0] + 2 * yaw) + np.cos(u[None, :] * 3 + pos[1])
        ep["image"][t] = (127 + 60 * pattern)[..., None].astype(np.uint8)
    ep["maze_layout"][:] = 1
    return ep


@pytest.fixture(scope="module")
def synthetic_maze(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic-maze")
    for split, n, offset in (("train", 6, 0), ("eval", 2, 100)):
        for i in range(n):
            save_episode(root / split / f"ep_{i:05d}.npz", synthetic_episode(offset + i))
    return root


def test_integration_inverts_relative_motion_and_matches_the_absolute_pose():
    ep = synthetic_episode(3, T=40)
    for skip in (1, 3):
        truth = true_track(ep, skip)
        track = integrate_motion(torch.from_numpy(relative_motion(ep, skip)).double(), torch.from_numpy(truth[0]))
        np.testing.assert_allclose(track[:, :2].numpy(), truth[:, :2], atol=1e-5)
        np.testing.assert_allclose(np.cos(track[:, 2].numpy()), np.cos(truth[:, 2]), atol=1e-5)
        np.testing.assert_allclose(to_absolute_pose(track, 9).numpy(), absolute_pose(ep, skip), atol=1e-5)
    batched = integrate_motion(torch.zeros(2, 5, 3), torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]]))
    assert batched.shape == (2, 5, 3) and torch.equal(batched[0, -1], torch.tensor([1.0, 2.0, 0.5]))


def test_encoder_shapes_and_long_episodes_in_chunks():
    torch.manual_seed(0)
    enc = PoseEncoder(PoseEncoderConfig(width=8, hidden=16)).eval()
    frames, action = torch.rand(2, 5, 3, 32, 32) * 2 - 1, torch.zeros(2, 5, 6)
    motion = enc(frames, action)
    assert motion.shape == (2, 5, 3) and motion[:, 0].abs().max() == 0
    # a whole episode in overlapping chunks gives the same track as one pass
    start = torch.tensor([4.0, 4.0, 0.3])
    whole = integrate_motion(enc(frames[:1], action[:1])[0], start)
    torch.testing.assert_close(infer_track(enc, frames[0], action[0], start, chunk=2), whole)
    with pytest.raises(ValueError, match="divisible by 8"):
        PoseEncoderConfig(resolution=30)


def test_track_errors_with_evo():
    pytest.importorskip("evo")
    truth = np.stack([np.arange(20.0), np.zeros(20), np.zeros(20)], axis=1)
    assert track_errors(truth, truth, delta=5) == pytest.approx({"ate": 0, "rpe": 0, "heading_deg": 0}, abs=1e-9)
    shifted = truth + np.array([0.0, 1.0, 0.0])
    assert track_errors(truth, shifted, delta=5)["ate"] == pytest.approx(1.0)
    drifting = truth.copy()
    drifting[:, 0] *= 1.1  # 10% too far every step: RPE over 5 frames is 0.5
    errors = track_errors(truth, drifting, delta=5)
    assert errors["rpe"] == pytest.approx(0.5) and errors["ate"] > 0.5


def test_come_train_learns_synthetic_motion(synthetic_maze, tmp_path):
    pytest.importorskip("evo")
    cfg = train_config("test-pose", steps=150, batch_size=16, lr=3e-3, ckpt_every=150, sample_every=150, log_every=50)
    summary = train(cfg, synthetic_maze, tmp_path / "pose", progress=False)
    losses = summary["losses"]
    assert np.mean(losses[-30:]) < 0.2 * np.mean(losses[:30])
    log = [json.loads(line) for line in (tmp_path / "pose" / "log.jsonl").read_text().splitlines()]
    assert any("track_rmse" in r for r in log)

    result = evaluate_pose(tmp_path / "pose", synthetic_maze, episodes=2, delta=5, out=tmp_path / "out",
                           progress=False)
    enc, still = result["summary"]["encoder"], result["summary"]["standing_still"]
    assert enc["ate"]["mean"] < 0.5 * still["ate"]["mean"]
    assert enc["rpe"]["mean"] < 0.3 * still["rpe"]["mean"]
    assert (tmp_path / "out" / "pose_tracks.png").stat().st_size > 0

    untrained = PoseEncoder(PoseEncoderConfig(**cfg.model)).eval()  # the same protocol, before training
    ep = synthetic_episode(100)
    truth = true_track(ep)
    frames = torch.from_numpy(ep["image"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    frames = torch.nn.functional.interpolate(frames, size=(32, 32), mode="area")
    before = infer_track(untrained, frames, torch.from_numpy(ep["action"]).float(), torch.from_numpy(truth[0]).float())
    assert result["per_episode"][0]["encoder"]["ate"] < 0.5 * track_errors(truth, before.double().numpy(), 5)["ate"]

    # a world-model command refuses the pose run, and the pose protocol refuses a world model
    with pytest.raises(CheckpointError, match="pose-encoder run; a dit run is needed"):
        load_model(tmp_path / "pose")
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "pose", "--ckpt", str(tmp_path / "pose"), "--data", str(synthetic_maze),
                              "--episodes", "1", "--delta", "5", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "ATE" in res.output and json.loads((tmp_path / "r.json").read_text())["episodes"] == 1


def test_eval_pose_refuses_a_world_model(micro_run, cards_data):
    res = CliRunner().invoke(app, ["eval", "pose", "--ckpt", str(micro_run), "--data", str(cards_data)])
    assert res.exit_code == 2 and "is a dit run; a pose-encoder run is needed" in res.output
