import math

import numpy as np
import pytest
import torch

from come.data import maze
from come.data.clips import ClipDataset, absolute_pose, relative_motion
from come.data.episodes import EpisodeError, episode_files, load_episode, save_episode, split_folder

LAYOUT = np.array(  # [y, x], 1 = free, row 0 at the bottom (Memory Maze's maze_layout)
    [
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1],
        [1, 0, 1, 0, 0],
        [1, 1, 1, 1, 1],
    ],
    np.uint8,
)


def _public_episode(T=41, size="9x9", seed=0) -> dict:
    """An episode in the public offline dataset's format: the agent drives a circle, turning left."""
    rng = np.random.default_rng(seed)
    spec = maze.episode_spec(size, T - 1)
    ep = {k: np.zeros(shape, dt) for k, (shape, dt) in spec.items()}
    ep["image"] = rng.integers(0, 256, ep["image"].shape, dtype=np.uint8)
    yaw = 0.3 + 0.2 * np.arange(T)
    ep["agent_dir"] = np.stack([np.cos(yaw), np.sin(yaw)], -1)
    ep["agent_pos"] = 4.5 + np.cumsum(0.1 * ep["agent_dir"], 0) - 0.1 * ep["agent_dir"][0]
    ids = rng.integers(0, 6, T)
    ep["action"][np.arange(1, T), ids[1:]] = 1.0
    ep["reset"][0] = True
    ep["maze_layout"][:] = 1
    return ep


@pytest.fixture(scope="module")
def maze_data(tmp_path_factory):
    """A tiny folder laid out like the public Memory Maze dataset: train/ and eval/."""
    root = tmp_path_factory.mktemp("maze")
    for split, n in (("train", 3), ("eval", 2)):
        for i in range(n):
            save_episode(root / split / f"2022{split}-{i}-40.npz", _public_episode(seed=i + 10 * (split == "eval")))
    return root


def test_loader_reads_public_layout(maze_data):
    assert split_folder(maze_data, "test") == maze_data / "eval"
    assert [p.parent.name for p in episode_files(maze_data, "test")] == ["eval", "eval"]
    ds = ClipDataset(maze_data, "test", clip_frames=4, resolution=32, frame_skip=2, pose="absolute", action_dim=6)
    ep = ds.episode(0)
    assert ep["frames"].shape == (21, 3, 32, 32) and ep["frames"].abs().max() <= 1
    assert ep["action"].shape == (21, 6) and ep["action"][1:].sum(1).eq(2).all()  # one-hots summed per kept frame
    assert ep["pose"].shape == (21, 4) and ep["pose"].dtype == torch.float32
    data = ClipDataset(maze_data, "train", clip_frames=5, resolution=64, pose="relative")
    batch = data.sample(3, np.random.default_rng(0))
    assert batch["frames"].shape == (3, 5, 3, 64, 64) and batch["pose"].shape == (3, 5, 3)


def test_absolute_pose():
    ep = {"agent_pos": np.array([[0.0, 0.0], [9.0, 4.5]]), "agent_dir": np.array([[1.0, 0.0], [0.0, -1.0]]),
          "maze_layout": np.ones((2, 9, 9), np.uint8)}
    np.testing.assert_allclose(absolute_pose(ep), [[-1, -1, 1, 0], [1, 0, 0, -1]], atol=1e-6)
    ep["maze_layout"] = np.ones((9, 9), np.uint8)  # a layout without the time axis works too
    np.testing.assert_allclose(absolute_pose(ep, skip=2), [[-1, -1, 1, 0]], atol=1e-6)


def test_relative_motion_in_agent_frame():
    # heading +x: forward 0.2, then a step to the left (+y), then a turn across the +-pi seam
    ep = {"agent_pos": np.array([[1.0, 1.0], [1.2, 1.0], [1.2, 1.3], [1.2, 1.3]]),
          "agent_dir": np.array([[1.0, 0.0], [1.0, 0.0], [math.cos(3.1), math.sin(3.1)],
                                 [math.cos(-3.1), math.sin(-3.1)]])}
    rel = relative_motion(ep)
    np.testing.assert_allclose(rel[:3, :2], [[0, 0], [0.2, 0], [0, 0.3]], atol=1e-6)
    np.testing.assert_allclose(rel[:, 2], [0, 0, 3.1, 2 * math.pi - 6.2], atol=1e-6)


@pytest.mark.parametrize("skip", [1, 3])
def test_relative_motion_integrates_back_to_the_path(skip):
    ep = _public_episode(T=31)
    rel = relative_motion(ep, skip)
    pos, yaw = ep["agent_pos"][0].copy(), math.atan2(ep["agent_dir"][0, 1], ep["agent_dir"][0, 0])
    for f, left, dyaw in rel[1:]:  # dead reckoning from the first kept frame
        pos += f * np.array([math.cos(yaw), math.sin(yaw)]) + left * np.array([-math.sin(yaw), math.cos(yaw)])
        yaw += dyaw
    np.testing.assert_allclose(pos, ep["agent_pos"][::skip][-1], atol=1e-5)
    assert len(rel) == len(ep["agent_pos"][::skip])


def test_maze_pose_needs_agent_arrays(cards_data):
    with pytest.raises(EpisodeError, match="pose source 'relative' needs array.*agent_pos, agent_dir"):
        ClipDataset(cards_data, "train", clip_frames=4, pose="relative")


def test_train_reads_a_maze_folder(maze_data, tmp_path):
    from come.presets import train_config
    from come.train import train

    from come.presets import MODEL_PRESETS as PRESETS

    small = {**PRESETS["maze-sltm"], "width": 32, "depth": 1, "heads": 2}  # the spatial expert's preset, shrunk
    cfg = train_config("maze-sltm", model=small, steps=2, batch_size=2, warmup=1, sample_every=2, ckpt_every=2,
                       sample_steps=2)
    assert cfg.pose == "absolute" and cfg.model["pose_dim"] == 4 and cfg.model["action_dim"] == 6
    summary = train(cfg, maze_data, tmp_path / "run", progress=False)
    assert summary["steps"] == 2 and all(np.isfinite(summary["losses"]))
    assert list((tmp_path / "run" / "samples").glob("*.mp4"))


def test_maze_stm_costs_about_the_base_and_trains_on_its_null(maze_data, tmp_path):
    from come.checkpoint import load_model
    from come.models.dit import DiTConfig
    from come.presets import MODEL_PRESETS as PRESETS
    from come.presets import train_config
    from come.train import train

    stm_cfg, base_cfg = train_config("maze-stm"), train_config("maze-place")
    tokens = {name: c.clip_frames * DiTConfig(**c.model).tokens_per_frame for name, c in
              (("stm", stm_cfg), ("base", base_cfg))}
    assert tokens["stm"] <= 1.1 * tokens["base"]  # affordable on a CPU: no more tokens than the base's clip
    assert stm_cfg.context == 16 and stm_cfg.clip_frames <= stm_cfg.model["max_frames"]
    assert stm_cfg.short_context == base_cfg.context and stm_cfg.p_short_context > 0  # its null in composition
    small = {**PRESETS["maze-stm"], "width": 32, "depth": 2, "heads": 2, "global_layers": [1]}
    cfg = train_config("maze-stm", model=small, steps=2, batch_size=2, warmup=1, sample_every=100)
    summary = train(cfg, maze_data, tmp_path / "stm", progress=False)
    assert summary["steps"] == 2 and all(np.isfinite(summary["losses"]))
    assert load_model(tmp_path / "stm")[0].config.window == 4


def test_shortest_path_on_a_hand_made_layout():
    path = maze.shortest_path(LAYOUT, (2, 2), (4, 4))  # (x, y); (4, 3) is a wall
    assert path == [(2, 2), (2, 3), (2, 4), (3, 4), (4, 4)]
    long = maze.shortest_path(LAYOUT, (0, 2), (3, 2))
    assert len(long) == 8 and long[0] == (0, 2) and long[-1] == (3, 2)  # around the wall, never through it
    for (x0, y0), (x1, y1) in zip(long, long[1:]):
        assert abs(x1 - x0) + abs(y1 - y0) == 1 and LAYOUT[y1, x1]
    assert maze.shortest_path(LAYOUT, (0, 0), (1, 1)) is None  # a wall cell cannot be reached


def _drive(layout, explorer, steps, speed=0.2, turn=0.3, radius=0.15):
    """A kinematic stand-in for the ball: turn, then move forward unless the ball would touch a wall."""
    pos, yaw = np.array([0.5, 0.5]), 0.0
    cells, blocked, goals = [], 0, set()
    for _ in range(steps):
        a = explorer.act(pos, (math.cos(yaw), math.sin(yaw)))
        goals.add(explorer.goal)
        yaw += turn * (a in (maze.LEFT, maze.FORWARD_LEFT)) - turn * (a in (maze.RIGHT, maze.FORWARD_RIGHT))
        if a in (maze.FORWARD, maze.FORWARD_LEFT, maze.FORWARD_RIGHT):
            new = pos + speed * np.array([math.cos(yaw), math.sin(yaw)])
            corners = [(new[0] + dx, new[1] + dy) for dx in (-radius, radius) for dy in (-radius, radius)]
            if all(0 <= x < layout.shape[1] and 0 <= y < layout.shape[0] and layout[int(y), int(x)] for x,
                   y in corners):
                pos = new
            else:
                blocked += 1
        cells.append((int(pos[0]), int(pos[1])))
    return cells, blocked, goals


def test_explorer_follows_paths_without_hitting_walls():
    explorer = maze.Explorer(LAYOUT, np.random.default_rng(0), noise=0.0)
    cells, blocked, goals = _drive(LAYOUT, explorer, 600)
    assert blocked == 0  # never steers into a wall
    assert len(goals) >= 8  # reaches target after target
    assert {c for c in cells} == {(int(x), int(y)) for y, x in zip(*np.nonzero(LAYOUT))}  # covers the maze
    for (x0, y0), (x1, y1) in zip(cells, cells[1:]):
        assert abs(x1 - x0) + abs(y1 - y0) <= 1  # moves cell to neighbouring cell, no corner cutting


def test_explorer_noise_and_determinism():
    explorer = maze.Explorer(LAYOUT, np.random.default_rng(0), noise=0.5)
    assert len({explorer.act((0.5, 0.5), (1.0, 0.0)) for _ in range(40)}) > 2  # random actions happen
    a = _drive(LAYOUT, maze.Explorer(LAYOUT, np.random.default_rng(3), noise=0.15), 200)
    b = _drive(LAYOUT, maze.Explorer(LAYOUT, np.random.default_rng(3), noise=0.15), 200)
    assert a == b


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="steps must be between 1 and 1000"):
        maze.generate_dataset(tmp_path, 1, steps=1001, progress=False)
    with pytest.raises(ValueError, match="unknown maze size"):
        maze.generate_dataset(tmp_path, 1, size="10x10", progress=False)
    with pytest.raises(ValueError, match="unknown split"):
        maze.generate_dataset(tmp_path, 1, split="test", progress=False)


def test_cli_bad_input_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from come.cli import app

    def error(*args):
        r = CliRunner().invoke(app, ["data", "maze", "--out", str(tmp_path), *map(str, args)])
        lines = [line for line in r.output.strip().splitlines() if line.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
        return lines[0]

    assert "unknown maze size '10x10'" in error("--size", "10x10")
    assert "steps must be between 1 and 1000" in error("--env-steps", 4000)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "meta.json").write_text('{"generator": "come.data.maze", "seed": 1}')
    assert "meta.json" in error("--seed", 2) and "seed=1 (not 2)" in error("--seed", 2)


def test_generate_with_the_real_environment(maze_walks, tmp_path):
    folder = maze_walks / "eval"
    path = folder / "ep_00000.npz"
    ep = load_episode(path)
    spec = maze.episode_spec("9x9", 20)
    assert set(ep) == set(spec)
    for k, (shape, dtype) in spec.items():
        assert ep[k].shape == shape and ep[k].dtype == dtype, k
    assert ep["reset"].tolist() == [True] + [False] * 20 and not ep["terminal"].any()
    assert (ep["action"][0] == 0).all() and (ep["action"][1:].sum(1) == 1).all()
    layout = ep["maze_layout"][0]
    assert (ep["maze_layout"] == layout).all() and layout[int(ep["agent_pos"][0, 1]), int(ep["agent_pos"][0, 0])]
    assert np.abs(ep["agent_pos"][-1] - ep["agent_pos"][0]).max() > 0.1  # the explorer moved
    np.testing.assert_allclose(np.linalg.norm(ep["agent_dir"], axis=1), 1, atol=1e-6)
    assert ep["image"].std() > 10  # a rendered view, not a blank frame
    assert not (load_episode(folder / "ep_00001.npz")["image"] == ep["image"]).all()  # each index its own walk
    # a re-run skips the finished files (test_crash: a repeat in another process writes the same bytes);
    # other settings are refused
    mtime = path.stat().st_mtime_ns
    maze.generate_dataset(maze_walks, 2, seed=2, steps=20, split="eval", progress=False)
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="seed=2"):
        maze.generate_dataset(maze_walks, 2, seed=6, steps=20, split="eval", progress=False)
    orphan = (str(tmp_path / "orphan"), 5, "eval", 0, "9x9", 3, 0.15, 1)  # its parent is gone (pid 1 adopted it)
    maze._write_episode(orphan)
    assert not (tmp_path / "orphan").exists()
