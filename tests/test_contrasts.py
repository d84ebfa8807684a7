"""What an expert's contrast carries (come.protocols.contrasts): the fits, and the bookkeeping against an oracle."""

import numpy as np
import pytest
import torch

from come.compose import Expert
from come.diffusion.schedule import alpha_bar, expand_like
from come.presets import TrainConfig
from come.protocols.contrasts import ContrastSums, contrast_sums
from come.world import WorldModel

from tiny import tiny_dit


def test_the_fit_recovers_the_weights_that_make_the_error():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(2, 500))
    r = 0.5 * c[0] + 2.0 * c[1] + 0.1 * rng.normal(size=500)
    sums = ContrastSums(("a", "b"), (500,), (c @ c.T)[None, None], (c @ r)[None, None], np.array([[r @ r]]))
    row = sums.summary({"a": 0.5, "b": 2.0})[0]
    assert row["joint_weight"] == pytest.approx({"a": 0.5, "b": 2.0}, abs=0.02)
    residual = r - 0.5 * c[0] - 2.0 * c[1]
    assert row["removed_at_weights"] == pytest.approx(1 - residual @ residual / (r @ r), abs=1e-9)
    assert row["joint_removed"] >= row["removed_at_weights"] - 1e-6  # least squares is the best any weights do
    assert row["cos"]["a"] == pytest.approx(c[0] @ r / np.linalg.norm(c[0]) / np.linalg.norm(r))
    assert row["solo_removed"]["b"] == pytest.approx(row["cos"]["b"] ** 2)


class _Oracle:
    """A place memory that knows the future: with its views it predicts the true frame (as v), without them it is
    the base network, so its contrast is exactly the base's error."""

    prediction = "v"

    def __init__(self, world: WorldModel, frames: torch.Tensor):
        self.world, self.frames, self.max_frames = world, frames, world.base.max_frames

    def __call__(self, x, levels, action, pose, context, adapter_names=None, views=None):
        out = self.world.base(x, levels, action, pose, context, adapter_names).clone()
        if views is None:
            return out
        keep = views[2]
        index = action[:, context:, 0].round().long()  # the test's actions carry each frame's index
        truth = self.frames[torch.arange(len(x))[:, None] % len(self.frames), index]  # (passes x episodes)
        ab = alpha_bar(self.world.scheduler, levels[:, context:])
        x_t = x[:, context:]
        v = (expand_like(ab.sqrt(), x_t) * x_t - truth) / expand_like((1 - ab).sqrt(), x_t)
        out[keep, context:] = v[keep].to(out.dtype)
        return out


def test_the_oracles_contrast_is_the_bases_error_and_an_unfitted_memory_adds_nothing():
    base = tiny_dit(0, jitter=0.1, action_dim=6)
    place = tiny_dit(1, jitter=0.1, action_dim=6, views=2)
    cfg = TrainConfig(preset="test", model=base.config.to_dict(), context=2, future=1, dataset="maze")
    world = WorldModel(base, cfg, place=(place, cfg), rank=4, steps=3)
    B, N, F = 2, 12, 3
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(B, N + F, 3, 32, 32, generator=g) * 2 - 1
    action = torch.zeros(B, N + F, 6)
    action[..., 0] = torch.arange(N + F)
    yaw = torch.arange(N + F) * 0.5
    pose = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.cos(yaw + 1.57), torch.sin(yaw + 1.57)], -1)
    pose = pose.expand(B, -1, -1)
    world.observe(frames[:, :N], action[:, :N], pose[:, :N])
    world.memorize(steps=0)  # adapters as initialised: the memory changes nothing
    world.outside["oracle"] = Expert("oracle", _Oracle(world, frames), 2, views=True, null="views_drop")
    sums = contrast_sums(world, frames[:, N:], action[:, N:], pose[:, N:], ("oracle", "ltm", "place"))
    assert len(sums.levels) == 3 and sums.gram.shape == (B, 3, 3, 3)
    for row in sums.summary():
        assert row["cos"]["oracle"] == pytest.approx(1.0, abs=1e-6)
        assert row["solo_weight"]["oracle"] == pytest.approx(1.0, abs=1e-5)
        assert row["norm"]["oracle"] == pytest.approx(1.0, abs=1e-5)
        assert row["norm"]["ltm"] < 1e-6 and abs(row["joint_weight"]["ltm"]) < 1e-3
        assert row["norm"]["place"] > 0  # a second network: it says something, right or wrong
    with pytest.raises(ValueError, match="no stm expert"):
        contrast_sums(world, frames[:, N:], action[:, N:], pose[:, N:], ("stm",))
