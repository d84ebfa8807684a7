"""Your own denoiser as an expert: a diffusers UNet on another noise schedule composed with cards-tiny."""

import pytest
import torch
from diffusers import DDPMScheduler

from come import Expert, FrameDenoiser, RescheduledDenoiser, WorldModel
from come.diffusion.schedule import make_scheduler
from come.protocols import recall

from test_compose import tiny_unet


def test_levels_map_to_the_timestep_of_the_same_noise_level():
    ours = make_scheduler().alphas_cumprod
    same = RescheduledDenoiser(FrameDenoiser(tiny_unet()), ours)
    assert torch.equal(same.timesteps, torch.arange(1000))
    linear = DDPMScheduler(beta_schedule="linear").alphas_cumprod  # diffusers' default, not our cosine
    mapped = RescheduledDenoiser(FrameDenoiser(tiny_unet()), linear)
    assert (linear[mapped.timesteps] - ours).abs().max() < 0.01
    assert mapped.timesteps[500] < 500  # at the same step a linear schedule is noisier than the cosine


def test_a_diffusers_unet_composes_with_a_shipped_model():
    unet = RescheduledDenoiser(FrameDenoiser(tiny_unet(32)), DDPMScheduler().alphas_cumprod)
    world = WorldModel.from_pretrained("cards-tiny", experts=[Expert("unet", unet, context=1, weight=0.5)], steps=2)
    ep = recall.recall_episode(seed=3, index=0, cfg=world.cfg)
    world.observe(ep["history"][None, -8:], ep["history_action"][None, -8:], ep["history_pose"][None, -8:])
    action, pose = ep["action"][None, :2], ep["pose"][None, :2]
    out = {v: world.imagine(action, pose, variant=v) for v in ("base", "unet")}
    assert out["unet"].shape == (1, 2, 3, 32, 32) and torch.isfinite(out["unet"]).all()
    assert not torch.allclose(out["unet"], out["base"])  # its term changes the prediction
    assert world.members("come")[-1] == "unet"  # and it joins CoME
    silent = WorldModel.from_pretrained("cards-tiny", experts=[Expert("unet", unet, context=1, weight=0.0)], steps=2)
    silent.observe(ep["history"][None, -8:], ep["history_action"][None, -8:], ep["history_pose"][None, -8:])
    assert torch.equal(silent.imagine(action, pose, variant="unet"), out["base"])  # weight 0: the prior alone
    with pytest.raises(ValueError, match="taken by come's own"):
        WorldModel.from_pretrained("cards-tiny", experts=[Expert("ltm", unet, context=1)])
