"""Planning on Memory Maze: the CEM refit, the motion model, the real-environment harness, `come eval plan`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from come.checkpoint import save_config, save_weights
from come.cli import app
from come.data.episodes import episode_files, load_episode
from come.models.dit import DiTConfig
from come.presets import TrainConfig
from come.protocols.planning import MOTION, CEMSettings, cem, refit, sample_sequences
from come.protocols.pose import true_track

from tiny import tiny_dit


def test_cem_concentrates_on_the_sequence_the_score_rewards():
    target = np.array([1, 4, 2, 5, 0, 3])
    seen = []

    def rollout(actions, iteration):  # a fake world: the "frames" are the actions themselves
        seen.append(len(actions))
        return actions

    found = cem(rollout, lambda rolled: (rolled != target).sum(axis=1),
                CEMSettings(candidates=48, elites=6, horizon=len(target), iterations=6), seed=0)
    assert seen == [48] * 6  # every candidate of an iteration in one call
    assert found.actions.tolist() == target.tolist() and found.cost == 0
    assert (found.probs[np.arange(len(target)), target] > 0.8).all()
    # the mean cost falls from chance (5 of 6 steps wrong) as the distribution concentrates
    assert found.costs[0].mean() > 4 and found.costs[-1].mean() < 1.5


def test_refit_takes_the_elites_frequencies_and_sampling_follows_the_distribution():
    probs = np.full((2, 3), 1 / 3)
    elites = np.array([[0, 2], [0, 2], [1, 2], [0, 2]])
    assert np.allclose(refit(elites, probs, 0.0), [[0.75, 0.25, 0], [0, 0, 1]])
    assert np.allclose(refit(elites, probs, 0.5), [[0.75 / 2 + 1 / 6, 0.25 / 2 + 1 / 6, 1 / 6], [1 / 6, 1 / 6, 4 / 6]])
    drawn = sample_sequences(np.array([[0.0, 1.0, 0.0], [0.2, 0.0, 0.8]]), 4000, np.random.default_rng(0))
    assert (drawn[:, 0] == 1).all() and abs((drawn[:, 1] == 2).mean() - 0.8) < 0.03 and (drawn[:, 1] != 1).all()


def test_the_motion_model_follows_the_recorded_poses_of_real_walks(maze_walks):
    """Dead reckoning from the first true pose with the recorded actions stays within 0.25 cells and 6 degrees
    of the recorded track over each 20-step walk; one step from a true pose within 0.06 cells and 2.5 degrees."""
    for path in episode_files(maze_walks, "test"):
        ep = load_episode(path)
        track, actions, layout = true_track(ep), ep["action"].argmax(1), ep["maze_layout"][0]
        reckoned = MOTION.integrate(layout, track[:1], actions[None, 1:])[0]
        turn = np.degrees(np.abs((reckoned[:, 2] - track[:, 2] + np.pi) % (2 * np.pi) - np.pi))
        assert np.linalg.norm(reckoned[:, :2] - track[:, :2], axis=1).max() < 0.25 and turn.max() < 6
        one = np.stack([MOTION.integrate(layout, track[: t + 1], actions[None, t + 1: t + 2])[0, -1]
                        for t in range(len(track) - 1)])
        assert np.linalg.norm(one[:, :2] - track[1:, :2], axis=1).max() < 0.06
        assert np.degrees(np.abs((one[:, 2] - track[1:, 2] + np.pi) % (2 * np.pi) - np.pi)).max() < 2.5


def test_walls_stop_the_dead_reckoned_agent():
    layout = np.ones((3, 3), np.uint8)  # one room; outside is wall
    start = np.array([[1.5, 1.5, 0.0]])  # facing +x, 1.5 cells from the outer wall
    track = MOTION.integrate(layout, start, np.full((1, 30), 1))[0]
    assert track[-1, 0] == pytest.approx(3 - MOTION.radius) and track[-1, 1] == pytest.approx(1.5)


def test_the_replayed_maze_and_the_oracle_in_the_real_environment(maze_walks):
    """Replaying an episode's actions lands on its recorded poses, restoring returns to that state exactly, and
    the oracle's shortest path reaches goal poses (one behind the agent, facing back)."""
    from come.data.maze_replay import Oracle, ReplayedMaze
    from come.protocols.navigation import NavSettings, dataset_episodes, execute, outcome

    ep = dataset_episodes(maze_walks, 1, 32)[0]
    assert ep.env is not None
    maze = ReplayedMaze(*ep.env, ep.actions, 10, ep.track[10])
    try:
        for _ in range(2):  # the second execution starts from the restored state
            track, seen = execute(maze, ep.actions[11:])
            assert np.allclose(track, ep.track[10:], atol=1e-9)
        settings = NavSettings()
        for goal in (ep.track[20], ep.track[0] + [0, 0, np.pi]):
            oracle, obs = Oracle(ep.layout, goal), maze.restore()
            path = [ep.track[10]]
            for _ in range(40):
                obs = maze.step(oracle.act(obs["agent_pos"], obs["agent_dir"]))
                path.append([*obs["agent_pos"], np.arctan2(obs["agent_dir"][1], obs["agent_dir"][0])])
            result = outcome(np.array(path), goal, settings)
            assert result["success"], result
    finally:
        maze.close()


def _place_run(root):
    """A tiny Memory Maze place-memory run (context 2, 2 views, absolute pose), untrained."""
    cfg = TrainConfig(preset="place", model=DiTConfig(resolution=32, patch=8, width=32, depth=1, heads=2, action_dim=6,
                                                      max_frames=3, views=2).to_dict(),
                      context=2, future=1, dataset="maze", pose="absolute")
    save_config(root, cfg)
    save_weights(root / "model.safetensors", tiny_dit(3, jitter=0.05, **cfg.model))
    return root


def test_eval_plan_end_to_end(maze_walks, tmp_path):
    run = _place_run(tmp_path / "place")
    res = CliRunner().invoke(app, [
        "eval", "plan", "--ckpt", str(run), "--data", str(maze_walks), "--episodes", "1", "--windows", "2",
        "--variants", "base,place,ltm,come", "--come", "place", "--horizon", "2", "--candidates", "3", "--elites", "1",
        "--iterations", "2", "--replan-every", "1", "--budget", "3", "--min-gap", "4", "--ddim-steps", "1",
        "--memorize-steps", "1", "--rank", "2", "--json", str(tmp_path / "plan.json"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "one CEM iteration" in res.output and "(oracle)" in res.output
    result = json.loads((tmp_path / "plan.json").read_text())
    assert result["windows"] == result["closed_loop"] == 2
    assert list(result["variants"]) == ["base", "place", "ltm", "come"]
    for v in result["variants"]:
        scores = result["variants"][v]
        for key in ("ate", "rpe", "final_distance", "success"):
            assert np.isfinite(scores[key]["mean"]) and len(scores[key]["ci95"]) == 2 and scores[key]["n"] == 2
        assert result["timing"][v]["candidates"] == 3
    assert result["variants"]["come"] == result["variants"]["place"]  # come composes the place memory alone here
    assert "success_against_base" not in result["variants"]["base"]
    for v in ("place", "ltm"):
        paired = result["variants"][v]["success_against_base"]
        wins = [(r["variants"][v]["success"], r["variants"]["base"]["success"]) for r in result["per_window"]]
        assert (paired["ahead"], paired["behind"]) == (wins.count((True, False)), wins.count((False, True)))
    assert "only the base reached" in res.output
    for row in result["per_window"]:
        assert row["goal"] - row["start"] == 2 and row["start"] >= 4
        assert len(row["variants"]["ltm"]["actions"]) == 2 and row["variants"]["base"]["plans"] == 3
    assert set(result["references"]) == {"random", "oracle"} and "ate" in result["references"]["random"]
    for name in ("trajectories.png", "plan_00.mp4", "plan_00.gif"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_eval_plan_refuses_a_replan_period_beyond_the_horizon(tmp_path):
    run = _place_run(tmp_path / "place")
    res = CliRunner().invoke(app, ["eval", "plan", "--ckpt", str(run), "--data", str(tmp_path), "--horizon", "2",
                                   "--replan-every", "3"])
    assert res.exit_code == 2 and "--replan-every" in res.output
