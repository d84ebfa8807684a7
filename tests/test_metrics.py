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
