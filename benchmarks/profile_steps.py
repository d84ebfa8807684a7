"""Where the time of memorizing and of sampling goes, by kind of operation, fp32 and bf16 side by side.

    python benchmarks/profile_steps.py --ckpt cards-tiny --json profile.json

On one Memory Cards recall episode (the demo's): memorizing its history with the dataset's recipe
(``--memorize-steps`` steps) and imagining ``--frames`` frames of its recall phase with CoME (the base model and
the memorized long-term memory), each under ``torch.profiler``. Each operator's own CPU time goes to a kind
(attention, linear layers, normalization, element-wise and copies, the optimizer, other); "outside operators"
is the wall time no operator accounts for (Python, the dispatcher, the profiler itself). The shares are of
the wall time of each run; the profiler slows a run down, so its wall time is given beside the unprofiled one.
The operators that took the most time of their own are listed too.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import torch
from torch.profiler import ProfilerActivity, profile

from come.protocols.recall import recall_episode
from come.runtime import cpu_has_fast_bf16, describe_device
from come.world import WorldModel

KINDS = {  # the first pattern an operator's name matches names its kind
    "attention": r"scaled_dot_product|_flash_attention|softmax|baddbmm|bmm",
    "linear layers": r"addmm|::mm|::linear|matmul",
    "normalization": r"layer_norm|group_norm",
    "optimizer": r"_foreach|adam",
    "element-wise and copies": r"add|mul|sub|div|gelu|silu|exp|pow|sqrt|copy|cat|clone|to_copy|where|fill|zero|"
                               r"index|gather|select|slice|view|reshape|permute|transpose|expand|contiguous|"
                               r"randn|normal|empty|stack|split|sum|mean|clamp|neg|rsub",
}


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS.items() if re.search(pattern, name, re.I)), "other")


def shares(prof, wall: float) -> dict:
    """Seconds of operators' own CPU time per kind, and the wall time outside them."""
    seconds = {kind: 0.0 for kind in [*KINDS, "other"]}
    for event in prof.key_averages():
        if "::" in event.key:  # operators; autograd's nodes (AddmmBackward0...) do their work in child operators
            seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    seconds["outside operators"] = max(wall - sum(seconds.values()), 0.0)
    return {kind: round(s, 3) for kind, s in seconds.items()}


def run(world: WorldModel, ep: dict, frames: int, steps: int) -> dict:
    """Memorize, then imagine, each timed unprofiled and profiled."""
    history = (ep["history"][None], ep["history_action"][None], ep["history_pose"][None])
    future = (ep["action"][None, :frames], ep["pose"][None, :frames])
    out = {}
    for name, work in (("memorize", lambda: world.memorize(steps=steps)),
                       ("imagine", lambda: world.imagine(*future, variant="come"))):
        world.observe(*history, keep_memory=name == "imagine")
        t0 = time.perf_counter()
        work()
        plain = time.perf_counter() - t0
        world.observe(*history, keep_memory=name == "imagine")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            work()
            wall = time.perf_counter() - t0
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:6]
        out[name] = {"seconds": round(plain, 3), "profiled_seconds": round(wall, 3), "by_kind": shares(prof, wall),
                     "top_operators": {e.key: round(e.self_cpu_time_total / 1e6, 3) for e in top}}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="cards-tiny")
    p.add_argument("--frames", type=int, default=4, help="recall-phase frames imagined")
    p.add_argument("--memorize-steps", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    result = {"cpu": describe_device(torch.device("cpu")), "threads": torch.get_num_threads(),
              "fast_bf16": cpu_has_fast_bf16(), "frames": a.frames, "memorize_steps": a.memorize_steps}
    for precision in ("fp32", "bf16"):
        world = WorldModel.from_pretrained(a.ckpt, bf16=precision == "bf16", steps=20)
        ep = recall_episode(1234, 0, world.cfg)
        run(world, ep, a.frames, 1)  # warm-up
        result[precision] = run(world, ep, a.frames, a.memorize_steps)
        for name, r in result[precision].items():
            kinds = ", ".join(f"{k} {s / r['profiled_seconds']:.0%}" for k, s in r["by_kind"].items())
            top = ", ".join(f"{k} {v:.2f} s" for k, v in r["top_operators"].items())
            print(f"{precision} {name}: {r['seconds']:.2f} s ({r['profiled_seconds']:.2f} s profiled): {kinds}\n"
                  f"  top operators: {top}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
