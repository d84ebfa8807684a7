"""The dataset registry: each dataset declared once; a new one trains and samples through the command line
with nothing but its declaration."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from come.checkpoint import load_config, save_config
from come.cli import app
from come.data.episodes import save_episode
from come.datasets import DATASETS, DatasetSpec, dataset_spec, register_dataset, require_protocol
from come.errors import InputError
from come.presets import train_config, train_presets

LINES = DatasetSpec(
    "lines", "a bright column that the actions move left and right", actions=("stay", "left", "right"),
    recipe="maze", inverse_actions=(0, 2, 1),
    presets={"lines-micro": dict(model=dict(resolution=16, patch=8, width=32, depth=1, heads=2, max_frames=4),
                                 context=2, future=1, batch_size=4, steps=4, warmup=1, ckpt_every=2,
                                 sample_every=4, log_every=1, sample_steps=2)},
)


def lines_episode(seed: int, length: int = 12) -> dict:
    """A column walking on a 16-pixel line under random actions (one-hot ``stay``, ``left``, ``right``)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, length)
    ids[0] = 0
    column = np.clip(8 + np.cumsum(np.array([0, -1, 1])[ids]), 0, 15)
    image = np.zeros((length, 16, 16, 3), np.uint8)
    image[np.arange(length), :, column] = 255
    return {"image": image, "action": np.eye(3, dtype=np.float32)[ids]}


@pytest.fixture
def lines_dataset(tmp_path):
    register_dataset(LINES)
    for split, seeds in (("train", range(4)), ("test", [9])):
        for i, seed in enumerate(seeds):
            save_episode(tmp_path / "data" / split / f"ep_{i:05d}.npz", lines_episode(seed))
    yield tmp_path / "data"
    DATASETS.pop("lines")


def test_a_new_dataset_trains_and_samples_through_the_cli_from_its_declaration_alone(lines_dataset, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(lines_dataset), "--out", str(run),
                                      "--preset", "lines-micro"])
    assert result.exit_code == 0, result.output
    cfg = load_config(run)
    assert cfg.dataset == "lines" and cfg.model["action_dim"] == 3  # the dataset's actions size the model
    out = tmp_path / "s.mp4"
    result = CliRunner().invoke(app, ["sample", "--ckpt", str(run), "--episode", str(lines_dataset / "test" /
                                      "ep_00000.npz"), "--frames", "2", "--ddim-steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.with_suffix(".json").read_text())["psnr"]) == 2
    presets = CliRunner().invoke(app, ["presets"]).output
    assert any(line.split()[:2] == ["lines-micro", "lines"] for line in presets.splitlines())


def test_the_world_memorizes_a_new_dataset_by_its_recipe(lines_dataset, monkeypatch):
    import torch

    from come.memory import LoRAMemory
    from come.checkpoint import build_network
    from come.recipes import RECIPES
    from come.world import WorldModel

    seen = []
    monkeypatch.setattr(LoRAMemory, "memorize", lambda self, *args, **kw: seen.append(args[3]) or [0.0])
    cfg = train_config("lines-micro")
    world = WorldModel(build_network(cfg), cfg, rank=2, steps=2)
    ep = lines_episode(3)
    world.observe(torch.zeros(1, 6, 3, 16, 16), torch.from_numpy(ep["action"][None, :6]))
    world.memorize()
    assert seen == [RECIPES["maze"]]


def test_presets_carry_their_datasets_and_old_configs_load_with_their_presets_dataset(tmp_path):
    presets = train_presets()
    assert presets["cards-tiny"]["dataset"] == "cards" and presets["maze-place"]["dataset"] == "maze"
    assert presets["dit-s"]["dataset"] is None
    assert train_config("maze-tiny").model["action_dim"] == 6 and train_config("cards-tiny").model["action_dim"] == 5
    assert train_config("dit-s", "maze").model["action_dim"] == 6
    with pytest.raises(InputError, match="preset 'maze-tiny' is for the maze dataset, not 'cards'"):
        train_config("maze-tiny", "cards")
    old = train_config("cards-tiny").to_dict()
    del old["dataset"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_config(tmp_path).dataset == "cards"
    save_config(tmp_path, train_config("maze-stm"))
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "maze"


def test_a_dataset_is_refused_where_it_does_not_fit():
    assert dataset_spec("cards").inverse_actions == (1, 0, 3, 2, 4)
    with pytest.raises(InputError, match="unknown dataset 'atari'"):
        dataset_spec("atari", "run/")
    with pytest.raises(InputError, match="names no dataset"):
        dataset_spec(None)
    with pytest.raises(InputError, match="run/ is a model of cards; the maze protocol needs one of maze"):
        require_protocol("cards", "maze", "run/")
    with pytest.raises(InputError, match="inverse_actions"):
        DatasetSpec("bad", "", actions=("a", "b"), recipe="maze", inverse_actions=(0, 0))
    with pytest.raises(InputError, match="belong to another dataset"):
        register_dataset(DatasetSpec("copy", "", actions=("a",), recipe="maze", presets={"cards-tiny": {}}))
    assert "copy" not in DATASETS
