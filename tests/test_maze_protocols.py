"""`come eval maze`: every protocol end to end on two tiny episodes, and the revisit finder."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from come.checkpoint import save_config, save_weights
from come.cli import app
from come.data.episodes import save_episode
from come.errors import InputError
from come.models.dit import DiTConfig
from come.presets import TrainConfig
from come.recipes import RECIPES
from come.protocols.maze import (differences_from_base, load_maze_episode, nearest_pose_frames, revisit_frames,
                                 window_protocol)
from come.world import WorldModel

from test_maze import _public_episode
from tiny import tiny_dit


def test_revisit_frames_are_returns_after_a_gap():
    # out along x for 30 frames, back along the same line facing the other way, then out again
    x = np.concatenate([np.linspace(0, 3, 30), np.linspace(3, 0, 30), np.linspace(0, 3, 30)])
    yaw = np.concatenate([np.zeros(30), np.full(30, math.pi), np.zeros(30)])
    track = np.stack([x, np.zeros(90), yaw], axis=1)
    # the way back faces the other way: not a revisit; the third pass sees again what the first saw
    assert revisit_frames(track, min_gap=40, radius=0.3) == list(range(60, 90))
    assert revisit_frames(track, min_gap=70, radius=0.3) == []  # seen again only ~60 frames later
    # the third pass's points were last seen (within 0.3) 58 frames earlier, its last two 59 and 60
    # (the first pass ends at x=3): a history of 58 frames holds the sightings of frames 60-87 only
    assert revisit_frames(track, min_gap=40, radius=0.3, max_gap=58) == list(range(60, 88))
    assert revisit_frames(track, min_gap=40, radius=0.3, max_gap=57) == []
    standing = np.zeros((200, 3))  # never left: one long visit, no revisit
    assert revisit_frames(standing, min_gap=50) == []
    circle = np.stack([np.cos(np.arange(100) * 0.2), np.sin(np.arange(100) * 0.2), np.arange(100) * 0.2], 1)
    laps = revisit_frames(circle, min_gap=20, radius=0.15)  # one lap is 31.4 frames
    assert 30 <= laps[0] <= 32 and laps == list(range(laps[0], 100))


def _run(root, name, context, future, **model):
    cfg = TrainConfig(preset=name, model=DiTConfig(**{**dict(resolution=32, patch=8, width=32, depth=1, heads=2,
                                                             action_dim=6), **model}).to_dict(),
                      context=context, future=future, dataset="maze",
                      pose="absolute" if model.get("pose_dim") or model.get("views") else None)
    net = tiny_dit(len(name), jitter=0.05, **cfg.model)
    (root / name).mkdir(parents=True)
    save_config(root / name, cfg)
    save_weights(root / name / "model.safetensors", net)
    return root / name


@pytest.fixture(scope="module")
def maze_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("maze-protocols")
    for i in range(2):  # agents driving circles: back at the same pose every ~31 frames
        save_episode(root / "data" / "eval" / f"ep_{i:05d}.npz", _public_episode(T=64, seed=i))
    return {"data": root / "data",
            "base": _run(root, "base", 2, 1, max_frames=3),
            "stm": _run(root, "stm", 6, 1, max_frames=8, window=2, global_layers=[0]),
            "sltm": _run(root, "sltm", 2, 1, max_frames=3, pose_dim=4, pose_in_image=False),
            "place": _run(root, "place", 2, 1, max_frames=3, views=2)}


def test_nearest_pose_frames_recall_the_frame_seen_from_there():
    history = torch.arange(4.0)[:, None, None, None].expand(4, 3, 2, 2)  # frame i is filled with i
    track = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, math.pi], [0.0, 3.0, math.pi / 2]])
    future = np.array([[3.1, 0.1, 0.1],  # near frame 1's place, same heading
                       [2.9, 0.0, -3.1],  # the same place facing back: frame 2 (heading wraps around)
                       [0.2, 2.5, 1.5]])
    got = nearest_pose_frames(history, track, future)
    assert got.shape == (3, 3, 2, 2)
    assert got[:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]


# every expert, two pairs (one named out of the registry's order), the compositions and the baselines
TESTED = ("base", "ltm", "stm", "place", "sltm", "stm+ltm", "place+sltm", "come", "poe", "hg")


def test_every_protocol_end_to_end(maze_runs, tmp_path):
    r = maze_runs
    res = CliRunner().invoke(app, [
        "eval", "maze", "--ckpt", str(r["base"]), "--stm", str(r["stm"]), "--sltm", str(r["sltm"]),
        "--place", str(r["place"]), "--w-place", "1.5", "--variants", ",".join(TESTED), "--come", "ltm,place,sltm",
        "--data", str(r["data"]), "--protocols", "fixed,revisits,streaming,capacity", "--episodes", "2",
        "--history", "32", "--frames", "2", "--horizons", "1", "--memorize-steps", "2", "--rank", "4", "--windows", "1",
        "--min-gap", "20",
        "--iterations", "2", "--capacity-ranks", "2,4", "--capacity-histories", "10,32", "--ddim-steps", "2",
        "--memorize", "batch_size=3, weighting=surprise,p_context_dropout=0.5,lr_schedule=constant,p_pose_dropout=0.3",
        "--updates", "2", "--sltm-null", "pose_drop", "--w-sltm", "1.5",
        "--json", str(tmp_path / "maze.json"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "maze.json").read_text())
    protocols = result["protocols"]
    assert result["variants"] == list(TESTED)
    assert result["place_weight"] == 1.5 and result["place"] == str(r["place"])
    assert result["come_experts"] == ["ltm", "place", "sltm"]
    assert result["memorization"] == {"steps": 2, "lr": 1e-2, "batch_size": 3, "weighting": "surprise",
                                      "boost": 4.0, "p_context_dropout": 0.5, "p_pose_dropout": 0.3,
                                      "lr_schedule": "constant", "context": None, "undo": False, "views": False}
    assert result["sltm_null"] == "pose_drop" and result["sltm_weight"] == 1.5
    for name in ("fixed", "revisits"):
        assert protocols[name]["windows"] == 2
        for v in result["variants"]:
            assert np.isfinite(protocols[name]["variants"][v]["psnr"]["mean"])
        copy = protocols[name]["copy_last_frame"]["per_window_psnr"]
        assert len(copy) == 2 and copy != protocols[name]["variants"]["base"]["per_window_psnr"]
        assert len(protocols[name]["nearest_pose_frame"]["per_window_psnr"]) == 2
        assert set(protocols[name]["horizons"]["1"]["variants"]) == set(result["variants"])
        vs = protocols[name]["vs_base"]
        assert set(vs) == set(result["variants"]) - {"base"} | {"copy_last_frame", "nearest_pose_frame"}
        ltm, base = (protocols[name]["variants"][v]["per_window_psnr"] for v in ("ltm", "base"))
        assert vs["ltm"]["mean"] == pytest.approx(np.mean(np.subtract(ltm, base)))
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "out" / f"{name}_00.mp4").stat().st_size > 0
        assert (tmp_path / "out" / f"{name}_00.gif").stat().st_size > 0
    assert all(s >= 32 for _, s in protocols["revisits"]["starts"])
    curves = protocols["streaming"]["psnr_per_iteration"]
    assert set(curves) == set(result["variants"]) and all(len(c) == 2 for c in curves.values())
    assert protocols["streaming"]["updates"] == 2 and result["ltm_weight"] == 1.0
    assert (tmp_path / "out" / "streaming.png").stat().st_size > 0
    assert len(protocols["capacity"]["grid"]) == 4 and "rank2_history10" in protocols["capacity"]["grid"]
    for shown in ("1 frames predicted", "| come |", "(copy last frame)", "(nearest-pose history frame)", "streaming"):
        assert shown in res.output
    # memory changes the prediction: the LTM differs from the base model alone
    fixed = protocols["fixed"]["variants"]
    assert fixed["ltm"]["per_window_psnr"] != fixed["base"]["per_window_psnr"]
    assert fixed["sltm"]["per_window_psnr"] != fixed["base"]["per_window_psnr"]
    assert fixed["place"]["per_window_psnr"] != fixed["base"]["per_window_psnr"]


def test_eval_maze_bad_input_is_one_line(maze_runs, cards_data, micro_run):
    r = maze_runs

    def error(*args):
        res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", str(r["base"]), "--data", str(r["data"]), *args])
        assert res.exit_code == 2, res.output
        return res.output

    assert "--protocols" in error("--protocols", "fixed,magic")
    assert "--come" in error("--come", "ltm,magic")
    assert "sltm needs the spatial memory model" in error("--variants", "base,sltm")
    assert "place needs the place memory model" in error("--variants", "base,place")
    assert "magic (choose from" in error("--variants", "base,magic")
    assert "takes place views" in error("--place", str(r["sltm"]))
    assert "fewer than history" in error("--history", "500")
    assert "absolute pose" in error("--sltm", str(r["stm"]))
    assert "--memorize: unknown window weighting 'random'" in error("--memorize", "weighting=random")
    assert "--memorize: unknown lr_schedule 'linear'" in error("--memorize", "lr_schedule=linear")
    assert "--memorize: unknown memorization setting(s) learning_rate" in error("--memorize", "learning_rate=1")
    assert "expected a number" in error("--memorize", "lr=fast")
    assert "--memorize-steps" in error("--memorize", "steps=3")
    assert "--sltm-null" in error("--sltm-null", "noise")
    res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", str(micro_run), "--data", str(r["data"])])
    assert res.exit_code == 2 and "is a model of cards; the maze protocol needs one of maze" in res.output


def test_missing_or_corrupt_shipped_weights_are_one_line(maze_runs, tmp_path, monkeypatch):
    import shutil

    import come.demo

    shipped = tmp_path / "maze-place"
    shutil.copytree(maze_runs["place"], shipped)
    (shipped / "model.safetensors").write_bytes(b"not safetensors")
    monkeypatch.setattr(come.demo, "SHIPPED_MAZE", shipped)
    res = CliRunner().invoke(app, ["eval", "maze", "--data", str(maze_runs["data"])])
    assert res.exit_code == 2 and "model.safetensors" in res.output and len(res.output.strip().splitlines()) == 1
    (shipped / "model.safetensors").unlink()
    res = CliRunner().invoke(app, ["eval", "maze", "--data", str(maze_runs["data"])])
    assert res.exit_code == 2 and "model.safetensors" in res.output, res.output


def test_the_cli_memorizes_as_the_protocol_does():
    """One set of memorization settings: the command's defaults are the protocol's."""
    import inspect

    from come.cli import evaluate as cli
    from come.recipes import RECIPES
    from come.protocols.maze import COME_EXPERTS

    def default(option):  # an option declared in the signature, or a plain default beside an Annotated one
        value = inspect.signature(cli.eval_maze).parameters[option].default
        return getattr(value, "default", value)

    assert default("come_experts") == ",".join(COME_EXPERTS)
    assert default("memorize_steps") == RECIPES["maze"].steps and default("memorize") == ""  # the recipe unchanged


def test_a_shorter_horizon_is_scored_on_the_first_frames_of_the_same_rollouts(maze_runs):
    r = maze_runs
    from come.checkpoint import load_model

    cfg = load_model(r["base"])[1]
    episodes = [load_maze_episode(f, cfg) for f in sorted((r["data"] / "eval").glob("*.npz"))]
    memorize = dict(RECIPES["maze"].with_overrides(steps=2, batch_size=2)) | {"seed": 0}

    def scored(frames, horizons=(), ckpt=r["base"]):
        return window_protocol("fixed", lambda rank: WorldModel.from_pretrained(ckpt, place=r["place"], rank=rank,
                                                                                steps=2),
                               4, episodes, [(0, 40), (1, 50)], ("base", "ltm", "place"), 32, frames, 20, memorize,
                               None, False, horizons)

    long, short = scored(3, horizons=(2, 3, 5)), scored(2)
    assert list(long["horizons"]) == ["2"]  # only horizons shorter than the rollout
    for v in ("base", "ltm", "place"):
        assert long["horizons"]["2"]["variants"][v]["per_window_psnr"] == short["variants"][v]["per_window_psnr"]
        assert long["variants"][v]["per_window_psnr"] != short["variants"][v]["per_window_psnr"]
    assert long["horizons"]["2"]["nearest_pose_frame"] == short["nearest_pose_frame"]
    assert long["horizons"]["2"]["vs_base"] == short["vs_base"]
    two_at_once = _run(r["data"].parent, "two-at-once", 2, 2, max_frames=4)
    with pytest.raises(InputError, match="not a multiple of the 2 frames"):
        scored(4, horizons=(3,), ckpt=two_at_once)


def test_lpips_joins_the_scores_where_its_network_is(maze_runs):
    from come.metrics.perceptual import lpips_network
    from come.protocols.maze import _score_rows, score_windows, window_scores

    net, about = lpips_network()
    assert (net is None) == about.startswith("LPIPS left out:")  # here: no torchvision, or no weights

    def stand_in(a, b):  # per-image distance, as the LPIPS network returns
        return (a - b).abs().mean(dim=(1, 2, 3))

    truth = torch.zeros(2, 3, 3, 8, 8)
    preds = {"base": torch.full_like(truth, 0.5), "place": torch.full_like(truth, 0.25)}
    scored = window_scores(preds, {"copy_last_frame": truth, "nearest_pose_frame": truth}, truth, 2, stand_in)
    assert scored["variants"]["base"]["lpips"]["mean"] == pytest.approx(0.5)
    assert scored["variants"]["place"]["lpips"]["mean"] == pytest.approx(0.25)
    assert "LPIPS" in _score_rows(scored)[0] and _score_rows(scored)[2].endswith("0.500 |")
    assert "lpips" not in score_windows(preds["base"], truth)  # no network, no column


def test_differences_from_base_pairs_windows():
    scores = {"base": {"per_window_psnr": [10.0, 12.0, 14.0]}, "place": {"per_window_psnr": [11.0, 12.5, 13.0]}}
    d = differences_from_base(scores)["place"]
    assert d["mean"] == pytest.approx(0.5 / 3) and d["n"] == 3 and d["wins"] == 2
    assert d["ci95"][0] < d["mean"] < d["ci95"][1]
    assert differences_from_base({"place": scores["place"]}) == {}
