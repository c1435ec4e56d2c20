"""The README's CLI synopsis names every command's arguments as its ``--help`` does and every option
it has (``--config`` aside: the sentence after the block says which commands take it), and no
option it lacks. Found by probing: the block left out ``audit verify --trust``, ``--json`` on
several commands and most of ``docs``' options, and named ``flows resume``'s argument otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from gateway.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
# Said once, after the block, for every command that uses a store or a gateway.
SAID_AFTER = {"--config"}


def _synopsis() -> list[str]:
    """Each command of the block under ``## CLI`` (one a line, or two side by side, or continued
    on indented lines), comments (``# …``) left out."""
    text = README.read_text("utf-8")
    block = text.split("\n## CLI\n", 1)[1].split("```\n", 1)[1].split("\n```", 1)[0]
    commands: list[str] = []
    for line in block.splitlines():
        line = line.split(" # ", 1)[0].strip()
        if not line.startswith("lienthong "):  # the previous command, continued
            commands[-1] += f" {line}"
            continue
        commands += [c for c in re.split(r"\s{2,}(?=lienthong )", line) if c]
    return commands


SYNOPSIS = _synopsis()


def _command(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The command ``words`` name (after ``lienthong``), its path, and the words after it."""
    command: click.Command = main
    path: list[str] = []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words.pop(0))
        command = command.commands[path[-1]]
    return command, path, words


def _path(line: str) -> str:
    return " ".join(_command(line.split()[1:])[1])


def _read(line: str) -> tuple[click.Command, list[str], set[str]]:
    """The command, the arguments and the options a synopsis line names."""
    assert line.startswith("lienthong "), line
    words = [w for w in re.split(r"[\s\[\]()]+", line.removeprefix("lienthong ")) if w]
    command, _, rest = _command(words)
    flags = {o for p in command.params if isinstance(p, click.Option) and p.is_flag for o in p.opts}
    arguments: list[str] = []
    options: set[str] = set()
    while rest:
        word = rest.pop(0)
        if word.startswith("--"):
            options.add(word)
            if word not in flags and rest:
                rest.pop(0)  # its value
        elif word not in ("|", "…"):
            arguments.append(word.removesuffix("…"))
    return command, arguments, options


def test_the_synopsis_names_every_command() -> None:
    def leaves(group: click.Group, path: str) -> set[str]:
        found: set[str] = set()
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found |= leaves(command, f"{path} {name}")
            else:
                found.add(f"{path} {name}")
        return found

    named = {f"lienthong {_path(line)}" for line in SYNOPSIS}
    assert named == leaves(main, "lienthong")


@pytest.mark.parametrize("line", SYNOPSIS, ids=[_path(line) for line in SYNOPSIS])
def test_a_synopsis_line_is_the_commands_help(line: str) -> None:
    command, arguments, options = _read(line)
    real = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    assert options <= real, f"{line}: no such option {sorted(options - real)}"
    # A command shown on several lines (sign xml, sign pdf) shows each option on one of them.
    shown = set().union(*(_read(other)[2] for other in SYNOPSIS if _path(other) == _path(line)))
    assert real - SAID_AFTER <= shown, f"{line}: leaves out {sorted(real - SAID_AFTER - shown)}"
    expected = [p for p in command.params if isinstance(p, click.Argument)]
    assert len(arguments) == len(expected), f"{line}: arguments {arguments}"
    for word, param in zip(arguments, expected, strict=True):
        if isinstance(param.type, click.Choice):  # written as one of them, or all: xml|pdf
            assert set(word.split("|")) <= set(param.type.choices), f"{line}: {word}"
        else:
            assert word == param.human_readable_name, (
                f"{line}: {word}, not {param.human_readable_name}"
            )
