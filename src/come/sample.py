"""Roll a trained model out on episodes and score it against the truth and copy-the-last-frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .data.clips import frames_to_tensor, pose_track, skip_actions, tensor_to_frames
from .data.episodes import EpisodeError, load_episode
from .compose import DiTDenoiser, Expert, History, composed_eps_fn
from .diffusion.sampling import autoregress
from .diffusion.schedule import make_scheduler
from .errors import InputError
from .outputs import save_json, writable_file
from .metrics.image import psnr, ssim
from .models.dit import DiTConfig, VideoDiT
from .presets import TrainConfig
from .runtime import use_bf16
from .video import side_by_side, write_video


def episode_tensors(path: str | Path, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Load an episode for a model: frames (T,C,R,R) in [-1, 1], actions, pose (and Memory Cards'
    ``covered``), all with the model's frame skip; clear errors on misfit."""
    ep = load_episode(path, cfg.model.get("resolution"))
    image = ep["image"]
    if image.shape[1] != image.shape[2]:
        raise EpisodeError(f"{path}: frames are {image.shape[1]}x{image.shape[2]}; the model takes square frames")
    action_dim = cfg.model.get("action_dim", DiTConfig.action_dim)
    if ep["action"].shape[1] != action_dim:
        raise EpisodeError(f"{path}: actions have {ep['action'].shape[1]} dims, the model expects {action_dim}")
    skip = cfg.frame_skip
    out = {
        "frames": frames_to_tensor(image[::skip], cfg.model["resolution"]),
        "action": torch.from_numpy(skip_actions(ep["action"], skip)),
    }
    if cfg.pose:
        out["pose"] = pose_track(ep, cfg.pose, skip, path)
    if "covered" in ep:  # Memory Cards: which cards are face down, for the flip diagnostics
        out["covered"] = torch.from_numpy(np.ascontiguousarray(ep["covered"][::skip]))
    return out


def rollout(model: VideoDiT, scheduler, frames: torch.Tensor, action: torch.Tensor, pose: torch.Tensor | None,
            context: int, n_frames: int, chunk: int, steps: int = 20, bf16: bool = False,
            generator: torch.Generator | None = None, progress: bool = False, context_level: int = 0) -> torch.Tensor:
    """Generate ``n_frames`` after the first ``context`` of ``frames`` (B,>=K,C,H,W), ``chunk`` at a time, each
    chunk conditioned on the last ``context`` frames known (a sliding window, seen at ``context_level``): the
    composition with the model as its prior and no expert. ``action``/``pose`` (B,K+n_frames,·) are the
    episode's, frame-aligned with ``frames``."""
    if action.shape[1] < context + n_frames:
        raise InputError(f"need actions for {context + n_frames} frames, got {action.shape[1]}")
    prior = Expert("model", DiTDenoiser(model), context)

    def eps_for(known: torch.Tensor, f: int):
        N = known.shape[1]
        noise = torch.randn(known.shape, generator=generator).to(known.device) if context_level else None
        history = History(known, action[:, : N + f], None if pose is None else pose[:, : N + f],
                          context_noise=noise, context_level=context_level)
        return composed_eps_fn(prior, [], history, scheduler, bf16=bf16)

    return autoregress(eps_for, frames[:, :context], n_frames, chunk, scheduler, steps, generator, progress)


def rollout_window(
    model: VideoDiT,
    cfg: TrainConfig,
    ep: dict[str, torch.Tensor],
    start: int,
    context: int,
    frames: int,
    steps: int = 20,
    chunk: int | None = None,
    bf16: bool = False,
    seed: int = 0,
    sampler: str = "ddim",
) -> dict[str, torch.Tensor]:
    """Predict ``frames`` frames after ``context`` frames starting at ``start`` with ``sampler``
    (:func:`~come.diffusion.schedule.make_scheduler`); returns pred, truth, copy-last."""
    chunk = chunk or cfg.future
    max_frames = model.config.max_frames
    if context < 1 or context + chunk > max_frames:
        raise InputError(f"context {context} + chunk {chunk} must be between 2 and the model's max_frames={max_frames}")
    total = len(ep["frames"])
    if start + context + frames > total:
        raise InputError(
            f"the episode has {total} frames; start {start} + context {context} + frames {frames} do not fit")
    sl = slice(start, start + context + frames)
    device = next(model.parameters()).device
    pred = rollout(
        model, make_scheduler(model.config.num_train_timesteps, sampler),
        ep["frames"][None, sl].to(device), ep["action"][None, sl].to(device),
        ep["pose"][None, sl].to(device) if "pose" in ep else None,
        context, frames, chunk, steps=steps, bf16=bf16, generator=torch.Generator().manual_seed(seed),
        context_level=cfg.context_noise_level,
    )[0].cpu()
    truth = ep["frames"][start + context : start + context + frames]
    copy_last = ep["frames"][start + context - 1].expand_as(truth)
    return {"pred": pred, "truth": truth, "copy_last": copy_last}


def filmstrip(truth: torch.Tensor, pred: torch.Tensor, path: Path, frames: int = 8, scale: int = 3) -> Path:
    """PNG of the first ``frames`` frames: truth (top row) and prediction (bottom row)."""
    import imageio.v2 as imageio

    rows = []
    for x in (truth[:frames], pred[:frames]):
        f = tensor_to_frames(x)
        f = np.repeat(np.repeat(f, scale, axis=1), scale, axis=2)
        pad = np.full((f.shape[0], f.shape[1], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([np.concatenate([a, p], axis=1) for a, p in zip(f, pad)], axis=1))
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    imageio.imwrite(path, np.concatenate([rows[0], gap, rows[1]], axis=0))
    return path


def sample_episode(ckpt, episode, out, context=None, frames=16, start=0, steps=20, chunk=None, precision="auto",
                   seed=0, device="cpu", sampler="ddim") -> dict:
    """``come sample``: roll out, write truth | prediction as mp4 + gif, a PNG filmstrip (truth above,
    prediction below) and per-frame metrics as JSON."""
    out = writable_file(out, suffixes=(".mp4",))
    model, cfg = load_model(ckpt, device)
    bf16 = use_bf16(precision, device)
    ep = episode_tensors(episode, cfg)
    r = rollout_window(model, cfg, ep, start, context or cfg.context, frames, steps, chunk, bf16, seed, sampler)
    video = side_by_side([tensor_to_frames(r["truth"]), tensor_to_frames(r["pred"])])
    write_video(out, video)
    gif = write_video(out.with_suffix(".gif"), video)
    strip = filmstrip(r["truth"], r["pred"], out.with_suffix(".png"))
    result = {
        "checkpoint": str(ckpt),
        "episode": str(episode),
        "context": context or cfg.context,
        "frames": frames,
        "sampler": sampler,
        "ddim_steps": steps,
        "psnr": psnr(r["pred"], r["truth"]).tolist(),
        "ssim": ssim(r["pred"], r["truth"]).tolist(),
        "copy_last_psnr": psnr(r["copy_last"], r["truth"]).tolist(),
        "video": str(out),
        "gif": str(gif),
        "filmstrip": str(strip),
    }
    for key in ("psnr", "ssim", "copy_last_psnr"):
        result[f"mean_{key}"] = float(np.mean(result[key]))
    save_json(out.with_suffix(".json"), result)
    return result
