"""Ctrl-C on a command that does its work and ends: one line naming the command, exit 130, and no
file half-written. A real ``lienthong`` process, really interrupted (SIGINT), while it waits on a
real socket that accepted its connection and never answers — so the interrupt lands mid-work,
whatever the host's speed. (The commands that serve until interrupted stop on Ctrl-C with exit 0:
their own tests.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from signing.testing import TestPKI

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sys.executable).with_name("lienthong")  # the installed console script


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A listening socket that accepts and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        yield server


def _interrupt_once_connected(server: socket.socket, *args: str, cwd: Path) -> tuple[int, str, str]:
    """Run ``lienthong ARGS``, SIGINT it once it has connected to ``server``; its exit code, stdout
    and stderr. SIGINT is given its default disposition in the child: a shell's background job
    (as CI may run pytest) starts with it ignored."""
    with subprocess.Popen(
        [str(ENTRY_POINT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"lienthong never connected: {process.returncode} {out} {err}")
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_docs_inbox_interrupted_is_one_line_and_exit_130(
    silent_server: socket.socket, tmp_path: Path
) -> None:
    port = silent_server.getsockname()[1]
    code, out, err = _interrupt_once_connected(
        silent_server,
        "docs",
        "inbox",
        "--url",
        f"http://127.0.0.1:{port}",
        "--token",
        "t",
        cwd=tmp_path,
    )
    assert (code, out, err) == (130, "", "Error: lienthong docs inbox: interrupted\n")


def test_sign_interrupted_writes_nothing(
    silent_server: socket.socket, tmp_path: Path, pki: TestPKI
) -> None:
    """Interrupted while it waits for its timestamp: no OUT, no ``.OUT.part``, exit 130."""
    port = silent_server.getsockname()[1]
    (tmp_path / "in.xml").write_text("<HoSo><HoTen>Nguyễn Văn A</HoTen></HoSo>")
    code, out, err = _interrupt_once_connected(
        silent_server,
        "sign",
        "xml",
        "in.xml",
        "ký.xml",
        "--key",
        str(pki.key_path("agency-000.00.00.H41")),
        "--cert",
        str(pki.cert_path("agency-000.00.00.H41")),
        "--level",
        "B-T",
        "--tsa",
        f"http://127.0.0.1:{port}/",
        cwd=tmp_path,
    )
    assert (code, out, err) == (130, "", "Error: lienthong sign: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xml"]


def test_interrupted_while_starting_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Ctrl-C in the second or two ``lienthong`` spends importing its modules (pyHanko, aiohttp,
    lxml) was a Python traceback through the import machinery. The interrupt is made to land
    there: a ``sitecustomize`` holds the import of aiohttp (which gateway.cli makes) until
    SIGINT comes."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import sys, time\n"
        "class Hold:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'aiohttp':\n"
        "            sys.stdout.write('importing\\n'); sys.stdout.flush(); time.sleep(60)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hold())\n"
    )
    with subprocess.Popen(
        [str(ENTRY_POINT), "--version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{ROOT}"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "importing\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert (process.returncode, out, err) == (130, "", "Error: lienthong: interrupted\n")
