"""``come play``: play inside the world model, its memory switched on and off by key."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..outputs import writable_file
from .common import Device, JsonOut, Precision, UserError, check_outputs, command_group, guard, write_json

play_app = command_group("play", "Play inside the world model, its memory switched on and off by key.")


@play_app.command("cards")
@guard
def play_cards(
    ckpt: str = typer.Option("cards-tiny", help="A shipped Memory Cards model by name, or a run folder."),
    keys: Optional[Path] = typer.Option(None, help=(
        "Key file to play without a window: one key a line, of up, down, left, right, toggle, memory.")),
    twin: bool = typer.Option(False, help="Run the real board beside the model under the same keys."),
    memory: bool = typer.Option(True, help="Start with the long-term memory on (M, or a 'memory' line, switches)."),
    ddim_steps: int = typer.Option(4, min=1, help="DDIM steps per frame (fewer: faster play)."),
    seed: int = typer.Option(0, help="Seed of the board (its layout) and of the memorization."),
    memorize_steps: int = typer.Option(50, min=1, help="Memorization steps on the observed frames."),
    load_memory: Optional[Path] = typer.Option(None, help="Folder of a memory saved by --save-memory."),
    save_memory: Optional[Path] = typer.Option(None, help="Save the game's memory into this folder."),
    record: Optional[Path] = typer.Option(None, help="Write what the player saw as a video (.mp4 or .gif)."),
    scale: int = typer.Option(8, min=1, help="Pixels on screen per model pixel."),
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
    check_outputs(json_out)
    if record is not None:
        writable_file(record, "--record", (".mp4", ".gif"))
    from ..play import CardsGame, Window, has_display, play, read_keys
    from ..runtime import pick_device, use_bf16
    from ..world import WorldModel

    script = read_keys(keys) if keys is not None else None
    if script is None and not has_display():
        raise UserError("no display to play on: give --keys FILE to play a key script without a window")
    on = pick_device(device)
    world = WorldModel.from_pretrained(ckpt, steps=ddim_steps, bf16=use_bf16(precision, on), device=on)
    game = CardsGame(world, seed, memory, load_memory, steps=memorize_steps)
    if save_memory is not None:
        world.save_memories(save_memory)
    window = Window(*_screen_size(game, twin, scale)) if script is None else None
    stats = play(game, script, twin, record, scale, window)
    stats |= {"checkpoint": str(ckpt), "seed": seed, "ddim_steps": ddim_steps, "twin": twin}
    fps = stats["frames_per_second"]
    typer.echo(f"{stats['frames']} frames at {fps:.1f} frames/s" if fps else "no frames drawn")
    if twin and stats["frames"]:
        typer.echo("twin PSNR (dB), memory on / off: " + " / ".join(
            "-" if stats[k] is None else f"{stats[k]:.2f}" for k in ("mean_twin_psnr_memory_on",
                                                                   "mean_twin_psnr_memory_off")))
    write_json(json_out, stats)


def _screen_size(game, twin: bool, scale: int) -> tuple[int, int]:
    from ..play import screen

    height, width = screen(game, twin, scale).shape[:2]
    return width, height
