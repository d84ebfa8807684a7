"""What single world models cost beside the composition of experts (``come bench compute --baselines``): each
model's parameters, one training step and its rollout, timed on the device at hand in the run that times the
experts (the paper's Table 9 next to its Table 2 baselines: maze-full, maze-swa, maze-ssm).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..runtime import median_seconds


def training_clips(cfg, episode: dict[str, torch.Tensor], batch: int, device) -> dict[str, torch.Tensor]:
    """``batch`` clips of ``cfg``'s length cut at even steps from the episode's history (and its poses, for a
    model that reads them): the batch a training step of that model takes, place views left out."""
    frames, length = episode["history"], cfg.clip_frames
    if len(frames) < length:
        raise InputError(f"a training clip of this model is {length} frames; the timed history has {len(frames)}")
    starts = torch.linspace(0, len(frames) - length, batch).long().tolist()
    keys = {"frames": "history", "action": "history_action"}
    if cfg.model.get("pose_dim") and episode.get("history_pose") is not None:
        keys["pose"] = "history_pose"
    return {k: torch.stack([episode[name][s : s + length] for s in starts]).to(device) for k, name in keys.items()}


def training_step_seconds(cfg, episode: dict[str, torch.Tensor], batch: int, device, bf16: bool,
                          repeats: int = 3) -> float:
    """Median seconds of one training step (loss, backward, AdamW update) of a fresh network of ``cfg`` on
    ``batch`` clips of the episode, after an untimed one."""
    from ..checkpoint import build_network
    from ..diffusion.sampling import autocast
    from ..diffusion.schedule import make_scheduler
    from ..train import step_generator, training_loss

    torch.manual_seed(cfg.seed)
    model = build_network(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    clips = training_clips(cfg, episode, batch, torch.device(device))
    scheduler = make_scheduler(cfg.model.get("num_train_timesteps", 1000))

    def step():
        with autocast(bf16, torch.device(device)):
            loss = training_loss(model, clips, cfg, scheduler, step_generator(cfg.seed, 0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    return median_seconds(step, repeats=repeats, warmup=1)


def model_costs(runs: list, episode: dict[str, torch.Tensor], batch: int, ddim_steps: int, device, bf16: bool,
                seed: int = 0) -> list[dict]:
    """Per run (the first is the composition's base): its parameters, seconds per training step at ``batch``
    clips, and seconds to imagine the episode's future from its history alone (after an untimed rollout),
    also per frame and as a multiple of the first run's."""
    from ..checkpoint import build_network
    from ..world import WorldModel

    history = [episode[k][None] if episode.get(k) is not None else None
               for k in ("history", "history_action", "history_pose", "action", "pose")]
    frames = len(episode["action"])
    rows = []
    for run in runs:
        world = WorldModel.from_pretrained(run, device=device, steps=ddim_steps, bf16=bf16)
        world.predict(*history, ("base",), seed)  # untimed warm-up
        seconds = world.predict(*history, ("base",), seed)[1]["base"]
        with torch.device("meta"):  # the network alone, without the adapters of the world's memory
            parameters = sum(p.numel() for p in build_network(world.cfg).parameters())
        rows.append({"run": str(run), "preset": world.cfg.preset, "parameters": parameters,
                     "train_seconds_per_step": training_step_seconds(world.cfg, episode, batch, device, bf16),
                     "rollout_seconds": seconds, "rollout_seconds_per_frame": seconds / frames})
    for row in rows:
        row["rollout_x_base"] = row["rollout_seconds"] / rows[0]["rollout_seconds"]
    return rows


def format_model_costs(rows: list[dict], batch: int) -> str:
    """The rows of :func:`model_costs` as a markdown table."""
    head = ["model", "preset", "parameters", f"training step (batch {batch})", "rollout per frame"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append(f"| {row['run']} | {row['preset']} | {row['parameters'] / 1e6:.2f}M | "
                     f"{row['train_seconds_per_step']:.2f} s | {row['rollout_seconds_per_frame']:.3f} s "
                     f"({row['rollout_x_base']:.1f}x) |")
    return "\n".join(lines)
