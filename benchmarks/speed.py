"""Training-step and sampling time of a preset, fp32 and bf16 side by side in one run.

    python benchmarks/speed.py --preset cards-tiny --json speed.json

Each measurement is the median of ``--repeats`` timings after ``--warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from come.diffusion.loss import diffusion_loss
from come.diffusion.sampling import autocast
from come.sample import rollout
from come.diffusion.schedule import make_scheduler
from come.models.dit import DiTConfig, VideoDiT
from come.presets import train_config
from come.runtime import cpu_has_fast_bf16, median_seconds


def measure(preset: str, warmup: int, repeats: int, sample_frames: int, sample_steps: int) -> dict:
    cfg = train_config(preset)
    torch.manual_seed(0)
    model = VideoDiT(DiTConfig(**cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = make_scheduler()
    m = model.config
    B, T = cfg.batch_size, cfg.clip_frames
    batch = {"frames": torch.rand(B, T, 3, m.resolution, m.resolution) * 2 - 1,
             "action": torch.randn(B, T, m.action_dim)}
    if m.pose_dim:
        batch["pose"] = torch.rand(B, T, m.pose_dim) * 2 - 1
    ep_frames = torch.rand(1, cfg.context + sample_frames, 3, m.resolution, m.resolution) * 2 - 1
    ep_action = torch.randn(1, cfg.context + sample_frames, m.action_dim)
    ep_pose = torch.rand(1, cfg.context + sample_frames, m.pose_dim) if m.pose_dim else None
    out = {"preset": preset, "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "batch": B,
           "clip_frames": T, "sample_frames": sample_frames, "ddim_steps": sample_steps, "results": {}}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        def step(bf16=bf16):
            with autocast(bf16):
                loss = diffusion_loss(model, batch, cfg.context, sched)
            loss.backward()
            opt.step()
            opt.zero_grad()

        def sample(bf16=bf16):
            rollout(model.eval(), sched, ep_frames, ep_action, ep_pose, cfg.context, sample_frames, cfg.future,
                    steps=sample_steps, bf16=bf16)
            model.train()

        t_step = median_seconds(step, repeats, warmup)
        t_sample = median_seconds(sample, max(1, repeats // 2), 1)
        out["results"][name] = {"train_step_s": t_step, "sample_s_per_frame": t_sample / sample_frames}
    out["bf16_over_fp32_train"] = out["results"]["bf16"]["train_step_s"] / out["results"]["fp32"]["train_step_s"]
    out["bf16_over_fp32_sample"] = (out["results"]["bf16"]["sample_s_per_frame"]
                                    / out["results"]["fp32"]["sample_s_per_frame"])
    out["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "fast_bf16": cpu_has_fast_bf16(), "torch": torch.__version__}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cards-tiny")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sample-frames", type=int, default=8)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    r = measure(a.preset, a.warmup, a.repeats, a.sample_frames, a.sample_steps)
    print(f"{'precision':<10} {'train step (s)':>15} {'sample (s/frame)':>17}")
    for name, v in r["results"].items():
        print(f"{name:<10} {v['train_step_s']:>15.3f} {v['sample_s_per_frame']:>17.3f}")
    print(f"bf16/fp32: train {r['bf16_over_fp32_train']:.1f}x, sample {r['bf16_over_fp32_sample']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
