"""The place memory: retrieval of views by pose, the network's view tokens, training clips with views."""

import math

import numpy as np
import pytest
import torch

from come.data.clips import ClipDataset
from come.data.episodes import save_episode
from come.data.places import nearest_views, relative_view_pose
from come.models.dit import DiTConfig, VideoDiT

from tiny import tiny_dit

from test_maze import _public_episode


def _pose(x, y, yaw):
    return torch.tensor([x, y, math.cos(yaw), math.sin(yaw)])


def test_nearest_views_weigh_place_and_heading():
    keys = torch.stack([_pose(0, 0, 0), _pose(1, 0, 0), _pose(1, 0, math.pi), _pose(0, 1, math.pi / 2)]).numpy()
    queries = torch.stack([_pose(1.05, 0, 0.1), _pose(0.95, 0, -3.1), _pose(0.1, 0.8, 1.5)]).numpy()
    assert nearest_views(keys, queries, 1)[:, 0].tolist() == [1, 2, 3]  # heading wraps around at pi
    two = nearest_views(keys, queries[:1], 2)[0].tolist()
    assert two == [1, 0]  # nearest first; the view facing back costs more than one a cell away
    with pytest.raises(ValueError, match="2 views asked from 1 frames"):
        nearest_views(keys[:1], queries, 2)


def test_relative_view_pose_is_in_the_targets_frame():
    target = _pose(1, 1, math.pi / 2)  # facing +y
    ahead, left, same = _pose(1, 2, math.pi / 2), _pose(0, 1, math.pi), _pose(1, 1, math.pi / 2)
    rel = relative_view_pose(torch.stack([ahead, left, same]), target.expand(3, 4))
    assert torch.allclose(rel[0], torch.tensor([1.0, 0, 1, 0]), atol=1e-6)  # one ahead, same heading
    assert torch.allclose(rel[1], torch.tensor([0.0, 1, 0, 1]), atol=1e-6)  # one to the left, turned left
    assert torch.allclose(rel[2], torch.tensor([0.0, 0, 1, 0]), atol=1e-6)


def _place_model(**kw):  # off adaLN-Zero's identity start and the zero view path
    return tiny_dit(jitter=0.05, gates_only=False, resolution=16, patch=4, action_dim=6, views=2, prediction="x0",
                    **kw)


@pytest.mark.parametrize("window", [None, 2])
def test_dropped_views_are_no_views_and_kept_views_matter(window):
    net = _place_model(window=window, global_layers=[1] if window else [])
    x, t, a = torch.randn(3, 4, 3, 16, 16), torch.tensor([[0, 0, 0, 500]] * 3), torch.randn(3, 4, 6)
    views, pose = torch.randn(3, 2, 3, 16, 16), torch.randn(3, 2, 4)
    keep = torch.tensor([False, True, False])
    with torch.no_grad():
        none = net(x, t, a, context=3)
        masked = net(x, t, a, context=3, views=views, view_pose=pose, view_keep=keep)
        seen = net(x, t, a, context=3, views=views, view_pose=pose)
    assert torch.allclose(masked[~keep], none[~keep], atol=1e-5)
    assert torch.allclose(masked[keep], seen[keep], atol=1e-5)
    assert (seen[:, 3] - none[:, 3]).abs().amax() > 1e-3  # the views change the generated frame
    with pytest.raises(ValueError, match="1 place views given; this model takes 2"):
        net(x, t, a, context=3, views=views[:, :1], view_pose=pose[:, :1])
    plain = VideoDiT(DiTConfig(resolution=16, patch=4, width=32, depth=1, heads=2, max_frames=4, action_dim=6))
    with pytest.raises(ValueError, match="without a place memory"):
        plain(x, t, a, context=3, views=views, view_pose=pose)


def test_training_clips_take_views_from_before_the_clip(tmp_path):
    for i in range(2):
        save_episode(tmp_path / "train" / f"ep_{i:05d}.npz", _public_episode(T=64, seed=i))
    data = ClipDataset(tmp_path, "train", clip_frames=4, resolution=16, pose="absolute", views=2, view_gap=5)
    batch = data.sample(64, np.random.default_rng(0))
    assert batch["views"].shape == (64, 2, 3, 16, 16) and batch["view_pose"].shape == (64, 2, 4)
    assert batch["view_keep"].any() and not batch["view_keep"].all()  # clips near an episode's start have none
    # each kept view is a frame of the clip's episode from before the clip (checked by its pixels)
    keys = data.draw_keys(64, np.random.default_rng(0))  # the clips of that batch
    for b in np.flatnonzero(batch["view_keep"].numpy()):
        episode, start, _ = keys[b]
        frames = data.episode(episode)["frames"]
        for v in batch["views"][b]:
            match = [i for i in range(len(frames)) if torch.equal(frames[i], v)]
            assert match and min(match) < start
    with pytest.raises(ValueError, match="absolute pose"):
        ClipDataset(tmp_path, "train", clip_frames=4, resolution=16, views=2)
