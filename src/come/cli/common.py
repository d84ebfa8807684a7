"""What every ``come`` command shares: the app, the user-error type, option parsing and JSON output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from ..outputs import save_json, writable_file, writable_folder

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "[default: ...]" must show as written
    help="come: Composition of Memory Experts for diffusion video world models.",
)


Precision = Annotated[str, typer.Option(help="auto, bf16 or fp32.")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then the CPU).")]
Compile = Annotated[bool, typer.Option("--compile/--no-compile", help=(
    "Sample through torch.compile'd networks: 10-60 s to compile each input shape, then 5-23% faster sampling "
    "on 2 CPU cores; for long runs (needs a C++ compiler; BENCHMARKS.md, 'Compiled sampling')."))]
Sampler = Annotated[str, typer.Option(help=(
    "ddim (deterministic DDIM), dpm++ (DPM-Solver++ 2M) or unipc (UniPC): diffusers' samplers of the same levels."))]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help=(
    "Read a dataset that stores pickles (RECON in NWM's layout: traj_data.pkl). Unpickling runs code from the "
    "file: give it only for files you trust."))]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Write the result as JSON here.")]
Memorize = Annotated[str, typer.Option("--memorize", help=(
    "Memorization settings on top of the dataset's recipe, as name=value pairs, e.g. lr=0.05,batch_size=96 "
    "(names: the fields of come.recipes.Recipe and NoiseLevels, grad_clip, first_frames)."))]


def command_group(name: str, help: str) -> typer.Typer:
    """A group of subcommands (``come <name> ...``) on the app."""
    group = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=help)
    app.add_typer(group, name=name)
    return group


class UserError(InputError):
    """Bad input to a command (an option, or options that do not go together): one line, exit code 2."""


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_names(text: str, option: str, allowed) -> tuple[str, ...]:
    """The comma-separated names of ``text``, each one of ``allowed``."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names or any(v not in allowed for v in names):
        raise UserError(f"{option}: choose from {', '.join(allowed)}, got '{text}'")
    return names


def parse_choice(text: str, option: str, allowed) -> None:
    if text not in allowed:
        raise UserError(f"{option}: choose from {', '.join(allowed)}, got '{text}'")


def parse_ints(text: Optional[str], option: str) -> tuple[int, ...]:
    """The comma-separated positive integers of ``text`` (none when it is empty)."""
    try:
        values = tuple(int(v) for v in text.split(",")) if text else ()
    except ValueError:
        raise UserError(f"{option}: expected comma-separated integers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise UserError(f"{option}: values must be at least 1, got '{text}'")
    return values


def parse_memorize(text: str) -> dict:
    """The memorization settings of ``--memorize`` (see :func:`come.recipes.parse_settings`)."""
    from ..recipes import parse_settings

    try:
        settings = parse_settings(text)
    except InputError as e:
        raise UserError(f"--memorize: {e}") from None
    if "steps" in settings:
        raise UserError("--memorize: give the steps with --memorize-steps")
    return settings


def check_outputs(json_out: Optional[Path] = None, folder: Optional[Path] = None, file: Optional[Path] = None,
                  suffixes: tuple[str, ...] = ()) -> None:
    """Refuse an output path that cannot be written before any work starts: ``--json``, an ``--out`` folder
    or an ``--out`` file (with one of ``suffixes``)."""
    if json_out is not None:
        writable_file(json_out, "--json")
    if folder is not None:
        writable_folder(folder)
    if file is not None:
        writable_file(file, suffixes=suffixes)


def write_json(path: Optional[Path], result: dict) -> None:
    """Write a command's result as strict JSON (no NaN), atomically, when ``--json`` is given."""
    if path is not None:
        save_json(path, result)


def guard(fn):
    """Turn bad input (:class:`~come.errors.InputError`, a missing Memory Maze environment) into one clear
    line and exit code 2; any other exception is a bug and shows as one."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..data.maze import MazeEnvError

        try:
            return fn(*args, **kwargs)
        except (InputError, MazeEnvError) as e:
            fail(str(e))

    return wrapper


def expert_options(fn):
    """Give a command, from the expert registry (:data:`come.experts.EXPERTS`), an option ``--NAME RUN`` for each
    built-in expert that runs on a network of its own and ``--w-NAME`` for each expert's contrast weight. The
    command receives them as ``expert_runs`` ({name: run or None}) and ``expert_weights`` ({name: weight, or None
    for the default: the dataset's or the expert's})."""
    import functools
    import inspect

    from ..experts import EXPERTS

    def option(name: str, kind, flag: str, metavar: str, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[Optional[kind], typer.Option(flag, metavar=metavar, help=help)])

    runs = [option(name, str, f"--{name}", "RUN", e.option) for name, e in EXPERTS.items() if e.own_network]
    weights = [option(f"w_{name}", float, f"--w-{name}", "W", f"Contrast weight of the {e.label} expert [default: "
                      f"{e.weight:g}, or the base model's dataset's: come.datasets]") for name, e in EXPERTS.items()]
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
           if p.name not in ("expert_runs", "expert_weights")]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        expert_runs = {p.name: kwargs.pop(p.name, None) for p in runs}
        expert_weights = {p.name[2:]: kwargs.pop(p.name, None) for p in weights}
        return fn(*args, expert_runs=expert_runs, expert_weights=expert_weights, **kwargs)

    params = own + runs + weights
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
