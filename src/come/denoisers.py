"""Networks from outside ``come`` as experts: the :class:`~come.compose.Denoiser` protocol over them.

Any network the composition calls must take a clip and per-frame integer levels of ``come``'s noise
schedule (:class:`~come.compose.Denoiser`). :class:`FrameDenoiser` makes one of a 2-D diffusers model
(``UNet2DModel`` and the like: ``model(sample, timestep).sample``) that denoises a frame given the frame
before it, concatenated on the channels; :class:`RescheduledDenoiser` runs a network trained on another
schedule at the timestep whose noise level matches ours.
"""

from __future__ import annotations

import torch

from .diffusion.schedule import make_scheduler


class FrameDenoiser:
    """A 2-D model of ``(noisy frame | previous frame)`` (2C channels in, C out) as a clip denoiser.

    Every frame after the context is predicted from the frame before it (context, or the noisy frame
    being generated); context frames get the model's output too and are ignored by the composition.
    """

    def __init__(self, model: torch.nn.Module, prediction: str = "eps", max_frames: int = 64):
        self.model, self.prediction, self.max_frames = model, prediction, max_frames

    def __call__(self, x, levels, action, pose, context, adapter_names=None, views=None):
        B, T = x.shape[:2]
        previous = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        pair = torch.cat([x, previous], dim=2).flatten(0, 1)
        return self.model(pair, levels.flatten()).sample.view(B, T, *x.shape[2:])


class RescheduledDenoiser:
    """A denoiser trained on another variance-preserving schedule (``their_alphas_cumprod``, e.g. a
    diffusers scheduler's ``alphas_cumprod``): each of our levels is given to it as its timestep of the
    nearest ``alpha_bar``, the same noise level (both noise as ``sqrt(ab) x0 + sqrt(1 - ab) eps``)."""

    def __init__(self, denoiser, their_alphas_cumprod: torch.Tensor, num_train_timesteps: int = 1000):
        ours = make_scheduler(num_train_timesteps).alphas_cumprod
        self.denoiser, self.prediction, self.max_frames = denoiser, denoiser.prediction, denoiser.max_frames
        self.timesteps = (their_alphas_cumprod[None, :].double() - ours[:, None].double()).abs().argmin(1)

    def __call__(self, x, levels, *args, **kwargs):
        return self.denoiser(x, self.timesteps.to(levels.device)[levels], *args, **kwargs)
