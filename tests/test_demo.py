"""The README's main job, on the shipped checkpoint: a full-loop regression check."""

import json

import pytest

from come.demo import SHIPPED, run_demo


def test_demo_with_shipped_checkpoint(tmp_path):
    assert (SHIPPED / "model.safetensors").is_file()
    lines = []
    result = run_demo(tmp_path, episodes=2, memorization_steps=2, progress=False, echo=lines.append, ddim_steps=2)
    for name in ("recall.png", "recall_frames.png", "recall_00.mp4", "recall_01.mp4", "recall.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "recall.json").read_text())
    assert set(saved["variants"]) == {"base", "come"} and saved["episodes"] == 2
    assert saved["variants"]["come"]["recall"] == result["variants"]["come"]["recall"]
    assert any("| come |" in line for line in lines) and any("tau" in line for line in lines)


def test_maze_demo_on_a_short_walk(tmp_path):
    pytest.importorskip("memory_maze")
    from come.demo import run_maze_demo

    lines = []
    result = run_maze_demo(tmp_path, episodes=1, frames=2, walk=70, history=60, memorization_steps=2,
                           progress=False, echo=lines.append)
    saved = json.loads((tmp_path / "maze.json").read_text())
    assert saved["variants"] == ["base", "place", "come"] and saved["frames"] == 2
    rev = result["protocols"]["revisits"]
    if rev["windows"]:  # the walk came back to a place: every variant scored, the video written
        assert set(rev["variants"]) == {"base", "place", "come"}
        assert (tmp_path / "revisits_00.mp4").stat().st_size > 0
    assert (tmp_path / "maze.md").read_text().strip() and any("revisits" in line for line in lines)
