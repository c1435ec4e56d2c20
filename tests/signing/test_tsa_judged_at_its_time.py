"""A timestamp token is judged as of its own time: its TSA's certificate, expired since, still
vouches for the tokens it issued while it was valid (as a signer expired since is judged at the
token's time). Judged now, every audit checkpoint a TSA ever stamped failed the day its certificate
ran out, and with them the whole log and every evidence bundle, untouched as they were."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from signing.errors import UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import SAMPLE_XML, SubjectSpec, TestPKI, sample_pdf
from signing.timestamps import request_timestamp, serve_tsa, verify_timestamp
from signing.xml import sign_xml, verify_xml

DATA = b"lienthong.local/audit\n5\nroot\n"


def _pki_with_an_expired_tsa(pki: TestPKI, folder: Path) -> Path:
    """A copy of ``pki``'s folder whose TSA certificate (same intermediate, timeStamping) was
    valid from 400 to 30 days ago."""
    shutil.copytree(pki.directory, folder)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inter, inter_key = pki._ca("intermediate")
    spec = SubjectSpec(key="rsa", usage="tsa", ocsp=False, expired=True)
    now = dt.datetime.now(dt.UTC)
    cert = TestPKI._issue("tsa-expired", key.public_key(), spec, inter, inter_key,
                          pki.base_url, now)  # fmt: skip
    pem = serialization.Encoding.PEM
    (folder / "tsa.cert.pem").write_bytes(cert.public_bytes(pem) + inter.public_bytes(pem))
    (folder / "tsa.key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


async def _token(pki_dir: Path, at: dt.datetime) -> bytes:
    async with serve_tsa(pki_dir, at=at) as url:
        return await request_timestamp(url, hashlib.sha256(DATA).digest())


@pytest.mark.parametrize("revocation", ["soft-fail", "hard-fail"])
async def test_a_token_stands_after_its_tsa_certificate_expired(
    pki: TestPKI, pki_server: Any, tmp_path: Path, revocation: Any
) -> None:
    folder = _pki_with_an_expired_tsa(pki, tmp_path / "pki")
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=100)
    info = await verify_timestamp(await _token(folder, at), DATA, pki.trust(revocation=revocation))
    assert (info.time, info.tsa) == (at, "tsa-expired")


async def test_a_token_dated_after_its_tsa_certificate_expired_is_refused(
    pki: TestPKI, pki_server: Any, tmp_path: Path
) -> None:
    folder = _pki_with_an_expired_tsa(pki, tmp_path / "pki")
    late = await _token(folder, dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    with pytest.raises(UntrustedSigner, match="certificate expired: tsa-expired"):
        await verify_timestamp(late, DATA, pki.trust(revocation="hard-fail"))


@pytest.mark.parametrize("fmt", ["xades", "pades"])
async def test_a_signature_timestamped_then_stands_after_the_tsa_certificate_expired(
    pki: TestPKI, pki_server: Any, tmp_path: Path, fmt: str
) -> None:
    folder = _pki_with_an_expired_tsa(pki, tmp_path / "pki")
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=100)
    trust = pki.trust(revocation="hard-fail")
    async with serve_tsa(folder, at=at) as url:
        if fmt == "xades":
            signed = await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=url)
            report = (await verify_xml(signed, trust)).report
        else:
            signed = await sign_pdf(sample_pdf(), pki.key("gateway"), level="B-T", tsa_url=url)
            [report] = await verify_pdf(signed, trust)
    assert report.valid, report.reason
    assert report.signed_at == at


async def test_openssl_agrees_when_told_the_tokens_time(
    pki: TestPKI, pki_server: Any, tmp_path: Path
) -> None:
    """The evidence bundle's README tells an auditor to add ``-attime`` once the TSA's
    certificate expired: openssl refuses the token without it and accepts it with it."""
    folder = _pki_with_an_expired_tsa(pki, tmp_path / "pki")
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=100)
    (tmp_path / "t.tsr").write_bytes(await _token(folder, at))
    (tmp_path / "data").write_bytes(DATA)
    verify = ["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "t.tsr"),
              "-data", str(tmp_path / "data"), "-CAfile", str(pki.root_pem),
              "-untrusted", str(folder / "tsa.cert.pem")]  # fmt: skip
    now = await asyncio.to_thread(subprocess.run, verify, capture_output=True, text=True)
    assert now.returncode != 0 and "certificate has expired" in now.stdout + now.stderr
    then = await asyncio.to_thread(subprocess.run, [*verify, "-attime", str(int(at.timestamp()))],
                                   capture_output=True, text=True)  # fmt: skip
    assert then.returncode == 0 and "Verification: OK" in then.stdout, then.stdout + then.stderr
