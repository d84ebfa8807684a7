import numpy as np
import torch

from come.data.clips import ClipDataset, skip_actions


def test_clip_shapes_pose_and_determinism(cards_data):
    ds = ClipDataset(cards_data, "train", clip_frames=6, resolution=32, pose="cursor")
    a = ds.sample(4, np.random.default_rng(0))
    b = ds.sample(4, np.random.default_rng(0))
    assert a["frames"].shape == (4, 6, 3, 32, 32) and a["action"].shape == (4, 6, 5) and a["pose"].shape == (4, 6, 2)
    assert a["frames"].min() >= -1 and a["frames"].max() <= 1
    assert a["pose"].abs().max() <= 1
    for k in a:
        assert torch.equal(a[k], b[k])


def test_resize_and_frame_skip(cards_data):
    ds = ClipDataset(cards_data, "test", clip_frames=4, resolution=16, frame_skip=2)
    ep = ds.episode(0)
    assert ep["frames"].shape == (20, 3, 16, 16)
    assert ep["action"][1:].sum(1).eq(2).all()  # two one-hot actions summed per kept frame


def test_skip_actions_sums_the_skipped_interval():
    a = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 4, 1]]
    a[0] = 0
    out = skip_actions(a, 3)
    np.testing.assert_array_equal(out[1], a[1:4].sum(0))
    np.testing.assert_array_equal(out[2], a[4:7].sum(0))
