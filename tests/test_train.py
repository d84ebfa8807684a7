import json

import pytest
import torch
from safetensors.torch import load_file

from come.checkpoint import CheckpointError, load_model
from come.presets import train_config
from come.train import train


def _weights(run):
    return load_file(str(run / "state.safetensors"))


def test_resume_is_bit_for_bit(cards_data, tmp_path):
    cfg = train_config("test-micro", steps=6, ckpt_every=3, sample_every=100)
    full = train(cfg, cards_data, tmp_path / "full", progress=False)
    part = train(cfg, cards_data, tmp_path / "part", progress=False, stop_after=3)
    assert part["steps"] == 3
    rest = train(cfg, cards_data, tmp_path / "part", resume=True, progress=False)
    assert rest["steps"] == 6
    assert full["losses"][3:] == rest["losses"]  # same loss curve as the uninterrupted run
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


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
