"""The README's main job, on the shipped checkpoint: a full-loop regression check."""

import json

from come.demo import SHIPPED, run_demo


def test_demo_with_shipped_checkpoint(tmp_path):
    assert (SHIPPED / "model.safetensors").is_file()
    lines = []
    result = run_demo(tmp_path, episodes=2, memorization_steps=20, progress=False, echo=lines.append)
    for name in ("recall.png", "recall_frames.png", "recall_00.mp4", "recall_01.mp4", "recall.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "recall.json").read_text())
    assert set(saved["variants"]) == {"base", "come"} and saved["episodes"] == 2
    assert saved["variants"]["come"]["recall"] == result["variants"]["come"]["recall"]
    assert any("| come |" in line for line in lines) and any("tau" in line for line in lines)
