"""The command reference (``docs/commands.md``), made from the command line itself so it cannot drift from it:

    python -m come.cli.reference > docs/commands.md

A test compares the committed page with what this prints.
"""

from __future__ import annotations

import inspect

import typer

from . import app

HEADER = """# Command reference

Every `come` command with every option, its default and its help, as `come COMMAND --help` prints them. Made by
`python -m come.cli.reference > docs/commands.md` (a test checks it against the command line); the guides in
this folder show the commands at work.

What every command shares:

- Bad input (a missing or corrupt checkpoint, a malformed `config.json`, NaN in weights or episodes, frames of the
  wrong shape, an unknown preset, a count below 1) ends with one line `error: <file or argument>: <what is
  wrong>` and exit code 2, and changes nothing on disk. Outputs are checked before any work starts; files are
  written atomically; a killed `come train` resumes with `--resume`, a killed `come data` completes when run
  again.
- A count of steps says what it counts: `--ddim-steps`, `--memorize-steps`, `--env-steps`, and `come train`'s
  `--steps`. Elsewhere `--steps` is a short name for the one count a command is about.
- `--memorize name=value,...` changes settings of the dataset's memorization recipe for one run.
- The expert options (`--stm RUN`, `--place RUN`, `--sltm RUN` and `--w-NAME`) come from the expert registry,
  `come.experts.EXPERTS`: one for each built-in expert.
- Every command that runs a model takes `--device` (`auto`: CUDA, then Apple's MPS, then the CPU).
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command_section(path: list[str], command) -> list[str]:
    ctx = command.context_class(command, info_name=" ".join(path))
    lines = [f"## `{' '.join(path)}`", "", inspect.cleandoc(command.help or ""), ""]
    rows = [param.get_help_record(ctx) for param in command.get_params(ctx)]
    rows = [r for r in rows if r is not None and not r[0].startswith("--help")]
    if rows:
        lines += ["| option | what it sets |", "|---|---|"]
        lines += [f"| `{_cell(opts)}` | {_cell(help)} |" for opts, help in rows]
        lines.append("")
    return lines


def _walk(path: list[str], command) -> list[str]:
    """The sections of a command, or of every command of a group (typer's click commands, by duck typing: typer
    carries its own copy of click)."""
    if hasattr(command, "list_commands"):
        ctx = command.context_class(command)
        return [line for name in command.list_commands(ctx) for line in _walk(path + [name],
                                                                               command.get_command(ctx, name))]
    return _command_section(path, command)


def commands_markdown() -> str:
    """The reference page: a section per command (its help, then a table of its options)."""
    lines = [HEADER] + _walk(["come"], typer.main.get_command(app))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(commands_markdown(), end="")
