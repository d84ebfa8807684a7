"""come bench compute: the compute table on a tiny model."""

import json

from typer.testing import CliRunner

from come.cli import app


def test_the_compute_table_times_memorization_and_each_variant_per_rank(micro_run, tmp_path):
    out = tmp_path / "compute.json"
    res = CliRunner().invoke(app, ["bench", "compute", "--ckpt", str(micro_run), "--variants", "ltm,hg",
                                   "--ranks", "2,4", "--memorize-steps", "2", "--ddim-steps", "1",
                                   "--precision", "fp32", "--json", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert [row["rank"] for row in result["rows"]] == [2, 4] and result["variants"] == ["base", "ltm", "hg"]
    for row in result["rows"]:
        assert row["variants"]["base"]["x_base"] == 1.0
        assert all(v["seconds"] > 0 and v["seconds_per_frame"] > 0 for v in row["variants"].values())
        assert row["memorize"]["seconds"] > 0 and row["memorize"]["seconds_per_step"] * 2 == row["memorize"]["seconds"]
    assert "| LoRA rank | memorize (2 steps) | base | ltm | hg |" in res.output and "threads" in res.output


def test_a_maze_model_needs_its_episode():
    res = CliRunner().invoke(app, ["bench", "compute", "--ckpt", "maze-place"])
    assert res.exit_code == 2 and "give --data" in res.output
