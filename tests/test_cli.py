"""The command line: end-to-end runs and one clear line for each kind of bad input."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from come.cli import app
from come.data.episodes import save_episode

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clear_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_help_on_every_command():
    for cmd in (["--help"], ["data", "cards", "--help"], ["data", "maze", "--help"], ["train", "--help"],
                ["sample", "--help"], ["eval", "rollouts", "--help"], ["eval", "cards-recall", "--help"],
                ["demo", "--help"], ["presets", "--help"]):
        r = run(*cmd)
        assert r.exit_code == 0 and "Usage" in r.output, cmd
    # help texts are plain text: a bracketed default is shown, not read as markup
    assert "[default: the shipped" in " ".join(run("eval", "maze", "--help").output.split())


def test_data_cards_cli(tmp_path):
    r = run("data", "cards", "--out", tmp_path, "--episodes", 2, "--seed", 3, "--length", 20)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    assert meta["episodes"] == 2 and meta["seed"] == 3 and meta["resolution"] == 32


def test_sample_cli_writes_videos_and_metrics(micro_run, cards_data, tmp_path):
    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    out = tmp_path / "s.mp4"
    r = run("sample", "--ckpt", micro_run, "--episode", ep, "--frames", 3, "--ddim-steps", 2, "--out", out)
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0 and out.with_suffix(".gif").stat().st_size > 0
    assert out.with_suffix(".png").stat().st_size > 0
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert len(metrics["psnr"]) == 3 and len(metrics["ssim"]) == 3
    r = run("sample", "--ckpt", micro_run, "--episode", ep, "--frames", 2, "--ddim-steps", 3, "--sampler", "dpm++",
            "--out", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["sampler"] == "dpm++"
    assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", ep, "--sampler", "euler", "--out", out),
                       "unknown sampler 'euler'")


def test_eval_rollouts_cli(micro_run, cards_data, tmp_path):
    r = run("eval", "rollouts", "--ckpt", micro_run, "--data", cards_data, "--episodes", 2, "--frames", 2,
            "--ddim-steps", 2, "--json", tmp_path / "r.json", "--out", tmp_path / "v")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["variants"]) == {"model", "copy_last"} and result["episodes"] == 2
    assert "cursor_accuracy" in result["variants"]["copy_last"]
    assert len(list((tmp_path / "v").glob("*.mp4"))) == 2
    assert "cursor on right card" in r.output


def test_the_rollouts_table_shows_the_cards_columns_only_for_cards():
    from come.protocols.rollouts import format_table

    score = {"mean": 20.0, "ci95": [19.0, 21.0], "n": 2}
    table = format_table({"variants": {"model": {"psnr": score, "ssim": score}}})
    assert table.splitlines()[0] == "| variant | PSNR (dB) | SSIM |" and "cursor" not in table


@pytest.mark.parametrize("command", ["rollouts", "cards-recall"])
def test_eval_scores_lpips_where_its_network_is(command, micro_run, cards_data, tmp_path, monkeypatch):
    from come.metrics import perceptual

    def stand_in(a, b):  # per-image distance, as the LPIPS network returns
        return (a - b).abs().mean(dim=(1, 2, 3))

    monkeypatch.setattr(perceptual, "lpips_network", lambda device: (stand_in, "LPIPS (stand-in)"))
    args = {"rollouts": ["--data", cards_data, "--frames", 2],
            "cards-recall": ["--memorize-steps", 1, "--rank", 4, "--variants", "base"]}[command]
    r = run("eval", command, "--ckpt", micro_run, "--episodes", 2, "--ddim-steps", 2, *args,
            "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["lpips"] == "LPIPS (stand-in)" and "| LPIPS |" in r.output
    scored = next(iter(result["variants"].values()))["lpips"]
    assert scored["n"] == 2 and 0 < scored["mean"] < 2


def test_eval_cards_recall_cli(micro_run, tmp_path):
    # (poe, the naive product, runs tens of Langevin steps a frame: test_world and test_assets compose it)
    # --steps is --memorize-steps here
    r = run("eval", "cards-recall", "--ckpt", micro_run, "--episodes", 2, "--steps", 2, "--ddim-steps", 2,
            "--rank", 4, "--sweep-steps", "1,2", "--variants", "base,ltm,come,hg", "--json", tmp_path / "r.json",
            "--out", tmp_path / "v", "--videos", 1, "--memorize", "batch_size=8,high_fraction=0.8")
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["variants"]) == {"base", "ltm", "come", "hg"}
    assert result["memorization"]["batch_size"] == 8 and result["memorization"]["high_fraction"] == 0.8
    assert result["episodes"] == 2 and result["memorization_steps"] == 2 and 0 < result["tau"] < 0.05
    assert abs(result["chance"] - 0.125) < 0.15
    for v in result["variants"].values():
        assert 0 <= v["recall"] <= 1 and len(v["per_episode"]) == 2 and v["ci95"][0] <= v["recall"] <= v["ci95"][1]
    assert result["sweeps"]["steps"]["values"] == [1, 2] and len(result["sweeps"]["steps"]["recall"]["come"]) == 2
    for name in ("recall.png", "recall_frames.png", "recall_vs_steps.png", "recall_00.mp4"):
        assert (tmp_path / "v" / name).stat().st_size > 0, name
    assert "| come |" in r.output and "tau" in r.output


def test_eval_cards_recall_bad_variant(micro_run):
    assert_clear_error(run("eval", "cards-recall", "--ckpt", micro_run, "--variants", "base,magic"), "magic")
    assert_clear_error(run("eval", "cards-recall", "--ckpt", micro_run, "--variants", "stm"), "--stm")
    assert_clear_error(run("eval", "cards-recall", "--ckpt", micro_run, "--variants", "base,place"),
                       "the place memory needs the absolute pose; cards has the cursor pose")


# --- bad input: one line, exit code 2, no traceback ---------------------------------------


def test_missing_checkpoint(cards_data, tmp_path):
    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    assert_clear_error(run("sample", "--ckpt", tmp_path / "nope", "--episode", ep), "nope", "not found")


def test_corrupt_checkpoint(micro_run, cards_data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(micro_run, bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    assert_clear_error(run("sample", "--ckpt", bad, "--episode", ep), "model.safetensors", "corrupt")


def test_truncated_episode(micro_run, cards_data, tmp_path):
    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(ep.read_bytes()[:500])
    assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", bad), "trunc.npz")


def test_wrong_frame_shape(micro_run, tmp_path):
    bad = tmp_path / "gray.npz"
    save_episode(bad, {"image": np.zeros((10, 32, 32), np.uint8), "action": np.zeros((10, 5), np.float32)})
    assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", bad), "gray.npz", "(T,H,W,3)")


def test_resolution_the_model_cannot_take(micro_run, tmp_path):
    bad = tmp_path / "wide.npz"
    save_episode(bad, {"image": np.zeros((10, 32, 48, 3), np.uint8), "action": np.zeros((10, 5), np.float32),
                       "cursor": np.zeros((10, 2), np.int64)})
    assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", bad), "wide.npz", "square")
    assert_clear_error(run("data", "cards", "--out", tmp_path / "d", "--resolution", 30), "resolution")
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_unknown_preset(cards_data, tmp_path):
    assert_clear_error(run("train", "--data", cards_data, "--out", tmp_path / "r", "--preset", "huge"),
                       "unknown preset 'huge'")


def test_episode_too_short_for_request(micro_run, cards_data):
    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", ep, "--frames", 500), "frames")


def test_train_on_missing_data(tmp_path):
    assert_clear_error(run("train", "--data", tmp_path / "none", "--out", tmp_path / "r"), "none", "not found")


def test_train_resume_cli_keeps_the_runs_settings(cards_data, tmp_path):
    run_dir = tmp_path / "r"
    r = run("train", "--data", cards_data, "--out", run_dir, "--preset", "test-micro", "--steps", 2, "--batch-size", 3)
    assert r.exit_code == 0, r.output
    r = run("train", "--data", cards_data, "--out", run_dir, "--resume", "--steps", 3)
    assert r.exit_code == 0, r.output
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["preset"] == "test-micro" and cfg["batch_size"] == 3 and cfg["steps"] == 3
    assert_clear_error(run("train", "--data", cards_data, "--out", run_dir, "--resume", "--preset", "cards-tiny"),
                       "test-micro")
    assert_clear_error(run("train", "--data", cards_data, "--out", run_dir, "--preset", "test-micro"), "--resume")


def test_bad_input_is_one_line_and_a_bug_is_a_bug(monkeypatch, micro_run, cards_data):
    """An InputError from the library is one error line and exit 2; any other exception, a ValueError from
    deep inside included, is not dressed up as bad input."""
    import come.protocols.rollouts as rollouts
    from come.errors import InputError

    def raises(error):
        def evaluate(*args, **kwargs):
            raise error
        return evaluate

    monkeypatch.setattr(rollouts, "evaluate_rollouts", raises(InputError("episode.npz: no frames")))
    assert_clear_error(run("eval", "rollouts", "--ckpt", micro_run, "--data", cards_data), "episode.npz: no frames")
    monkeypatch.setattr(rollouts, "evaluate_rollouts", raises(ValueError("shapes do not broadcast")))
    result = run("eval", "rollouts", "--ckpt", micro_run, "--data", cards_data)
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error:" not in result.output


def test_device_is_chosen_or_refused_in_one_line(micro_run, cards_data):
    """--device auto takes what the machine has; a device it lacks, or no device at all, is one line."""
    import torch

    from come.runtime import pick_device

    ep = sorted((cards_data / "test").glob("*.npz"))[0]
    if not torch.cuda.is_available():
        assert_clear_error(run("sample", "--ckpt", micro_run, "--episode", ep, "--device", "cuda"),
                           "--device cuda", "no CUDA")
        if not torch.backends.mps.is_available():
            assert pick_device("auto") == torch.device("cpu")
    assert_clear_error(run("eval", "maze", "--data", cards_data, "--device", "tpu"), "--device", "tpu")
    assert pick_device("cpu") == torch.device("cpu")
