import json
import os

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from come.checkpoint import CheckpointError, load_model
from come.cli import app
from come.data.clips import ClipDataset
from come.presets import train_config
from come.train import TrainingDiverged, train


def _weights(run):
    return load_file(str(run / "state.safetensors"))


@pytest.mark.parametrize("stop, stopped_at", [(dict(stop_after=3), 3), (dict(minutes=0), 1)])
def test_a_stopped_run_resumes_bit_for_bit(cards_data, tmp_path, stop, stopped_at):
    """Stopped early (a step count, or a time budget of 0 minutes: after the first step), a run's checkpoint
    resumes to the same loss curve and weights as the uninterrupted run."""
    cfg = train_config("test-micro", steps=6, ckpt_every=3, sample_every=100)
    full = train(cfg, cards_data, tmp_path / "full", progress=False)
    part = train(cfg, cards_data, tmp_path / "part", progress=False, **stop)
    assert part["steps"] == stopped_at
    rest = train(cfg, cards_data, tmp_path / "part", resume=True, progress=False)
    assert rest["steps"] == 6
    assert full["losses"][stopped_at:] == rest["losses"]  # same loss curve as the uninterrupted run
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_state_without_parameter_names_is_refused(cards_data, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    cfg = train_config("test-micro", steps=4, ckpt_every=2, sample_every=100)
    train(cfg, cards_data, tmp_path / "old", progress=False, stop_after=2)
    path = tmp_path / "old" / "state.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    del meta["param_names"]
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="older come.*start a new run"):
        train(cfg, cards_data, tmp_path / "old", resume=True, progress=False)


def test_run_folder_contents(micro_run):
    names = {p.name for p in micro_run.iterdir()}
    assert {"config.json", "model.safetensors", "state.safetensors", "log.jsonl", "tb", "samples"} <= names
    assert list((micro_run / "samples").glob("*.mp4"))
    assert any(p.name.startswith("events") for p in (micro_run / "tb").iterdir())
    assert not [p for p in micro_run.iterdir() if ".tmp" in p.name]
    model, cfg = load_model(micro_run)
    assert cfg.preset == "test-micro" and not model.training
    logged = [json.loads(line) for line in (micro_run / "log.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 1 and "loss" in logged[0]


def test_refuses_to_overwrite_or_resume_nothing(micro_run, cards_data, tmp_path):
    cfg = train_config("test-micro", steps=2)
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg, cards_data, micro_run, progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(cfg, cards_data, tmp_path / "new", resume=True, progress=False)


def test_init_starts_from_another_runs_weights(micro_run, cards_data, tmp_path):
    start, _ = load_model(micro_run)
    cfg = train_config("test-micro", steps=1, lr=1e-12, warmup=1, sample_every=100)
    train(cfg, cards_data, tmp_path / "tuned", init=micro_run, progress=False)
    tuned, _ = load_model(tmp_path / "tuned")
    for (k, a), b in zip(start.state_dict().items(), tuned.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)  # one step at lr 1e-12: the same weights
    other = train_config("test-micro", steps=1, model={**cfg.model, "width": 64})
    with pytest.raises(CheckpointError, match="same model"):
        train(other, cards_data, tmp_path / "other", init=micro_run, progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg, cards_data, tmp_path / "tuned", init=micro_run, resume=True, progress=False)


def test_init_grows_the_context_of_a_trained_model(micro_run, cards_data, tmp_path):
    from come.models.dit import retime_positions

    start, start_cfg = load_model(micro_run)  # test-micro: 2 context + 2 future frames, max_frames 6
    longer = {**start_cfg.model, "max_frames": 8, "window": 2, "global_layers": [1]}
    cfg = train_config("test-micro", model=longer, context=5, future=2, steps=1, lr=1e-12, warmup=1, sample_every=100)
    train(cfg, cards_data, tmp_path / "stm", init=micro_run, progress=False)
    grown, grown_cfg = load_model(tmp_path / "stm")
    assert grown_cfg.context == 5 and grown.config.window == 2
    old, new = start.pos_time.detach(), grown.pos_time.detach()
    # frames keep their offset from the first future frame; older context frames share the oldest position
    torch.testing.assert_close(new[3:7], old[0:4], atol=1e-6, rtol=0)
    torch.testing.assert_close(new[:3], old[0:1].expand(3, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(new[7], old[3], atol=1e-6, rtol=0)  # past the old clip: the last position
    torch.testing.assert_close(grown.blocks[0].attn.qkv.weight, start.blocks[0].attn.qkv.weight, atol=1e-6, rtol=0)
    assert retime_positions(old, 2, 6, 2, 6).equal(old)


def test_init_adds_a_pose_input_without_changing_the_function(cards_data, tmp_path):
    micro = train_config("test-micro").model
    plain = train_config("test-micro", model={**micro, "pose_dim": 0}, pose=None, steps=2, sample_every=100)
    train(plain, cards_data, tmp_path / "plain", progress=False)
    posed = train_config("test-micro", steps=1, lr=1e-12, warmup=1, sample_every=100)  # cursor pose, pose_dim 2
    train(posed, cards_data, tmp_path / "posed", init=tmp_path / "plain", progress=False)
    start, _ = load_model(tmp_path / "plain")
    grown, _ = load_model(tmp_path / "posed")
    torch.manual_seed(0)
    x, t, a = torch.randn(2, 4, 3, 32, 32), torch.randint(0, 1000, (2, 4)), torch.randn(2, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, t, a, torch.rand(2, 4, 2), context=2), start(x, t, a, context=2),
                                   atol=1e-5, rtol=1e-4)
    assert grown.pose_embed[2].weight.abs().max() < 1e-6 and grown.pose_embed[0].weight.abs().max() > 0


def test_init_leaves_out_a_place_memorys_views(cards_data, tmp_path):
    """An SLTM started from a place memory (maze-place) is that network's base model plus a zero pose path."""
    from come.checkpoint import save_config, save_weights
    from tiny import tiny_dit

    micro = train_config("test-micro").model
    placed = train_config("test-micro", model={**micro, "pose_dim": 0, "views": 1}, pose=None)
    start = tiny_dit(jitter=0.05, **placed.model)
    (tmp_path / "place").mkdir()
    save_config(tmp_path / "place", placed)
    save_weights(tmp_path / "place" / "model.safetensors", start)
    posed = train_config("test-micro", steps=1, lr=1e-12, warmup=1, sample_every=100)
    train(posed, cards_data, tmp_path / "sltm", init=tmp_path / "place", progress=False)
    grown, _ = load_model(tmp_path / "sltm")
    assert grown.config.views == 0 and not any(k.startswith("view_") for k in grown.state_dict())
    x, t, a = torch.randn(2, 4, 3, 32, 32), torch.randint(0, 1000, (2, 4)), torch.randn(2, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, t, a, torch.rand(2, 4, 2), context=2), start(x, t, a, context=2),
                                   atol=1e-5, rtol=1e-4)
    viewless = train_config("test-micro", model={**micro, "views": 0, "depth": 3})
    with pytest.raises(CheckpointError, match="leave out place views"):
        train(viewless, cards_data, tmp_path / "deeper", init=tmp_path / "place", progress=False)


def test_capped_loss_only_lowers_the_weight_of_low_levels():
    from come.diffusion.loss import NoiseLevels, diffusion_loss
    from come.diffusion.schedule import make_scheduler
    from come.presets import build_model

    torch.manual_seed(0)
    m = build_model("cards-tiny", width=32, depth=1, heads=2)
    batch = {"frames": torch.rand(4, 3, 3, 32, 32) * 2 - 1, "action": torch.zeros(4, 3, 5),
             "pose": torch.zeros(4, 3, 2)}
    s = make_scheduler()

    def loss(**kw):
        gen = torch.Generator().manual_seed(1)
        return diffusion_loss(m, batch, 2, s, generator=gen, levels=NoiseLevels(**kw)).item()

    high = dict(high_fraction=1.0, high_min=990)  # every level >= 990: weight SNR+1 < 1.01 stays under any cap >= 2
    assert loss(**high) == pytest.approx(loss(max_weight=2.0, **high), rel=1e-6)
    assert loss(max_weight=2.0) < loss()  # uniform levels: the low ones are capped


def test_a_diverging_loss_stops_training_and_saves_nothing_after_it(cards_data, tmp_path):
    cfg = train_config("test-micro", steps=6, ckpt_every=2, sample_every=100, lr=1e30, warmup=1, grad_clip=0.0)
    with pytest.raises(TrainingDiverged, match="stopped without saving"):
        train(cfg, cards_data, tmp_path / "run", progress=False)
    if (tmp_path / "run" / "model.safetensors").exists():  # what was saved before the loss broke is finite
        assert all(torch.isfinite(t).all() for t in load_file(str(tmp_path / "run" / "model.safetensors")).values())


def test_each_process_gets_its_own_share_of_every_step(cards_data):
    """accelerate splits a step's clips across processes: the shares are disjoint and make the step of one
    process; the batches of a step depend on the step alone (a resumed run draws what it would have), and
    worker processes cut the same clips."""
    from accelerate.data_loader import BatchSamplerShard

    from come.data.clips import StepBatches

    data = ClipDataset(cards_data, "train", 4, 32, pose="cursor")
    one = list(StepBatches(data, 8, 3, 0, 3))
    shares = [list(BatchSamplerShard(StepBatches(data, 8, 3, 0, 3), 2, rank, split_batches=True)) for rank in (0, 1)]
    for batch, first, second in zip(one, *shares, strict=True):
        assert first + second == batch and len(first) == 4 and first != second
    assert list(StepBatches(data, 8, 3, 2, 3)) == one[2:]  # resumed at step 2
    for plain, cut in zip(data.loader(8, 3, 0, 2), data.loader(8, 3, 0, 2, workers=2), strict=True):
        assert all(torch.equal(plain[k], cut[k]) for k in plain)


def test_two_processes_take_the_steps_of_one(cards_data, tmp_path):
    """The README's multi-GPU command, on two CPU processes (gloo): the weights match a one-process run of
    the same global batch, and one process writes the run."""
    import subprocess
    import sys

    settings = ["--data", str(cards_data), "--preset", "test-micro", "--steps", "3", "--batch-size", "8",
                "--precision", "fp32"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    res = subprocess.run([*launch, "-m", "come.cli", "train", "--out", str(tmp_path / "two"), *settings],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"processes": 2, "clips_per_process_step": 4') == 1  # one summary, half the clips each
    one = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "one"), *settings])
    other = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "other"), *settings, "--seed", "5"])
    assert one.exit_code == 0 and other.exit_code == 0, one.output + other.output
    weights = {run: load_file(tmp_path / run / "state.safetensors") for run in ("two", "one", "other")}

    def gap(a, b):  # the trained weights and the optimizer's moments
        return max((weights[a][k] - weights[b][k]).abs().max().item() for k in weights[a]
                   if k.startswith(("model.", "opt.")))

    assert gap("two", "one") < 1e-5 < gap("one", "other") / 100
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]  # written once


def test_a_run_folder_in_use_is_refused(cards_data, tmp_path):
    from come.errors import InputError
    from come.outputs import run_lock

    run = tmp_path / "run"
    with run_lock(run):  # as another `come train` on this folder holds it
        with pytest.raises(InputError, match="another process is writing this folder"):
            train(train_config("test-micro", steps=2), cards_data, run, progress=False)
    assert not (run / "model.safetensors").exists()
    train(train_config("test-micro", steps=2), cards_data, run, progress=False)  # free again
    assert (run / "model.safetensors").exists()
