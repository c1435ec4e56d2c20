"""click's usage errors under ``lienthong``: one line on stderr (the command, click's reason, a
pointer to --help), nothing on stdout, exit 2. Everything else click does at the entry point stays
as click does it: --help, --version, ``Error: …`` exit 1, ``Aborted!``, explicit exit codes; an
interrupt (Ctrl-C) is one line, exit 130."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sys.executable).with_name("lienthong")  # the installed console script


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="lienthong")


def usage_error_line(result: Result, command: str, *reason: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr naming the command and the reason."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith(f"Error: {command}: "), line
    assert line.endswith(f" (see '{command} --help')"), line
    for word in reason:
        assert word in line, (word, line)
    return line


# (args, command path, words of click's reason)
CASES = {
    # unknown command
    "top: unknown command": (["nosuch"], "lienthong", ["No such command 'nosuch'"]),
    "top: unknown command, a near miss": (
        ["outbx"],
        "lienthong",
        ["No such command 'outbx'", "Did you mean 'outbox'?"],
    ),
    "nested: unknown command": (["outbox", "nosuch"], "lienthong outbox", ["'nosuch'"]),
    "nested: unknown command (signing)": (["pki", "nosuch"], "lienthong pki", ["'nosuch'"]),
    # unknown option
    "top: unknown option": (["--bogus"], "lienthong", ["No such option '--bogus'"]),
    "top-level command: unknown option": (["sign", "--bogus"], "lienthong sign", ["'--bogus'"]),
    "nested: unknown option": (
        ["outbox", "list", "--bogus"],
        "lienthong outbox list",
        ["No such option '--bogus'"],
    ),
    # bad argument / option type
    "top-level command: bad option type": (
        ["demo", "--dossiers", "abc"],
        "lienthong demo",
        ["'--dossiers'", "'abc'", "integer"],
    ),
    "nested: bad argument type": (
        ["outbox", "replay", "abc"],
        "lienthong outbox replay",
        ["Invalid value for 'JOB_ID': 'abc' is not a valid integer range"],
    ),
    "nested: negative argument": (
        ["outbox", "replay", "-1"],
        "lienthong outbox replay",
        ["Invalid value for 'JOB_ID': -1 is not in the range"],
    ),
    "nested: out of range": (
        ["outbox", "list", "--after", "-1"],
        "lienthong outbox list",
        ["'--after'", "-1"],
    ),
    # missing argument / option value
    "top-level command: missing argument": (
        ["sign", "xml"],
        "lienthong sign",
        ["Missing argument 'IN'"],
    ),
    "nested: missing argument": (
        ["outbox", "replay"],
        "lienthong outbox replay",
        ["Missing argument 'JOB_ID'"],
    ),
    "nested: missing argument (signing)": (
        ["pki", "init"],
        "lienthong pki init",
        ["Missing argument 'DIRECTORY'"],
    ),
    "nested: option without its value": (
        ["outbox", "list", "--state"],
        "lienthong outbox list",
        ["'--state'", "requires an argument"],
    ),  # click raises this one without a context: the command is still named
    "top: a flag given a value": (
        ["--version=3"],
        "lienthong",
        ["Option '--version' does not take a value"],
    ),
    # an empty argument
    "nested: empty argument": (
        ["flows", "resume", ""],
        "lienthong flows resume",
        ["Invalid value for 'CODE'", "is empty"],
    ),  # was "Error: no dossier " and exit 1, after opening the store
    "nested: blank argument": (
        ["flows", "resume", " "],
        "lienthong flows resume",
        ["Invalid value for 'CODE'", "is empty"],
    ),
    # bytes of the command line that are not UTF-8 (Python's surrogates), where a name is matched
    # against the store: each was a traceback (UnicodeEncodeError) once the store was opened
    "nested: argument not UTF-8": (
        ["flows", "resume", "\udcff"],
        "lienthong flows resume",
        ["Invalid value for 'CODE'", "not UTF-8", "'\\xff'"],
    ),
    **{
        f"audit query {option}: not UTF-8": (
            ["audit", "query", option, "a\udcffb"],
            "lienthong audit query",
            [f"Invalid value for '{option}'", "not UTF-8", "'a\\xffb'"],
        )
        for option in ("--dossier", "--document", "--member", "--service", "--cursor")
    },
    # bad choice
    "top-level command: bad choice": (
        ["sign", "docx", "a", "b", "--key", "k"],
        "lienthong sign",
        ["'docx'", "'xml'", "'pdf'"],
    ),
    "nested: bad choice": (
        ["sandbox", "serve", "--registry", "nope"],
        "lienthong sandbox serve",
        ["Invalid value for '--registry'", "'nope' is not one of", "'population'"],
    ),
    "nested: bad choice (outbox)": (
        ["outbox", "list", "--state", "zombie"],
        "lienthong outbox list",
        ["'zombie'", "'dead'"],
    ),
}


@pytest.mark.parametrize(("args", "command", "reason"), CASES.values(), ids=list(CASES))
def test_usage_errors_are_one_line(args: list[str], command: str, reason: list[str]) -> None:
    line = usage_error_line(run(*args), command, *reason)
    assert "Usage:" not in line and "Try '" not in line


def test_click_s_closing_period_goes_before_the_pointer() -> None:
    line = usage_error_line(run("outbox", "replay", "abc"), "lienthong outbox replay")
    assert line == (
        "Error: lienthong outbox replay: Invalid value for 'JOB_ID': 'abc' is not a valid integer"
        " range (see 'lienthong outbox replay --help')"
    )


def test_a_usage_error_raised_by_a_command_itself_is_one_line_too() -> None:
    # docs inbox raises click.UsageError from its callback when no gateway is named
    result = CliRunner(env={"LIENTHONG_URL": None, "LIENTHONG_TOKEN": None,
                            "LIENTHONG_CONFIG": None}).invoke(
        main, ["docs", "inbox"], prog_name="lienthong"
    )  # fmt: skip
    usage_error_line(result, "lienthong docs inbox", "name the gateway")


# ---- what must not change ----------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["-h"], ["outbox", "replay", "--help"]])
def test_help_is_unchanged(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: lienthong") and "Options:" in result.stdout
    assert result.stderr == ""


def test_version_is_unchanged() -> None:
    result = run("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("lienthong, version ")
    assert result.stderr == ""


def test_a_bare_group_still_shows_its_help() -> None:
    # click's NoArgsIsHelpError: help text (not a complaint), on stderr, exit 2, as before
    result = run("outbox")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: lienthong outbox") and "Commands:" in result.stderr


@pytest.fixture
def extra_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A few throw-away commands under ``main`` for behaviour no real command shows on demand."""

    @click.command()
    def fails() -> None:
        raise click.ClickException("the store is\nnot there")

    @click.command()
    def usage() -> None:
        raise click.UsageError("first line\n\nsecond line\r\n\tthird.")

    @click.command()
    @click.argument("value")
    def badparam(value: str) -> None:
        raise click.BadParameter(f"{value!r} is\nwrong", param_hint="'VALUE'")

    @click.command()
    @click.argument("code", type=int)
    def exits(code: int) -> None:
        sys.exit(code)

    @click.command()
    @click.argument("code", type=int)
    @click.pass_context
    def ctxexits(ctx: click.Context, code: int) -> None:
        ctx.exit(code)

    @click.command()
    def aborts() -> None:
        raise click.Abort()

    @click.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    for command in (fails, usage, badparam, exits, ctxexits, aborts, interrupted):
        monkeypatch.setitem(main.commands, command.name or "", command)
    yield


@pytest.mark.usefixtures("extra_commands")
def test_a_click_exception_is_still_error_and_exit_1() -> None:
    result = run("fails")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: the store is\nnot there\n"  # click's own, untouched


@pytest.mark.usefixtures("extra_commands")
def test_a_multi_line_usage_message_is_one_line() -> None:
    line = usage_error_line(run("usage"), "lienthong usage")
    assert (
        line
        == "Error: lienthong usage: first line second line third (see 'lienthong usage --help')"
    )
    line = usage_error_line(run("badparam", "x"), "lienthong badparam")
    assert "Invalid value for 'VALUE': 'x' is wrong (see" in line


@pytest.mark.usefixtures("extra_commands")
@pytest.mark.parametrize("command", ["exits", "ctxexits"])
@pytest.mark.parametrize("code", [0, 2, 3])
def test_explicit_exit_codes_are_kept(command: str, code: int) -> None:
    result = run(command, str(code))
    assert result.exit_code == code and result.output == ""


@pytest.mark.usefixtures("extra_commands")
def test_abort_is_still_aborted_and_exit_1() -> None:
    result = run("aborts")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Aborted!"


@pytest.mark.usefixtures("extra_commands")
def test_an_interrupt_is_one_line_and_exit_130() -> None:
    """Ctrl-C is no failure of the command's: exit 130 (128 + SIGINT, as shells say it), one line,
    so that ``lienthong audit verify || alarm`` does not take an interrupt for an altered log
    (it said ``Aborted!`` after a blank line, exit 1: the exit code of a failed verification)."""
    result = run("interrupted")
    assert result.exit_code == 130
    assert result.stdout == ""
    assert result.stderr == "Error: lienthong interrupted: interrupted\n"


def test_without_standalone_mode_the_error_propagates_as_a_usage_error() -> None:
    with pytest.raises(click.UsageError) as caught:
        main.main(["outbox", "replay", "abc"], prog_name="lienthong", standalone_mode=False)
    assert caught.value.exit_code == 2
    assert "'abc' is not a valid integer range" in caught.value.format_message()
    assert isinstance(caught.value.__cause__, click.BadParameter)  # click's own, for debugging


# ---- the installed entry point, in its own process ---------------------------------------------
def entry_point(*args: str) -> subprocess.CompletedProcess[str]:
    assert ENTRY_POINT.is_file(), f"{ENTRY_POINT} missing: pip install -e . in this venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    return subprocess.run(
        [str(ENTRY_POINT), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuch"], "Error: lienthong: No such command 'nosuch' (see 'lienthong --help')"),
        (
            ["outbox", "replay", "abc"],
            "Error: lienthong outbox replay: Invalid value for 'JOB_ID': 'abc' is not a valid"
            " integer range (see 'lienthong outbox replay --help')",
        ),
        (
            ["sign", "--bogus"],
            "Error: lienthong sign: No such option '--bogus' (see 'lienthong sign --help')",
        ),
        (
            ["pki", "init"],
            "Error: lienthong pki init: Missing argument 'DIRECTORY'"
            " (see 'lienthong pki init --help')",
        ),
    ],
)
def test_the_installed_entry_point(args: list[str], expected: str) -> None:
    done = entry_point(*args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", expected + "\n")


def test_the_installed_entry_point_help_version_and_error() -> None:
    done = entry_point("--help")
    assert done.returncode == 0 and done.stdout.startswith("Usage: lienthong [OPTIONS] COMMAND")
    assert done.stderr == ""
    done = entry_point("--version")
    assert done.returncode == 0 and done.stdout.startswith("lienthong, version ")
    assert done.stderr == ""
    # a ClickException from a real command: still click's "Error: …", exit 1
    done = entry_point("outbox", "list", "--config", str(ROOT / "no-such-lienthong.toml"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "(see '" not in done.stderr
