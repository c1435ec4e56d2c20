"""At the default INFO level, pyhanko-certvalidator logged the full subject of every certificate
it checked, and pyHanko warned with it of each PDF signer it could not trust; a personal
certificate's holds its holder's name and CCCD number (``UID=CCCD:…``), as Vietnamese public CAs
issue them, and agencies' letters and their PDFs are commonly signed with one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.xmldsig import sign_bytes
from gateway.logs import configure_logging
from signing.keys import FileKey
from signing.pdf import sign_pdf
from signing.testing import TestPKI, new_pki, sample_pdf
from tests.e2e.test_documents import running_hub
from tests.e2e.test_log_levels import restore_logging  # noqa: F401 - a fixture
from tests.exchange.factories import NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for

CCCD = "040199000123"


def personal_key(pki: TestPKI) -> FileKey:
    """A leader's personal signing certificate, issued under the agencies' intermediate CA with
    the agency's certificate's extensions (its CRL and OCSP addresses)."""
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    inter_key = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    assert isinstance(inter_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    agency = pki.certificate(f"agency-{TAY_NINH_STC}")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, f"CCCD:{CCCD}"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Thị Thu Hà"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tài chính tỉnh Tây Ninh"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(inter.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
    )
    for ext in agency.extensions:
        if ext.oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER:
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            builder = builder.add_extension(ski, False)
        else:
            builder = builder.add_extension(ext.value, ext.critical)
    return FileKey(key, builder.sign(inter_key, hashes.SHA256()), (inter,))


def _package(pki: TestPKI, pdf: bytes, signer: FileKey, number: str) -> bytes:
    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), number)
    package = build_package(header, trace_for(header, 0), [NewAttachment("cong-van.pdf", pdf)])
    return sign_bytes(package, signer)


async def test_info_logs_no_certificate_subject(
    tmp_path: Path,
    pki: TestPKI,
    pki_server: str,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,  # noqa: F811
) -> None:
    agency = pki.key(f"agency-{TAY_NINH_STC}")
    assert isinstance(agency, FileKey)
    pdf = await sign_pdf(sample_pdf("Cong van 601/STC"), agency)
    # The envelope signed by a person: checked (CRL, OCSP), then refused as not the sender's.
    by_person = _package(pki, pdf, personal_key(pki), "601")
    # A PDF signed by a person under a CA not trusted here: pyHanko warned of it.
    stranger = await asyncio.to_thread(new_pki, tmp_path)
    untrusted = await sign_pdf(sample_pdf("Cong van 602/STC"), personal_key(stranger))
    untrusted_pdf = _package(pki, untrusted, agency, "602")
    configure_logging("INFO")
    async with running_hub(tmp_path, pki) as hub:
        async with await hub.send(TAY_NINH_STC, by_person) as r:
            answer = await r.json(content_type=None)
        assert answer["type"].endswith(":forged-sender"), answer
        async with await hub.send(TAY_NINH_STC, untrusted_pdf) as r:
            assert r.status == 422, await r.text()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert any(e["logger"] == "lienthong.http" for e in lines)  # the log was written
    leaked = [e for e in lines if CCCD in json.dumps(e)]
    assert leaked == [], leaked[:2]
    assert [e for e in lines if e["logger"].startswith("pyhanko")] == []
