"""``sandbox serve`` given ports or addresses it cannot use: one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connectors.cli import sandbox
from signing.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "65535"], ["65535 leaves no room for 5 registries", "at most 65531"]),
        (["--port", "65534", "--registry", "portal", "--registry", "business", "--registry",
          "insurance"], ["65534 leaves no room for 3 registries", "at most 65533"]),
        (["--port", "65536"], ["65536 is not in the range"]),
        (["--port", "-1"], ["-1 is not in the range"]),
    ],
)  # fmt: skip
def test_ports_past_65535_are_refused(args: list[str], words: list[str]) -> None:
    result = CliRunner().invoke(sandbox, ["serve", *args])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--port" in errors[0], result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def test_port_in_use(held_port: int) -> None:
    result = CliRunner().invoke(sandbox, ["serve", "--port", str(held_port)])
    one_line_error(result, f"cannot listen on 127.0.0.1:{held_port}", "address already in use")
    result = CliRunner().invoke(
        sandbox, ["serve", "--port", str(held_port), "--registry", "portal"]
    )
    one_line_error(result, f"cannot listen on 127.0.0.1:{held_port}", "address already in use")


def test_a_host_it_cannot_listen_on() -> None:
    result = CliRunner().invoke(sandbox, ["serve", "--host", "nosuch.invalid"])
    one_line_error(result, "cannot listen on nosuch.invalid", "unknown host")
    result = CliRunner().invoke(sandbox, ["serve", "--host", "192.0.2.1"])  # TEST-NET-1
    one_line_error(result, "cannot listen on 192.0.2.1", "address not available")


def test_port_in_use_in_a_real_process(held_port: int) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", "sandbox", "serve",
         "--port", str(held_port), "--registry", "portal"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:  # fmt: skip
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and out == ""
    assert err == f"Error: cannot listen on 127.0.0.1:{held_port}: address already in use\n"


def test_a_chosen_free_port_still_works() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", "sandbox", "serve",
         "--port", str(port), "--registry", "portal", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            started = json.loads(process.stdout.readline())
            assert started["registries"] == {"portal": f"http://127.0.0.1:{port}"}
        finally:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and err == ""
