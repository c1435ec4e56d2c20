"""spec/signatures.md: RSA keys of at least 2048 bits; older documents' leniency is for SHA-1 and
``adbe.pkcs7.detached`` alone. ``verify xml|pdf`` (and with them the hub and the civil-status
connector) called a signer with an RSA-1024 or RSA-512 key VALID, listing the key among its
weaknesses, while ``sign``, ``[signing]`` and the register refuse such keys: a 512-bit modulus is
factored in hours, so such a signature proves nothing. Now refused alike, XML and PDF."""

from __future__ import annotations

import datetime as dt
import subprocess
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from signing.errors import UntrustedSigner
from signing.keys import FileKey, SigningKey
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import EDXML_HEADER, SAMPLE_XML, TestPKI, sample_pdf
from signing.xml import sign_xml, verify_xml
from tests.signing.run_cli import lienthong


def rsa_512_signer(pki: TestPKI, tmp_path: Any) -> SigningKey:
    """A signer under the test PKI's intermediate CA with a 512-bit RSA key (openssl makes one:
    cryptography will not), as a CA that never heard of the norm issues it."""
    pem = subprocess.run(["openssl", "genrsa", "512"], capture_output=True, check=True).stdout
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 512
    issuer = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    issuer_key = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa-512")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), True
        )
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return FileKey(key, cert, (issuer,))


WHY = {
    "weak-rsa1024": "a 1024-bit key is too weak to sign (RSA keys of at least 2048 bits): "
    "weak-rsa1024",
    "rsa-512": "a 512-bit key is too weak to sign (RSA keys of at least 2048 bits): rsa-512",
}


@pytest.mark.parametrize("subject", ["weak-rsa1024", "rsa-512"])
@pytest.mark.parametrize("kind", ["xml", "pdf"])
async def test_a_signer_whose_rsa_key_is_under_2048_bits_is_refused(
    pki: TestPKI, tmp_path: Any, kind: str, subject: str
) -> None:
    key = pki.key(subject) if subject in pki.subjects else rsa_512_signer(pki, tmp_path)
    trust = pki.trust(revocation="off")
    with pytest.raises(UntrustedSigner) as refused:
        if kind == "xml":
            await verify_xml(await sign_xml(SAMPLE_XML, key, parent=EDXML_HEADER), trust)
        else:
            await verify_pdf(await sign_pdf(sample_pdf(), key), trust)
    assert (refused.value.reason, refused.value.kind) == (WHY[subject], "weak")
    [report] = refused.value.reports  # type: ignore[attr-defined]
    assert (report.valid, report.reason, report.cause) == (False, WHY[subject], "weak")


def test_verify_says_why_the_weak_key_is_refused(pki: TestPKI, tmp_path: Any) -> None:
    import asyncio

    path = tmp_path / "weak.pdf"
    path.write_bytes(asyncio.run(sign_pdf(sample_pdf(), pki.key("weak-rsa1024"))))
    r = lienthong("verify", "pdf", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID PAdES-B-B signature in field Signature1")
    assert f"  reason:     {WHY['weak-rsa1024']}" in r.stdout.splitlines()
