"""The checkpoints shipped inside the package load and work together as experts."""

from pathlib import Path

import torch

import come
from come.checkpoint import load_model
from come.data.cards import generate_episode
from come.data.clips import cursor_pose, frames_to_tensor
from come.world import WorldModel

ASSETS = Path(come.__file__).parent / "assets"


def test_shipped_base_and_stm_compose():
    """The base, the STM and their naive product with the LTM (sampled by the product sampler) draw the frames."""
    base, cfg = load_model(ASSETS / "cards-tiny")
    stm, stm_cfg = load_model(ASSETS / "cards-stm")
    assert cfg.preset == "cards-tiny" and stm_cfg.preset == "cards-stm"
    assert stm_cfg.context == 32 and stm.config.window and stm.config.global_layers
    # apart from the clip layout, the STM is the base model's architecture (it was warm-started from it)
    layout = ("max_frames", "window", "global_layers")
    assert {k: v for k, v in cfg.model.items() if k not in layout} == {k: v for k, v in stm_cfg.model.items()
                                                                       if k not in layout}
    ep = generate_episode(3, 0, "test", 36)
    frames = frames_to_tensor(ep["image"])[None]
    action, pose = torch.from_numpy(ep["action"])[None], torch.from_numpy(cursor_pose(ep))[None]
    world = WorldModel(base.float(), cfg, stm=(stm.float(), stm_cfg), rank=4, steps=4)
    world.observe(frames[:, :34], action[:, :34], pose[:, :34])
    world.memorize(steps=2, batch_size=4)
    outs = {v: world.imagine(action[:, 34:], pose[:, 34:], variant=v) for v in ("base", "stm", "poe")}
    truth = frames[:, 34:]
    for v, pred in outs.items():
        assert pred.shape == truth.shape and torch.isfinite(pred).all()
        assert (pred - truth).pow(2).mean() < 0.05, v  # each draws the next frames of a real episode
    assert not torch.allclose(outs["base"], outs["stm"])


def test_shipped_maze_model_is_base_and_place_memory(maze_walks):
    """The shipped maze-place on a real Memory Maze walk: base and place memory both draw the next frames,
    and the views change them."""
    from come.protocols.maze import load_maze_episode

    base, cfg = load_model(ASSETS / "maze-place")
    place, _ = load_model(ASSETS / "maze-place")
    assert cfg.preset == "maze-place" and base.config.views == 2 and cfg.pose == "absolute"
    ep = load_maze_episode(maze_walks / "eval" / "ep_00000.npz", cfg)
    N, F = 17, 4
    world = WorldModel(base.float(), cfg, place=(place.float(), cfg), rank=4, steps=4)
    world.observe(ep["frames"][None, :N], ep["action"][None, :N], ep["pose"][None, :N])
    outs = {v: world.imagine(ep["action"][None, N:N + F], ep["pose"][None, N:N + F], variant=v)
            for v in ("base", "place")}
    truth = ep["frames"][None, N:N + F]
    for v, pred in outs.items():
        assert torch.isfinite(pred).all() and (pred - truth).pow(2).mean() < 0.05, v
    assert not torch.allclose(outs["base"], outs["place"])
