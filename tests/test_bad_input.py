"""Every bad input, across the commands: one `error:` line naming the file or argument, exit 2, no
traceback, and nothing already on disk changed (the whole tree is hashed before and after)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from come.cli import app
from come.data.episodes import load_episode, save_episode, write_meta


@pytest.fixture(scope="module")
def tree(tmp_path_factory, cards_data, micro_run):
    """A folder holding everything the cases need: data, a run, an export, and broken versions of each."""
    root = tmp_path_factory.mktemp("bad-input")
    shutil.copytree(cards_data, root / "data")
    shutil.copytree(micro_run, root / "run")
    exported = CliRunner().invoke(app, ["export", "--ckpt", str(root / "run"), "--out", str(root / "export")])
    assert exported.exit_code == 0, exported.output
    (root / "afile").write_text("not a folder")
    (root / "out" / "video.mp4").mkdir(parents=True)
    config = json.loads((root / "run" / "config.json").read_text())
    broken = {"model-str": "dit", "model-list": [1, 2], "model-null": None,
              "heads-0": {**config["model"], "heads": 0}, "unknown-key": {**config["model"], "wings": 2}}
    for name, model in broken.items():
        shutil.copytree(root / "export", root / name)
        (root / name / "config.json").write_text(json.dumps({**config, "model": model}))
    shutil.copytree(root / "export", root / "nan-weights")
    weights = load_file(root / "export" / "model.safetensors")
    first = sorted(weights)[0]
    save_file({**weights, first: weights[first] * float("nan")}, root / "nan-weights" / "model.safetensors")
    shutil.copytree(root / "run", root / "no-metadata")
    save_file(load_file(root / "run" / "state.safetensors"), root / "no-metadata" / "state.safetensors")
    ep = sorted((root / "data" / "test").glob("*.npz"))[0]
    arrays = load_episode(ep)
    arrays["action"] = arrays["action"].astype(np.float32)
    arrays["action"][5:, 0] = np.nan
    save_episode(root / "nan-actions.npz", arrays)
    arrays = load_episode(ep)
    arrays["cursor"] = arrays["cursor"][:-3]
    save_episode(root / "short-cursor.npz", arrays)
    (root / "random.npz").write_bytes(np.random.default_rng(0).bytes(300))
    shutil.copytree(root / "data", root / "unfinished")
    write_meta(root / "unfinished" / "train", {"generator": "come.data.cards", "complete": False})
    return root


EP = "{root}/data/test/ep_00000.npz"
SAMPLE = ["sample", "--ckpt", "{root}/run", "--episode", EP, "--frames", "2", "--ddim-steps", "2"]
TRAIN = ["train", "--data", "{root}/data", "--preset", "test-micro"]
RECALL = ["eval", "cards-recall", "--ckpt", "{root}/run", "--episodes", "1"]


def _output_cases():
    sample, train, recall = SAMPLE, TRAIN, RECALL
    return {
        # outputs that cannot be written, checked before any work
        "sample into a folder": (sample + ["--out", "{root}/out/video.mp4"], "video.mp4: is a folder"),
        "sample under /proc": (sample + ["--out", "/proc/come/x.mp4"], "cannot write"),
        "sample as gif": (sample + ["--out", "{root}/new.gif"], "must end in .mp4"),
        "train into a file": (train + ["--out", "{root}/afile", "--steps", "2"], "afile: is a file"),
        "export into a file": (["export", "--ckpt", "{root}/run", "--out", "{root}/afile"], "afile: is a file"),
        "data into a file": (["data", "cards", "--out", "{root}/afile", "--episodes", "1"], "afile is a file"),
        "toy into a file": (["toy", "--out", "{root}/afile", "--samples", "100"], "afile: is a file"),
        "demo into a file": (["demo", "--out", "{root}/afile"], "afile: is a file"),
        "rollouts json is a folder": (["eval", "rollouts", "--ckpt", "{root}/run", "--data", "{root}/data",
                                       "--json", "{root}/out"], "--json"),
        "rollouts out is a file": (["eval", "rollouts", "--ckpt", "{root}/run", "--data", "{root}/data",
                                    "--out", "{root}/afile"], "afile: is a file"),
        "recall json under /proc": (recall + ["--json", "/proc/come/r.json"], "cannot write"),
        "maze json is a folder": (["eval", "maze", "--data", "{root}/data", "--json", "{root}/out"], "--json"),
        "pose out is a file": (["eval", "pose", "--ckpt", "{root}/run", "--data", "{root}/data",
                                "--out", "{root}/afile"], "afile: is a file"),
        # never overwrite another run, an export, or another dataset
        "train over an export": (train + ["--out", "{root}/export", "--steps", "2"], "holds an exported model"),
        "train over a run": (train + ["--out", "{root}/run", "--steps", "2"], "--resume"),
        "export over a run": (["export", "--ckpt", "{root}/run", "--out", "{root}/run"], "is a training run"),
        "export over an export": (["export", "--ckpt", "{root}/run", "--out", "{root}/export"], "--force"),
        "data of another seed": (["data", "cards", "--out", "{root}/data", "--episodes", "6", "--length", "40",
                                  "--seed", "5"], "seed=0 (not 5)"),
        "data of another length": (["data", "cards", "--out", "{root}/data", "--episodes", "6", "--length", "50"],
                                   "length=40 (not 50)"),
        "data of fewer episodes": (["data", "cards", "--out", "{root}/data", "--episodes", "2", "--length", "40"],
                                   "holds 6 episodes"),
    }


def _setting_cases():
    sample, train, recall, ep = SAMPLE, TRAIN, RECALL, EP
    return {
        # counts and settings
        "train zero steps": (train + ["--out", "{root}/new", "--steps", "0"], "steps=0"),
        "train negative steps": (train + ["--out", "{root}/new", "--steps", "-1"], "steps=-1"),
        "train zero batch": (train + ["--out", "{root}/new", "--batch-size", "0"], "batch_size=0"),
        "train infinite lr": (train + ["--out", "{root}/new", "--lr", "inf"], "lr must be"),
        "train bad precision": (train + ["--out", "{root}/new", "--precision", "fp64"], "precision"),
        "train unknown preset": (["train", "--data", "{root}/data", "--out", "{root}/new", "--preset", "huge"],
                                 "unknown preset 'huge'"),
        "resume below its step": (["train", "--data", "{root}/data", "--out", "{root}/run", "--resume",
                                   "--steps", "1"], "at step 4"),
        "resume nothing": (["train", "--data", "{root}/data", "--out", "{root}/new", "--resume"], "no config.json"),
        "resume a state without metadata": (["train", "--data", "{root}/data", "--out", "{root}/no-metadata",
                                             "--resume", "--steps", "8"], "not a training state"),
        "sample zero frames": (sample[:-4] + ["--frames", "0"], "--frames"),
        "sample bad device": (sample + ["--device", "tpu"], "tpu"),
        "sample bad precision": (sample + ["--precision", "fp64"], "precision"),
        "sample with negative --steps": (sample + ["--steps", "-3"], "--ddim-steps"),
        "recall with negative --steps": (recall + ["--steps", "-3"], "--memorize-steps"),
        # configs and weights
        "model is a string": (["sample", "--ckpt", "{root}/model-str", "--episode", ep], "'model' must be a mapping"),
        "model is a list": (["sample", "--ckpt", "{root}/model-list", "--episode", ep], "'model' must be a mapping"),
        "model is null": (["sample", "--ckpt", "{root}/model-null", "--episode", ep], "'model' must be a mapping"),
        "zero heads": (["sample", "--ckpt", "{root}/heads-0", "--episode", ep], "heads=0"),
        "unknown model key": (["sample", "--ckpt", "{root}/unknown-key", "--episode", ep], "wings"),
        "NaN weights": (["sample", "--ckpt", "{root}/nan-weights", "--episode", ep], "NaN or infinite"),
        "missing checkpoint": (["sample", "--ckpt", "{root}/nowhere", "--episode", ep], "nowhere"),
        "export of nothing": (["export", "--ckpt", "{root}/nowhere", "--out", "{root}/new"], "nowhere"),
    }


def _input_cases():
    sample, train, recall = SAMPLE, TRAIN, RECALL
    return {
        # episodes and datasets
        "NaN actions": (["sample", "--ckpt", "{root}/run", "--episode", "{root}/nan-actions.npz"], "NaN"),
        "random bytes as an episode": (["sample", "--ckpt", "{root}/run", "--episode", "{root}/random.npz"],
                                       "not a readable .npz"),
        "cursor track too short": (["sample", "--ckpt", "{root}/run", "--episode", "{root}/short-cursor.npz"],
                                   "'cursor' has"),
        "sample zero context": (sample + ["--context", "0"], "--context"),
        "missing episode": (["sample", "--ckpt", "{root}/run", "--episode", "{root}/none.npz"], "none.npz"),
        "unfinished dataset": (train + ["--data", "{root}/unfinished", "--out", "{root}/new", "--steps", "2"],
                               "did not finish"),
        "missing dataset": (["train", "--data", "{root}/nothing", "--out", "{root}/new"], "nothing"),
        "recall bad variant": (recall + ["--variants", "base,magic"], "magic"),
    }


def _cases():
    return _output_cases() | _setting_cases() | _input_cases()


def _snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


CASES = _cases()


def test_the_table_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(tree, name):
    args, expected = CASES[name]
    before = _snapshot(tree)
    res = CliRunner().invoke(app, [a.format(root=tree) for a in args])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not (res.exception and not isinstance(res.exception, SystemExit))
    assert expected in res.output, res.output
    if lines[-1].startswith("error:"):  # ours; typer's own usage errors say "Invalid value" in a box
        assert sum(line.startswith("error:") for line in lines) == 1
    assert _snapshot(tree) == before
