"""What ``lienthong demo`` leaves in its folder: secrets and personal data readable by their
owner alone, and a folder ``lienthong serve --config demo-output/lienthong.toml`` runs as the
README says — its test PKI's CRLs and OCSP served, so a revoked certificate is refused as
revoked, not accepted as "revocation status unknown (soft-fail)"."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.demo_stories import STC, _auth, _package
from gateway.exchange.model import VN_TZ
from signing.testing import TestPKI, free_port, sample_pdf
from tests.conftest import file_mode
from tests.serving import serving

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


@asynccontextmanager
async def _serve(folder: Path) -> AsyncIterator[tuple[str, Path]]:
    """``lienthong serve --config <folder>/lienthong.toml`` (its listen address moved to a free
    port by the environment) until the block ends: its base URL and its log."""
    port = free_port()
    log = folder.parent / "serve.log"
    env = {**os.environ, "LIENTHONG_GATEWAY_LISTEN": f"127.0.0.1:{port}"}
    async with serving(folder / "lienthong.toml", port, log, env) as base:
        yield base, log


async def _send_signed_by(base: str, pki: TestPKI, subject: str) -> tuple[int, dict[str, str]]:
    pdf = sample_pdf()
    package, _ = await asyncio.to_thread(
        _package, pki, pdf, datetime.now(VN_TZ).date(), signer=subject
    )
    headers = _auth(STC, **{"Content-Type": "application/xml"})
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/v1/documents", data=package, headers=headers) as r,
    ):
        return r.status, await r.json()


def _copy(demo_folder: Path, tmp_path: Path) -> tuple[Path, TestPKI]:
    folder = tmp_path / "demo-output"
    shutil.copytree(demo_folder, folder)
    return folder, TestPKI.load(folder / "pki")


async def test_the_served_demo_folder_refuses_a_revoked_certificate_as_revoked(
    demo_folder: Path, tmp_path: Path
) -> None:
    """Found by probing: the demo served its PKI's CRLs and OCSP while it ran, and serve did not,
    so the chain of a package signed by a revoked certificate was accepted ("unknown
    (soft-fail)"), and only the sender check refused it (403 forged-sender)."""
    folder, pki = _copy(demo_folder, tmp_path)
    async with _serve(folder) as (base, log):
        status, problem = await _send_signed_by(base, pki, "revoked")
    assert status == 422, problem
    assert problem["type"] == "urn:lienthong:problem:signature-invalid", problem
    assert "revoked" in problem["detail"], problem
    text = log.read_text("utf-8")
    assert f"CRLs and OCSP on {pki.base_url}" in text, text


async def test_a_taken_revocation_port_is_logged_and_the_gateway_serves(
    demo_folder: Path, tmp_path: Path
) -> None:
    """Another program on the port the PKI's certificates name: the gateway starts (a
    development convenience is no reason to refuse), and its log says revocation checks of the
    test PKI's certificates go to that port and soft-fail when nothing there answers them."""
    folder, pki = _copy(demo_folder, tmp_path)
    port = urlsplit(pki.base_url).port
    assert port is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))  # bound, not listening: a fetch there is refused
        async with _serve(folder) as (base, log):
            async with aiohttp.ClientSession() as http, http.get(base + "/healthz") as r:
                assert r.status == 200
    text = log.read_text("utf-8")
    assert f"cannot serve the test PKI's CRLs and OCSP on {pki.base_url}" in text, text
