import pytest

import torch

from come.data.cards import generate_episode
from come.data.clips import frames_to_tensor
from come.metrics.cards import card_mse, cursor_cell
from come.metrics.image import psnr, ssim
from come.protocols.rollouts import CARD_TAU


def test_cursor_cell_reads_rendered_frames():
    for res in (32, 64):
        ep = generate_episode(0, 0, "train", 60, res)
        got = cursor_cell(frames_to_tensor(ep["image"]))
        assert torch.equal(got, torch.from_numpy(ep["cursor"]))


def test_card_mse_separates_objects():
    ep = generate_episode(0, 1, "zigzag")
    x = frames_to_tensor(ep["image"])
    assert card_mse(x, x).max() == 0
    last = x[-1]  # all face up
    shifted = torch.roll(last, shifts=8, dims=-1)  # every card replaced by its neighbour
    layout = torch.from_numpy(ep["layout"])
    differs = layout != torch.roll(layout, 1, dims=1)
    err = card_mse(shifted, last)
    assert (err[differs] > CARD_TAU).all()


def test_psnr_ssim_per_frame():
    a = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    assert psnr(a, a + 0.02).shape == (2, 3)
    assert torch.allclose(ssim(a, a), torch.ones(2, 3), atol=1e-4)
    assert (psnr(a, a + 0.02) > psnr(a, a + 0.2)).all()


def test_psnr_of_identical_frames_is_capped_and_window_psnr():
    from come.metrics.image import PSNR_MAX, window_psnr

    a = torch.rand(4, 3, 8, 8) - 0.5  # stays inside [-1, 1] after the change below
    assert torch.all(psnr(a, a) == PSNR_MAX)
    b = a.clone()
    b[0] += 0.2  # only the first of four frames is off
    mse = ((b - a) / 2).pow(2).mean()
    assert abs(window_psnr(b, a) - float(-10 * torch.log10(mse))) < 1e-4


def test_flip_masks_by_kind():
    import numpy as np

    from come.protocols.rollouts import flip_masks

    cov = np.ones((6, 4, 4), bool)
    cov[0, 0, 0] = False  # face up in the first context frame...
    cov[3, 0, 0] = False  # ...then uncovered again at frame 3: an object seen in the context
    cov[4, 0, 0] = True  # and covered at frame 4
    cov[2:, 1, 1] = False  # uncovered at frame 2, never seen before
    m = flip_masks(cov, start=0, context=2, frames=4)  # targets are frames 2..5
    assert m["uncovering"].nonzero().tolist() == [[0, 1, 1], [1, 0, 0]]
    assert m["uncovering_seen"].nonzero().tolist() == [[1, 0, 0]]
    assert m["covering"].nonzero().tolist() == [[2, 0, 0]]


def test_intervals_hold_at_small_n():
    from come.metrics.intervals import interval_text, mean_ci95, proportion_ci95

    one = mean_ci95([0.188])
    assert one == {"mean": 0.188, "ci95": None, "n": 1} and interval_text(one) == "n=1, no interval"
    two = mean_ci95([1.0, 3.0])  # t with 1 degree of freedom: 12.71 * sqrt(2) / sqrt(2) either side
    assert two["n"] == 2 and abs(two["ci95"][1] - 2.0 - 12.706) < 1e-2
    for k, n in ((0, 1), (1, 1), (1, 2), (2, 2), (0, 32)):
        p = proportion_ci95(k, n)
        lo, hi = p["ci95"]
        assert 0.0 <= lo <= k / n <= hi <= 1.0 and hi - lo > 0, (k, n, p)  # never negative, never zero-width
    assert abs(proportion_ci95(1, 2)["ci95"][0] - 0.0945) < 1e-3  # Wilson: 0.5 of 2 is [0.095, 0.905]
    with pytest.raises(ValueError):
        proportion_ci95(3, 2)


def test_paired_successes_count_the_trials_where_two_methods_differ():
    from come.metrics.intervals import paired_successes

    # per window, the closed-loop successes of BENCHMARKS.md's held-out planning table
    base = [True, True, True, True, True, True, False, True, True, False, False, True]
    place = [False, False, True, True, False, False, False, True, False, True, False, True]
    assert paired_successes(place, base) == {"ahead": 1, "behind": 5, "p": pytest.approx(14 / 64)}  # 2 * 7 / 2^6
    assert paired_successes(base, base) == {"ahead": 0, "behind": 0, "p": 1.0}
    with pytest.raises(ValueError):
        paired_successes([True], [True, False])
