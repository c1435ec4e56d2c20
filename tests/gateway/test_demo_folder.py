"""What ``lienthong demo`` leaves in its folder: secrets and personal data readable by their
owner alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import file_mode

LIENTHONG = str(Path(sys.executable).with_name("lienthong"))

# What the demo leaves that anyone may read: certificates, CRLs, the PKI's index of serials, and
# the official letter it exchanges (a budget report, no one's personal data) with its receipt.
PUBLIC = (
    "pki/*.cert.pem",
    "pki/root.pem",
    "pki/intermediate.pem",
    "pki/index.json",
    "pki/crl/*.crl",
    "artifacts/audit-signer.pem",
    "artifacts/cong-van-2491.edxml",
    "artifacts/cong-van-2491.receipt.xml",
)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo's folder, run as a shell runs it, under the usual umask (022: files 0644)."""
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    done = subprocess.run(
        [LIENTHONG, "demo", "--json", "--output", str(out), "--dossiers", "3"],
        capture_output=True, text=True, timeout=600, check=False, umask=0o022,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_every_file_but_certificates_crls_and_the_letter_is_the_owners_alone(
    demo_folder: Path,
) -> None:
    """Found by probing: lienthong.toml (the subsystems' bearer tokens, motcua's callback
    secret) was left 0644, and summary.json (the name of the official who handled the letter)
    too, beside a store, a log and birth certificates written 0600."""
    public = {p for pattern in PUBLIC for p in demo_folder.glob(pattern)}
    files = [p for p in demo_folder.rglob("*") if p.is_file()]
    modes = {str(p.relative_to(demo_folder)): file_mode(p) for p in files}
    for name in ("lienthong.toml", "summary.json", "lienthong.log", "lienthong.db",
                 "pki/root.key.pem", "pki/intermediate.key.pem", "pki/gateway.key.pem",
                 "pki/gateway.p12"):  # fmt: skip
        assert name in modes  # the rule below is about files that are there
    assert any(n.startswith("artifacts/birth-certificate-") for n in modes)
    assert any(n.startswith("artifacts/evidence-") for n in modes)
    private = {n: oct(m) for n, m in modes.items() if demo_folder / n not in public}
    assert {n: m for n, m in private.items() if m != oct(0o600)} == {}
    assert {oct(modes[str(p.relative_to(demo_folder))]) for p in public} == {oct(0o644)}
    assert "demo-callback-secret" in (demo_folder / "lienthong.toml").read_text("utf-8")
