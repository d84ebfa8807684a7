"""The paper's Table 2 baselines (maze-full, maze-swa, maze-ssm): their networks, their parameter budget, the
causality of the Mamba blocks, and training and sampling them through the command line."""

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from come.checkpoint import build_network, load_model, save_config, save_weights
from come.cli import app
from come.data.episodes import save_episode
from come.datasets import DATASETS
from come.presets import train_config

BASELINES = ("maze-full", "maze-swa", "maze-ssm")


def tiny_model(preset: str) -> dict:
    """The preset's model at test size: its attention pattern and Mamba blocks, narrow and two layers deep."""
    model = {**train_config(preset).model, "width": 32, "heads": 2, "depth": 2}
    model["global_layers"] = [1] if model.get("global_layers") else []
    model["ssm_layers"] = [0] if model.get("ssm_layers") else []
    return model


def jittered(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """``model`` moved off adaLN-Zero's identity start, as training would, so that every block reaches the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def inputs(frames: int, batch: int = 2) -> tuple:
    torch.manual_seed(0)
    return (torch.randn(batch, frames, 3, 32, 32), torch.randint(0, 1000, (batch, frames)),
            torch.nn.functional.one_hot(torch.randint(0, 6, (batch, frames)), 6).float())


@pytest.mark.parametrize("preset", BASELINES)
def test_each_baseline_runs_forward_and_backward_with_the_videodits_inputs(preset):
    cfg = train_config(preset, model=tiny_model(preset))
    torch.manual_seed(0)
    net = jittered(build_network(cfg))
    x, t, a = inputs(cfg.clip_frames)
    out = net(x, t, a, context=cfg.context)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [], missing
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the CPU's training precision where it has AMX
        assert torch.isfinite(net(x, t, a, context=cfg.context)).all()
    assert cfg.dataset == "maze" and cfg.context == 16 and cfg.pose is None


def test_the_baselines_have_the_same_parameter_budget():
    with torch.device("meta"):
        counts = {p: sum(w.numel() for w in build_network(train_config(p)).parameters()) for p in BASELINES}
    assert max(counts.values()) <= 1.1 * min(counts.values()), counts
    assert train_config("maze-swa").model == train_config("maze-stm").model  # the STM's own network
    assert train_config("maze-ssm").model["ssm_layers"] and train_config("maze-full").model.get("window") is None


@pytest.mark.parametrize("block", [1, 2, 4])
def test_a_mamba_block_is_causal_in_frame_order(block):
    """Changing frame k changes the Mamba block's output on frames k and later, never on the frames before."""
    from come.models.ssm import SSMBlock

    torch.manual_seed(0)
    layer = jittered(SSMBlock(16, side=4, block=block)).eval()
    frames, n = 5, 16
    x, c = torch.randn(2, frames * n, 16), torch.randn(2, frames, 16)
    with torch.no_grad():
        before = layer(x, c)
        for k in range(frames):
            changed = x.clone()
            changed[:, k * n : (k + 1) * n] += torch.randn(2, n, 16)  # not a constant, which the norm removes
            after = layer(changed, c)
            assert torch.equal(after[:, : k * n], before[:, : k * n]), k
            assert not torch.allclose(after[:, (k + 1) * n :], before[:, (k + 1) * n :]) or k == frames - 1


def test_the_parallel_scan_gives_the_step_by_step_scans_outputs_and_gradients():
    """mambapy's parallel scan (what the SSM trains with on a CPU) against transformers' reference loop."""
    pytest.importorskip("mambapy")
    from come.models.ssm import SSMBlock

    torch.manual_seed(0)
    fast = jittered(SSMBlock(16, side=4, block=1))
    assert fast.mixer.use_mambapy
    slow = copy.deepcopy(fast)
    slow.mixer.use_mambapy = False
    x, c = torch.randn(2, 5 * 16, 16, requires_grad=True), torch.randn(2, 5, 16)
    out_fast, out_slow = fast(x, c), slow(x, c)
    torch.testing.assert_close(out_fast, out_slow, rtol=1e-4, atol=1e-5)
    grad_fast, grad_slow = (torch.autograd.grad(out.square().sum(), x)[0] for out in (out_fast, out_slow))
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-4, atol=1e-5)


def test_a_saved_mamba_model_loads_to_the_same_outputs(tmp_path):
    cfg = train_config("maze-ssm", model=tiny_model("maze-ssm"))
    net = jittered(build_network(cfg)).eval()
    save_config(tmp_path, cfg)
    save_weights(tmp_path / "model.safetensors", net)
    loaded, loaded_cfg = load_model(tmp_path)
    assert loaded_cfg.model == cfg.model and loaded.config.ssm_layers == [0]
    x, t, a = inputs(cfg.clip_frames)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, a, context=16), net(x, t, a, context=16))


@pytest.fixture(scope="module")
def maze_like(tmp_path_factory):
    """Episodes in the public Memory Maze dataset's format (an agent driving circles): train/ and eval/."""
    from test_maze import _public_episode

    root = tmp_path_factory.mktemp("maze_like")
    for split, count, frames in (("train", 2, 30), ("eval", 1, 48)):
        for i in range(count):
            save_episode(root / split / f"ep_{i:05d}.npz", _public_episode(T=frames, seed=i + 10 * (split == "eval")))
    return root


@pytest.mark.parametrize("preset", BASELINES)
def test_each_baseline_trains_samples_and_evaluates_through_the_command_line(preset, maze_like, tmp_path,
                                                                             monkeypatch):
    quick = dict(model=tiny_model(preset), batch_size=2, warmup=1, log_every=1, sample_steps=2)
    monkeypatch.setitem(DATASETS["maze"].presets, preset, {**DATASETS["maze"].presets[preset], **quick})
    run = tmp_path / "run"
    fp32 = ["--precision", "fp32"]
    res = CliRunner().invoke(app, ["train", "--data", str(maze_like), "--out", str(run), "--preset", preset,
                                   "--steps", "2", *fp32])
    assert res.exit_code == 0, res.output
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2]
    video = tmp_path / "sample.mp4"
    res = CliRunner().invoke(app, ["sample", "--ckpt", str(run), "--episode", str(maze_like / "eval" / "ep_00000.npz"),
                                   "--frames", "3", "--steps", "2", "--out", str(video), *fp32])
    assert res.exit_code == 0, res.output
    assert video.is_file()
    res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", str(run), "--data", str(maze_like), "--variants", "base",
                                   "--protocols", "fixed", "--episodes", "1", "--history", "20", "--frames", "2",
                                   "--windows", "1", "--ddim-steps", "2", "--json", str(tmp_path / "maze.json"),
                                   *fp32])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "maze.json").read_text())["variants"] == ["base"]


def saved_run(root, preset: str, **model) -> str:
    """An untrained run folder of ``preset`` at test size (jittered weights)."""
    cfg = train_config(preset, model={**tiny_model(preset), **model})
    torch.manual_seed(0)
    save_config(root / preset, cfg)
    save_weights(root / preset / "model.safetensors", jittered(build_network(cfg)))
    return str(root / preset)


def test_the_compute_table_times_the_baselines_beside_the_base(maze_like, tmp_path):
    base = saved_run(tmp_path, "maze-tiny", patch=8, max_frames=4)
    runs = [saved_run(tmp_path, p) for p in BASELINES]
    out = tmp_path / "compute.json"
    res = CliRunner().invoke(app, ["bench", "compute", "--ckpt", base, "--data", str(maze_like), "--history", "20",
                                   "--frames", "2", "--variants", "base", "--ranks", "2", "--ddim-steps", "1",
                                   "--baselines", ",".join(runs), "--train-batch", "2", "--precision", "fp32",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["baselines"]
    assert [r["preset"] for r in rows] == ["maze-tiny", *BASELINES] and rows[0]["rollout_x_base"] == 1.0
    assert all(r["train_seconds_per_step"] > 0 and r["rollout_seconds_per_frame"] > 0 for r in rows)
    assert rows[1]["parameters"] == rows[2]["parameters"] != rows[3]["parameters"]
    assert "| model | preset | parameters | training step (batch 2) | rollout per frame |" in res.output
    res = CliRunner().invoke(app, ["bench", "compute", "--ckpt", base, "--data", str(maze_like),
                                   "--baselines", "cards-tiny"])
    assert res.exit_code == 2 and "a dit run of cards" in res.output


def test_eval_maze_rolls_each_baseline_out_as_its_own_base_on_the_same_windows(maze_like, tmp_path):
    base = saved_run(tmp_path, "maze-tiny", patch=8, max_frames=4)
    full = saved_run(tmp_path, "maze-full")
    common = ["--data", str(maze_like), "--variants", "base", "--protocols", "fixed", "--episodes", "1",
              "--history", "20", "--frames", "2", "--windows", "1", "--ddim-steps", "2", "--precision", "fp32"]
    res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", base, "--baselines", full, *common,
                                   "--json", str(tmp_path / "both.json")])
    assert res.exit_code == 0, res.output
    assert "| maze-full |" in res.output
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["baselines"] == ["maze-full"]
    both = both["protocols"]["fixed"]
    res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", full, *common, "--json", str(tmp_path / "alone.json")])
    assert res.exit_code == 0, res.output
    alone = json.loads((tmp_path / "alone.json").read_text())["protocols"]["fixed"]
    assert both["variants"]["maze-full"]["per_window_psnr"] == alone["variants"]["base"]["per_window_psnr"]
    assert both["variants"]["maze-full"]["per_window_psnr"] != both["variants"]["base"]["per_window_psnr"]
    assert "maze-full" in both["vs_base"] and "maze-full" in both["seconds_per_window"]
    res = CliRunner().invoke(app, ["eval", "maze", "--ckpt", base, "--baselines", f"{full},{full}", *common])
    assert res.exit_code != 0 and "already a row" in res.output
