"""Training loop: ``come train`` on accelerate, with EMA, atomic checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from tqdm import tqdm

from .checkpoint import (CheckpointError, build_network, load_config, load_model, load_state, save_config, save_state,
                         save_weights, state_metadata)
from .data.clips import ClipDataset, tensor_to_frames
from .data.episodes import has_split
from .diffusion.loss import diffusion_loss
from .diffusion.sampling import autocast
from .diffusion.schedule import make_scheduler
from .errors import InputError
from .outputs import atomic_write_bytes, remove_stale_temp_files, run_lock, writable_folder
from .metrics.image import psnr
from .models.dit import LAYOUT_FIELDS, retime_positions
from .models.pose_encoder import infer_track, integrate_motion, motion_loss
from .presets import TrainConfig
from .runtime import use_bf16
from .sample import rollout_window
from .video import side_by_side, write_video


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to ``cfg.lr``, then constant."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)


def write_sample(model, cfg: TrainConfig, data: ClipDataset, path: Path, bf16: bool,
                 frames: int = 8) -> tuple[float, float]:
    """Roll out ``frames`` frames on the first held-out episode; write truth | prediction.

    Returns the rollout's mean PSNR and that of copying the last context frame.
    """
    ep = data.episode(0)
    n = min(frames, len(ep["frames"]) - cfg.context)
    pred = rollout_window(model, cfg, ep, 0, cfg.context, n, cfg.sample_steps, bf16=bf16)["pred"]
    truth = ep["frames"][cfg.context : cfg.context + n]
    write_video(path, side_by_side([tensor_to_frames(truth), tensor_to_frames(pred)]))
    copy_last = ep["frames"][cfg.context - 1 : cfg.context].expand_as(truth)
    return float(psnr(pred, truth).mean()), float(psnr(copy_last, truth).mean())


@torch.no_grad()
def track_sample(encoder, data: ClipDataset, device) -> tuple[float, float]:
    """Position RMSE (grid cells) of the pose encoder's dead-reckoned track over the first held-out
    episode, both tracks started at the origin; and that of standing still (for scale)."""
    ep = data.episode(0)
    start = torch.zeros(3)
    truth = integrate_motion(ep["pose"], start)
    pred = infer_track(encoder, ep["frames"].to(device), ep["action"].to(device), start.to(device)).cpu()
    rmse = (pred[:, :2] - truth[:, :2]).pow(2).sum(-1).mean().sqrt()
    still = truth[:, :2].pow(2).sum(-1).mean().sqrt()
    return float(rmse), float(still)


def init_weights(model: torch.nn.Module, init: str | Path, cfg: TrainConfig) -> None:
    """Load run ``init``'s weights into ``model``, a new run of ``cfg``: the same model, or (world models)
    one that differs only in its clip layout (``LAYOUT_FIELDS``: a longer context, a sliding window;
    the temporal positions are re-timed by :func:`~come.models.dit.retime_positions`), may add a
    pose input to a model without one (its new pose path starts at zero: the same function) and may
    leave out a place memory's view path (what remains is its base model: an SLTM from maze-place)."""
    start, start_cfg = load_model(init, network=cfg.network)
    weights = start.state_dict()
    if start_cfg.model == cfg.model:
        model.load_state_dict(weights)
        return
    grows_pose = not start_cfg.model.get("pose_dim")
    drops_views = bool(start_cfg.model.get("views")) and not cfg.model.get("views")
    free = LAYOUT_FIELDS + (("pose_dim", "pose_in_image") if grows_pose else ()) + (("views",) if drops_views else ())
    same = [{k: v for k, v in m.items() if k not in free} for m in (start_cfg.model, cfg.model)]
    if cfg.network != "dit" or same[0] != same[1]:
        raise CheckpointError(f"{init}: its model differs from preset '{cfg.preset}''s; --init needs the same model"
                              f" (a world model may differ in {', '.join(LAYOUT_FIELDS)}, add a pose input and"
                              " leave out place views)")
    if drops_views:
        weights = {k: v for k, v in weights.items() if not k.startswith("view_")}
    weights["pos_time"] = retime_positions(weights["pos_time"], start_cfg.context, start_cfg.clip_frames, cfg.context,
                                           cfg.model.get("max_frames", 8))
    missing, _ = model.load_state_dict(weights, strict=False)
    if any(not k.startswith(("pose_embed.", "pose_token.")) for k in missing):
        raise CheckpointError(f"{init}: weights for {', '.join(missing)} are missing")
    with torch.no_grad():  # the new pose path's output layer starts at zero
        for name in ("pose_embed.2", "pose_token.2"):
            layer = model.get_submodule(name) if any(k.startswith(name) for k in missing) else None
            if layer is not None:
                layer.weight.zero_()
                layer.bias.zero_()


class TrainingDiverged(InputError):
    """The training loss stopped being a finite number."""


def check_run_folder(cfg: TrainConfig, out: Path, resume: bool, init) -> None:
    """Refuse to overwrite a run or an export, to resume nothing, or to resume with another preset or model."""
    writable_folder(out)
    has_state = (out / "state.safetensors").exists()
    if (out / "model.safetensors").exists() and not has_state:
        raise CheckpointError(f"{out}: holds an exported model (no training state); choose another --out")
    if has_state and not resume:
        raise CheckpointError(
            f"{out}: this run folder already has a checkpoint; pass --resume to continue it or choose another --out")
    if resume and not has_state:
        raise CheckpointError(f"{out}: nothing to resume (no state.safetensors)")
    if resume and init is not None:
        raise CheckpointError("--init starts a new run from other weights; it cannot be combined with --resume")
    if resume:
        saved = load_config(out)
        if saved.model != cfg.model or saved.preset != cfg.preset:
            raise CheckpointError(f"{out}: --resume with a different preset or model than the run was started with")
        step = int(state_metadata(out)["step"])
        if step > cfg.steps:
            raise CheckpointError(f"{out}: the run is at step {step}; --steps {cfg.steps} would end it before that")


def load_datasets(cfg: TrainConfig, data: str | Path, progress: bool) -> tuple[ClipDataset, ClipDataset]:
    """The training clips, and the episodes that progress samples are drawn from (the held-out split
    ``test/``, or ``eval/`` in the public Memory Maze dataset, when there is one; else the training set)."""
    world = cfg.network == "dit"
    resolution, action_dim = cfg.model.get("resolution", 32), cfg.model.get("action_dim")
    views = cfg.model.get("views", 0) if world else 0
    train_data = ClipDataset(data, "train", cfg.clip_frames, resolution, cfg.frame_skip, cfg.pose,
                             action_dim, progress=progress, views=views, view_gap=cfg.view_gap)
    if not has_split(data, "test"):
        return train_data, train_data
    return train_data, ClipDataset(data, "test", cfg.clip_frames, resolution, cfg.frame_skip, cfg.pose, action_dim)


def training_loss(model, batch: dict, cfg: TrainConfig, scheduler, gen: torch.Generator, scale=None,
                  shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """The loss of one batch (``shard``: this process's share of the global batch): the diffusion loss
    (world models) or the motion loss (the pose encoder, whose motion ``scale`` is given)."""
    if cfg.network != "dit":
        return motion_loss(model(batch["frames"], batch["action"]), batch["pose"], scale)
    return diffusion_loss(model, batch, cfg.context, scheduler, cfg.p_context_dropout, cfg.p_pose_dropout,
                          generator=gen, p_view_dropout=cfg.p_view_dropout, short_context=cfg.short_context,
                          p_short_context=cfg.p_short_context, levels=cfg.noise_levels(), shard=shard)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The noise stream of a training step: a function of the run's seed and the step alone, so a resumed
    run and a run split across processes draw the noise of one uninterrupted process."""
    return torch.Generator().manual_seed(int(np.random.default_rng((seed, step, 1)).integers(2**62)))


def progress_sample(ema, cfg: TrainConfig, data: ClipDataset, out: Path, step: int, bf16: bool, device, writer
                    ) -> dict:
    """A sample of the EMA model at ``step``: a rollout video and its PSNR (world models) or the
    held-out track error (the pose encoder); returns the log record."""
    ema.eval()
    if cfg.network == "dit":
        score, baseline = write_sample(ema, cfg, data, out / "samples" / f"step_{step:07d}.mp4", bf16)
        writer.add_scalar("sample/rollout_psnr", score, step)
        return {"step": step, "sample_psnr": score, "copy_last_psnr": baseline}
    score, baseline = track_sample(ema, data, device)
    writer.add_scalar("sample/track_rmse", score, step)
    return {"step": step, "track_rmse": score, "standing_still_rmse": baseline}


def optimizer_step(model, ema, optimizer, accelerator, batch: dict, cfg: TrainConfig, scheduler, scale, step: int,
                   out: Path, bf16: bool) -> float:
    """One step on ``batch`` at step ``step``'s learning rate, then the EMA update; returns the loss."""
    model.train()
    for g in optimizer.param_groups:
        g["lr"] = learning_rate(cfg, step)
    with autocast(bf16, accelerator.device):
        loss = training_loss(model, batch, cfg, scheduler, step_generator(cfg.seed, step), scale,
                             (accelerator.process_index, accelerator.num_processes))
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"{out}: the training loss is {loss.item()} at step {step + 1}; stopped without "
                               "saving it (the folder keeps its last checkpoint). Lower --lr or check the data")
    accelerator.backward(loss)  # gradients averaged over the processes: the global batch's mean
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    update_ema(ema, accelerator.unwrap_model(model), min(cfg.ema_decay, (1 + step) / (10 + step)))
    return loss.item()


def log_loss(writer, log_path: Path, cfg: TrainConfig, step: int, mean: float) -> None:
    """The mean loss of the last steps (and the learning rate) to TensorBoard and ``log.jsonl``."""
    writer.add_scalar("train/loss", mean, step)
    writer.add_scalar("train/lr", learning_rate(cfg, step - 1), step)
    with open(log_path, "a") as f:
        f.write(json.dumps({"step": step, "loss": mean, "time": time.time()}) + "\n")


def write_progress(cfg: TrainConfig, out: Path, step: int, end: int, losses: list[float], model, ema, optimizer,
                   sample_data: ClipDataset, bf16: bool, writer) -> None:
    """After ``step``: the loss in the log, a checkpoint and a progress sample when they are due (and at
    ``end``, the last step of this run)."""
    if step % cfg.log_every == 0 or step == end:
        log_loss(writer, out / "log.jsonl", cfg, step, float(np.mean(losses[-cfg.log_every:])))
    if step % cfg.ckpt_every == 0 or step == end:
        save_state(out, step, model, ema, optimizer)
        save_weights(out / "model.safetensors", ema, {"step": step, "preset": cfg.preset})
    if step % cfg.sample_every == 0 or step == cfg.steps:
        record = progress_sample(ema, cfg, sample_data, out, step, bf16, next(ema.parameters()).device, writer)
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def time_is_up(accelerator, t0: float, minutes: float) -> bool:
    """Whether ``minutes`` have passed since ``t0``, decided by the main process for every process (ranks
    that stopped at different steps would wait for each other forever)."""
    flag = [time.time() - t0 >= minutes * 60]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(flag)
    return flag[0]


def start_run(cfg: TrainConfig, out: Path, resume: bool, init, main: bool = True) -> tuple:
    """The network (from ``init``'s weights, if given), its EMA copy, the optimizer and the step: fresh, or
    where the run in ``out`` stopped (``resume``); the main process writes ``out/config.json``."""
    torch.manual_seed(cfg.seed)
    model = build_network(cfg)
    if init is not None:
        init_weights(model, init, cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)
    step = load_state(out, model, ema, optimizer) if resume else 0
    if main:
        if resume:
            truncate_log(out / "log.jsonl", step)
        save_config(out, cfg)
    return model, ema, optimizer, step


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of ``log.jsonl`` up to ``step``: a resumed run logs the later steps again."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True)
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_bytes(path, "".join(kept).encode())


def train(cfg: TrainConfig, data: str | Path, out: str | Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, init: str | Path | None = None, minutes: float | None = None,
          workers: int = 0) -> dict:
    """Train (or resume) a run in ``out``; returns a summary dict. ``init`` starts a new run from another
    run's (EMA) weights, which must have the same model; ``stop_after`` stops early (for tests); ``minutes``
    stops after that much training time, with a checkpoint (``resume`` continues it); ``workers``: processes
    that cut the clips. Under ``accelerate launch`` the batch of ``cfg.batch_size`` clips is split across
    the processes, which together take the steps one process would."""
    out = Path(out)
    check_run_folder(cfg, out, resume, init)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    if cfg.batch_size % accelerator.num_processes:
        raise InputError(f"batch size {cfg.batch_size} does not split evenly across {accelerator.num_processes} "
                         "processes")
    datasets = load_datasets(cfg, data, progress)
    with run_lock(out) if accelerator.is_main_process else contextlib.nullcontext():
        return _run_training(cfg, out, accelerator, datasets, resume, init, progress, stop_after, minutes, workers)


def _run_training(cfg: TrainConfig, out: Path, accelerator, datasets: tuple, resume: bool, init, progress: bool,
                  stop_after: int | None, minutes: float | None, workers: int) -> dict:
    """:func:`train` once its inputs are checked, its data loaded and its run folder held."""
    device = accelerator.device
    bf16 = use_bf16(cfg.precision, device)
    train_data, sample_data = datasets
    main = accelerator.is_main_process
    model, ema, optimizer, step = start_run(cfg, out, resume, init, main)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    batches = train_data.loader(cfg.batch_size, cfg.seed, step, end, workers)
    model, optimizer, batches = accelerator.prepare(model, optimizer, batches)
    ema.to(device)
    scheduler = make_scheduler(cfg.model.get("num_train_timesteps", 1000))
    scale = getattr(accelerator.unwrap_model(model), "scale", None)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb")) if main else None
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.preset}", unit="step",
               disable=not (progress and main))
    losses: list[float] = []
    t0 = time.time()
    first, clips = step, 0
    for batch in batches:
        clips = len(batch["frames"])
        loss = optimizer_step(model, ema, optimizer, accelerator, batch, cfg, scheduler, scale, step, out, bf16)
        step += 1
        if minutes is not None and time_is_up(accelerator, t0, minutes):
            end = step  # the checks below then log and checkpoint this step as the last
        losses.append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-cfg.log_every:]):.4f}")
        if main:  # one process writes the run: its log, checkpoints and samples
            write_progress(cfg, out, step, end, losses, accelerator.unwrap_model(model), ema, optimizer,
                           sample_data, bf16, writer)
        if step >= end:
            break
    bar.close()
    if writer is not None:
        writer.close()
    elapsed = time.time() - t0
    return {
        "main_process": main,
        "processes": accelerator.num_processes,
        "clips_per_process_step": clips,
        "steps": step,
        "seconds": elapsed,
        "seconds_per_step": elapsed / max(1, step - first),
        "final_loss": float(np.mean(losses[-cfg.log_every:])) if losses else None,
        "losses": losses,
        "bf16": bf16,
    }
