"""``come play``: play inside the world model, its memory switched on and off by key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..outputs import writable_file
from .common import Compile, Device, JsonOut, Precision, UserError, check_outputs, command_group, guard, write_json

play_app = command_group("play", "Play inside the world model, its memory switched on and off by key.")

Twin = Annotated[bool, typer.Option(help="Run the real environment beside the model under the same keys.")]
Memory = Annotated[bool, typer.Option(help="Start with the memory on (M, or a 'memory' line, switches it).")]
DdimSteps = Annotated[int, typer.Option(min=1, help="DDIM steps per frame (fewer: faster play).")]
Record = Annotated[Optional[Path], typer.Option(help="Write what the player saw as a video (.mp4 or .gif).")]
Scale = Annotated[int, typer.Option(min=1, help="Pixels on screen per model pixel.")]


def _keys_option(actions: tuple[str, ...]):
    return Annotated[Optional[Path], typer.Option(help=(
        f"Key file to play without a window: one key a line, of {', '.join(actions)}, memory."))]


@play_app.command("cards")
@guard
def play_cards(
    ckpt: str = typer.Option("cards-tiny", help="A shipped Memory Cards model by name, or a run folder."),
    keys: _keys_option(("up", "down", "left", "right", "toggle")) = None,
    twin: Twin = False,
    memory: Memory = True,
    ddim_steps: DdimSteps = 4,
    seed: int = typer.Option(0, help="Seed of the board (its layout) and of the memorization."),
    memorize_steps: int = typer.Option(50, min=1, help="Memorization steps on the observed frames."),
    w_ltm: float = typer.Option(1.0, help=(
        "Contrast weight of the long-term memory: at 1 CoME is the memorized model itself (one pass a step); "
        "above 1 it leaves ghosts of objects on cards covered again.")),
    learn_steps: int = typer.Option(0, min=0, help=(
        "Keep memorizing the game's stream in the background, this many steps a round, on a second copy of the "
        "model (0: the memory is fitted on the observe phase only).")),
    load_memory: Optional[Path] = typer.Option(None, help="Folder of a memory saved by --save-memory."),
    save_memory: Optional[Path] = typer.Option(None, help="Save the game's memory into this folder when it ends."),
    record: Record = None,
    scale: Scale = 8,
    precision: Precision = "auto",
    device: Device = "auto",
    json_out: JsonOut = None,
):
    """Memory Cards inside the world model: arrows move the cursor, space turns a card, M switches the memory.

    The board opens after the recall protocol's observe phase (every card seen once, then all covered):
    the long-term memory memorizes those frames first (or loads --load-memory), then each key is one
    frame the model draws from its own frames so far, as CoME (memory on) or the base model (off). With
    --twin the real board runs beside it and the JSON has PSNR against it per frame. Without --keys a
    window takes the keyboard (the 'play' extra: pygame); Esc ends the game.
    """
    from ..play import cards_game

    from ..world import ExpertWeights, WorldModel

    script, world = _start("cards", ckpt, keys, record, json_out, ddim_steps, precision, device,
                           weights=ExpertWeights(ltm=w_ltm))
    learner = WorldModel.from_pretrained(ckpt, bf16=world.bf16, device=world.device) if learn_steps else None
    game = cards_game(world, seed, memory, load_memory, learner=learner, learn_steps=learn_steps,
                      steps=memorize_steps)
    try:
        _play(game, script, twin, record, scale, json_out,
              {"checkpoint": str(ckpt), "seed": seed, "ddim_steps": ddim_steps, "w_ltm": w_ltm,
               "learn_steps": learn_steps})
    finally:
        if game.learning is not None:
            game.learning.close()
    if save_memory is not None:
        world.save_memories(save_memory)


@play_app.command("maze")
@guard
def play_maze(
    ckpt: str = typer.Option("maze-place", help="A Memory Maze model with a place memory, by name or run folder."),
    keys: _keys_option(("noop", "forward", "left", "right", "forward_left", "forward_right")) = None,
    twin: Twin = False,
    memory: Memory = True,
    ddim_steps: DdimSteps = 4,
    seed: int = typer.Option(0, help="Seed of the maze (its layout and objects) and of the explorer's walk."),
    observe: int = typer.Option(200, min=1, max=900, help=(
        "Steps the scripted explorer walks before the first key: the history the place memory recalls from.")),
    record: Record = None,
    scale: Scale = 8,
    precision: Precision = "auto",
    device: Device = "auto",
    compile: Compile = False,
    json_out: JsonOut = None,
):
    """Memory Maze (9x9) inside the world model: up walks, left and right turn, Q and E walk in an arc,
    space waits, M switches the place memory.

    The real maze (memory-maze, the 'maze' extra) is walked by the scripted explorer for --observe steps;
    those frames are the history, which the place memory recalls from by pose. Then each key steps the
    real maze (it gives the pose) and the model draws the next frame from its own frames so far, with the
    place memory (on) or the base model alone (off). --twin shows the real view beside the model's.
    The game ends at the environment's time limit (1000 steps) or on Esc.
    """
    from ..play import maze_game

    script, world = _start("maze", ckpt, keys, record, json_out, ddim_steps, precision, device,
                           come_experts=("place",), compile=compile)
    game = maze_game(world, seed, observe, memory)
    try:
        _play(game, script, twin, record, scale, json_out,
              {"checkpoint": str(ckpt), "seed": seed, "observe": observe, "ddim_steps": ddim_steps})
    finally:
        game.env.close()


def _start(name: str, ckpt: str, keys: Path | None, record: Path | None, json_out: Path | None, ddim_steps: int,
           precision: str, device: str, **world_settings):
    """Check the outputs and the key file (or the display), then load the world model."""
    from ..data import cards, maze
    from ..play import has_display, read_keys
    from ..runtime import pick_device, use_bf16
    from ..world import WorldModel

    check_outputs(json_out)
    if record is not None:
        writable_file(record, "--record", (".mp4", ".gif"))
    actions = {"cards": cards.ACTIONS, "maze": maze.ACTIONS}[name]
    script = read_keys(keys, actions) if keys is not None else None
    if script is None and not has_display():
        raise UserError("no display to play on: give --keys FILE to play a key script without a window")
    on = pick_device(device)
    world = WorldModel.from_pretrained(ckpt, steps=ddim_steps, bf16=use_bf16(precision, on), device=on,
                                       **world_settings)
    return script, world


def _play(game, script, twin: bool, record: Path | None, scale: int, json_out: Path | None, settings: dict) -> None:
    """Play the script or the window's keys; print the frame rate (and twin PSNR) and write the JSON."""
    from ..play import Window, play, screen

    window = None
    if script is None:
        height, width = screen(game, twin, scale).shape[:2]
        window = Window(width, height, game.name)
    stats = play(game, script, twin, record, scale, window) | settings | {"twin": twin}
    if game.learning is not None:
        stats["learned_rounds"] = game.learning.rounds
    fps = stats["frames_per_second"]
    typer.echo(f"{stats['frames']} frames at {fps:.1f} frames/s" if fps else "no frames drawn")
    if twin and stats["frames"]:
        typer.echo("twin PSNR (dB), memory on / off: " + " / ".join(
            "-" if stats[k] is None else f"{stats[k]:.2f}" for k in ("mean_twin_psnr_memory_on",
                                                                   "mean_twin_psnr_memory_off")))
    write_json(json_out, stats)
