"""The docs stay true: the command reference is the command line's, every command a page shows takes the options
it names, every public name is documented, links land, and the README's results are BENCHMARKS.md's."""

import re
import tomllib
from pathlib import Path

import pytest
import typer

import come
from come.cli import app
from come.cli.reference import commands_markdown

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_command_reference_is_made_from_the_command_line():
    assert (ROOT / "docs" / "commands.md").read_text() == commands_markdown(), \
        "docs/commands.md is stale: python -m come.cli.reference > docs/commands.md"


def _commands() -> dict[str, set[str]]:
    """Each command path ("eval maze") and the option names it takes."""
    out = {}

    def walk(path, command):
        if hasattr(command, "list_commands"):  # a group: named alone in prose, with no option
            out[" ".join(path)] = {"--help"}
            ctx = command.context_class(command)
            for name in command.list_commands(ctx):
                walk(path + [name], command.get_command(ctx, name))
        else:
            out[" ".join(path)] = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}

    walk([], typer.main.get_command(app))
    return out


def _command_lines(text: str) -> list[str]:
    """The `come ...` command lines of a page: in code blocks and in inline code."""
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`\n]*\bcome(?:\.cli)? [^`\n]*)`", text)
    return [line for line in lines if re.search(r"(^|[\s/(&])come(\.cli)? [a-z]", line)]


def _check_line(line: str, commands: dict[str, set[str]]) -> list[str]:
    words = re.split(r"\s+", re.split(r"\bcome(?:\.cli)? ", line, maxsplit=1)[1].split("#")[0].split("&&")[0])
    path = []
    while words and " ".join(path + [words[0]]) in commands:  # down the groups to the command
        path.append(words.pop(0))
    command = " ".join(path)
    if command not in commands:
        return [f"{line!r}: no command '{command or words[:1]}'"]
    options = {w.strip("[]()`,").split("=")[0] for w in words if w.strip("[(`").startswith("--")}
    options = {part for o in options for part in o.split("/")}  # --fp16/--fp32
    return [f"{line!r}: {command} has no {o}" for o in sorted(options - commands[command])]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_on_a_page_names_options_the_command_line_has(page):
    commands = _commands()
    problems = [p for line in _command_lines(page.read_text()) for p in _check_line(line, commands)]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_wrong_option():
    commands = _commands()
    assert _check_line("come eval maze --data D --windws 3", commands) == ["'come eval maze --data D --windws 3': "
                                                                          "eval maze has no --windws"]
    assert not _check_line("come eval maze --data D [--stm RUN] [--w-place 2]", commands)
    assert _command_lines("run `come demo --out x` then\n```bash\ncome toy --weight 2\n```") == \
        ["come toy --weight 2", "come demo --out x"]


def test_every_public_name_has_its_line_in_the_api_page():
    documented = set(re.findall(r"^\| `([\w_]+)` \|", (ROOT / "docs" / "api.md").read_text(), re.M))
    assert documented == set(come.__all__)


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_lands(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"https?:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in {
                _slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}:
            broken.append(target)
    assert not broken, broken


def test_the_readme_is_a_landing_page_whose_results_are_measured():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "Composition of Memory Experts for Diffusion World Models" in readme.split("## Quick start")[0]
    table = readme.split("## Results")[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    ours = [row[2] for row in rows[1:]]  # the "come here" column
    figures = {f for cell in ours for f in re.findall(r"[+-]?\d+\.\d+x?", cell)}
    benchmarks = (ROOT / "BENCHMARKS.md").read_text().split("## Contents")[1]  # the sections, not the summary
    assert figures and not [f for f in figures if f not in benchmarks], figures


def test_licence_citation_and_version_agree():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
