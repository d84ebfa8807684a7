"""``come demo``: Memory Cards recall, or Memory Maze revisits, on a CPU in a few minutes.

Generates zig-zag recall episodes (every card is shown once, then every card is
uncovered again), loads the ``cards-tiny`` checkpoint shipped inside the package
(or trains a quick one when none is shipped or ``--train-steps`` asks for it),
and draws the recall phase with the base model alone and with CoME (the base
model plus its long-term memory, memorized on the episode). Prints the table and
writes videos, pictures and JSON to the output folder.

With ``--env maze`` it walks new Memory Maze episodes in the real environment, loads the shipped
``maze-place`` (the base model, and the place memory when given the history frames seen from the
nearest poses) and predicts the windows where the agent comes back to a place it saw, with the base
model alone and with CoME.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import SHIPPED_DIR, load_model
from .data.cards import generate_dataset
from .outputs import save_json
from .protocols.recall import evaluate_recall, format_recall_table
from .runtime import use_bf16
from .world import WorldModel

SHIPPED = SHIPPED_DIR / "cards-tiny"
SHIPPED_MAZE = SHIPPED_DIR / "maze-place"  # base model and place memory in one network
DEMO_VARIANTS = ("base", "come")
MAZE_DEMO_VARIANTS = ("base", "place", "come")


def run_demo(out: Path, ckpt: Path | None = None, episodes: int = 4, train_steps: int | None = None,
             memorization_steps: int = 20, seed: int = 1234, progress: bool = True, echo=print,
             device="cpu", ddim_steps: int = 10) -> dict:
    """Run the demo into ``out`` on ``device``, ``ddim_steps`` a generated frame; returns the recall result."""
    out = Path(out)
    if ckpt is None and (train_steps is not None or not (SHIPPED / "model.safetensors").is_file()):
        from .presets import train_config
        from .train import train

        steps = train_steps or 300
        echo(f"training a quick cards-tiny model for {steps} steps (no shipped checkpoint used)")
        generate_dataset(out / "data", 100, seed=seed + 1, split="train", progress=False)
        ckpt = out / "run"
        train(train_config("cards-tiny", steps=steps, sample_every=steps, ckpt_every=steps), out / "data", ckpt,
              progress=progress)
    ckpt = Path(ckpt or SHIPPED)
    echo(f"model: {ckpt}")
    base, cfg = load_model(ckpt, device)
    world = WorldModel(base, cfg, steps=ddim_steps, bf16=use_bf16("auto", device))
    result = evaluate_recall(world, episodes, seed, memorization_steps, DEMO_VARIANTS, out=out, videos=episodes,
                             progress=progress)
    table = format_recall_table(result)
    echo(table)
    save_json(out / "recall.json", result)
    (out / "recall.md").write_text(table + "\n")
    echo(f"wrote {out}/recall_*.mp4 (truth | base | CoME), {out}/recall_frames.png (last frames), "
         f"{out}/recall.png and {out}/recall.json")
    return result


def run_maze_demo(out: Path, episodes: int = 2, frames: int = 32, seed: int = 4321, progress: bool = True,
                  echo=print, walk: int = 1000, history: int = 200, memorization_steps: int = 50,
                  device="cpu") -> dict:
    """Memory Maze revisits with the shipped models into ``out``: ``episodes`` walks of ``walk`` steps,
    ``frames`` predicted after ``history``; returns the protocol's result."""
    from .data.episodes import episode_files
    from .data.maze import generate_dataset
    from .protocols.maze import COME_EXPERTS, evaluate_maze, format_maze_table
    from .runtime import use_bf16

    out = Path(out)
    echo(f"walking {episodes} Memory Maze episodes (seed {seed}; about 40 s each on one core)")
    generate_dataset(out / "data", episodes, seed, steps=walk, split="eval", workers=min(2, episodes))
    cfg = load_model(SHIPPED_MAZE)[1]  # (also checks the shipped weights before any work)
    echo(f"model: {SHIPPED_MAZE}")
    bf16 = use_bf16("auto", device)

    def make_world(rank: int) -> WorldModel:  # the shipped model is its own place memory
        return WorldModel.from_pretrained(SHIPPED_MAZE, rank=rank, steps=10, bf16=bf16, come_experts=COME_EXPERTS,
                                          device=device)

    result = evaluate_maze(make_world, episode_files(out / "data", "test"), cfg, ("revisits",), MAZE_DEMO_VARIANTS,
                           history=history, frames=frames, memorize={"steps": memorization_steps}, seed=seed, out=out,
                           progress=progress)
    table = format_maze_table(result)
    echo(table)
    save_json(out / "maze.json", result)
    (out / "maze.md").write_text(table + "\n")
    if result["protocols"]["revisits"]["windows"]:
        echo(f"wrote {out}/revisits_00.mp4 and .gif (truth | base | CoME), {out}/revisits.png and {out}/maze.json")
    else:
        echo(f"wrote {out}/maze.json; these walks never came back to a place: try more --episodes or another --seed")
    return result
