"""Output that cannot be written (a full disk: ``lienthong … > /dev/full``) is one line on stderr
and exit 1, not a Python traceback. Real ``lienthong`` processes writing to Linux's /dev/full, whose
every write fails with ENOSPC. (A closed pipe, ``| head -c1``, is click's: silent, exit 1.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sys.executable).with_name("lienthong")  # the installed console script

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")


def _to_dev_full(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [str(ENTRY_POINT), *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["--help"], "lienthong"),  # written while click parses the command line
        (["outbox", "--help"], "lienthong outbox"),
        (["pki", "init", "newpki", "--base-url", "http://127.0.0.1:9"], "lienthong pki init"),
    ],
)
def test_output_to_a_full_disk_is_one_line_and_exit_1(
    args: list[str], command: str, tmp_path: Path
) -> None:
    done = _to_dev_full(*args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        f"Error: {command}: cannot write the output: No space left on device\n",
    )
