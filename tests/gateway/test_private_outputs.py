"""What the gateway's commands write that holds personal data is readable by its owner alone
(0600), whatever the umask, as the store and every private key are.

Found by probing: the demo's birth certificates (the child's and parents' names, the child's
personal id), its evidence bundle and its log, and the bundle ``audit export`` writes, were 0644
in a 0755 folder: readable by every local user.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import file_mode

CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]


@pytest.mark.usefixtures("debian_umask")
def test_the_demos_artefacts_its_log_and_an_audit_export_are_the_owners_alone(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo-output"
    done = subprocess.run(
        [*CLI, "demo", "--json", "--output", str(out), "--dossiers", "2"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    art = out / "artifacts"
    certificates = sorted(art.glob("birth-certificate-*.pdf"))
    [bundle] = art.glob("evidence-*.zip")
    assert certificates
    private = [*certificates, bundle, out / "lienthong.log"]
    assert {p.name: file_mode(p) for p in private} == {p.name: 0o600 for p in private}

    exported = tmp_path / "export.zip"
    code = bundle.name.removeprefix("evidence-").removesuffix(".zip")
    config = str(out / "lienthong.toml")
    done = subprocess.run(
        [*CLI, "audit", "export", "--dossier", code, str(exported), "--config", config],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert exported.read_bytes().startswith(b"PK")
    assert file_mode(exported) == 0o600
