"""A PKCS#11 module that cannot be used: the one-line error says why.

With SOFTHSM2_CONF naming no file, SoftHSM2 loads and its C_Initialize fails (python-pkcs11
raises GeneralError, with no text): the error read only ``cannot load PKCS#11 module
/usr/lib/softhsm/libsofthsm2.so``, and the user looked for a missing file. Each runs in a child
process: the PKCS#11 library reads SOFTHSM2_CONF once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signing.keys import DEFAULT_PKCS11_MODULE
from signing.testing import SAMPLE_XML
from tests.signing.run_cli import ROOT


def _sign_with_token_key(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from gateway.cli import main; main()",
            "sign",
            "xml",
            str(tmp_path / "in.xml"),
            str(tmp_path / "out.xml"),
            "--key",
            "pkcs11:token=lienthong;object=gw",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "LIENTHONG_PKCS11_PIN": "1234", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not os.path.exists(DEFAULT_PKCS11_MODULE), reason="SoftHSM2 not installed")
def test_a_module_that_does_not_start_says_where_to_look(tmp_path: Path) -> None:
    done = _sign_with_token_key(tmp_path, SOFTHSM2_CONF=str(tmp_path / "missing.conf"))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: cannot load PKCS#11 module {DEFAULT_PKCS11_MODULE}: it did not start "
        "(GeneralError): is its configuration readable (for SoftHSM2, the file SOFTHSM2_CONF "
        "names)?\n"
    )


def test_a_module_that_cannot_be_loaded_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.so"
    done = _sign_with_token_key(tmp_path, LIENTHONG_PKCS11_MODULE=str(missing))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: cannot load PKCS#11 module {missing}: cannot open shared object file: "
        "No such file or directory\n"
    )
    (tmp_path / "junk.so").write_bytes(b"not a library\n" * 512)
    done = _sign_with_token_key(tmp_path, LIENTHONG_PKCS11_MODULE=str(tmp_path / "junk.so"))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: cannot load PKCS#11 module {tmp_path / 'junk.so'}: ")
    assert "ELF" in done.stderr  # the loader's reason: not a shared library
