"""The README's main job, on the shipped checkpoint: a full-loop regression check."""

import json

from come.demo import SHIPPED, run_demo


def test_demo_with_shipped_checkpoint(tmp_path):
    assert (SHIPPED / "model.safetensors").is_file()
    lines = []
    result = run_demo(tmp_path, episodes=4, echo=lines.append)
    assert (tmp_path / "rollout.png").stat().st_size > 0
    assert len(list(tmp_path.glob("rollout_*.mp4"))) == 4
    saved = json.loads((tmp_path / "rollouts.json").read_text())
    model, copy_last = saved["variants"]["model"], saved["variants"]["copy_last"]
    assert model["psnr"]["mean"] > copy_last["psnr"]["mean"] + 3  # measured: about +7 dB
    assert model["cursor_accuracy"]["mean"] > 0.9
    assert any("| model |" in line for line in lines) and result["episodes"] == 4
