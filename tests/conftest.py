import os

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
if "PYTEST_XDIST_WORKER" in os.environ:  # the test workers share the cores: one thread each, subprocesses too
    os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))  # 1 beside a run that holds the other core


@pytest.fixture(scope="session")
def cards_data(tmp_path_factory):
    """A tiny Memory Cards dataset with train/ and test/ splits."""
    from come.data.cards import generate_dataset

    root = tmp_path_factory.mktemp("cards")
    generate_dataset(root, 6, seed=0, split="train", length=40, progress=False)
    generate_dataset(root, 3, seed=1, split="test", length=40, progress=False)
    return root


@pytest.fixture(scope="session")
def micro_run(cards_data, tmp_path_factory):
    """A run folder trained for a few steps with the test-micro preset."""
    from come.presets import train_config
    from come.train import train

    run = tmp_path_factory.mktemp("run") / "micro"
    train(train_config("test-micro", steps=4, ckpt_every=2, sample_every=4), cards_data, run, progress=False)
    return run


@pytest.fixture(scope="session")
def maze_walks(tmp_path_factory):
    """Two 20-step Memory Maze walks from the real environment (seed 2, eval split), as `come data maze`
    writes them: one generation shared by the tests that need some real walk."""
    pytest.importorskip("memory_maze", reason="needs the maze extra (pip install -e '.[maze]')")
    from come.data.maze import generate_dataset

    root = tmp_path_factory.mktemp("maze")
    generate_dataset(root, 2, seed=2, steps=20, split="eval", progress=False)
    return root
