"""A refused signer's report is the same for XML and PDF, and its fields come from the
validation's result, not from the text of its reason: ``revocation`` is "revoked" when the signer
was found revoked (XML said "not checked"), and only then (PDF said "revoked" for any reason
holding the word, as one naming a signer called "revoked-crl"); ``signed_at`` is the time of a
timestamp that verified (XML said unknown). The refusal's ``kind`` is there for code to branch on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from signing.errors import UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.report import SignatureReport
from signing.testing import SAMPLE_XML, TestPKI, sample_pdf
from signing.timestamps import serve_tsa
from signing.trust import TrustStore
from signing.xml import sign_xml, verify_xml

PDF = sample_pdf()


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.create(tmp_path_factory.mktemp("other"), base_url="http://127.0.0.1:9")


async def _refusals(pki: TestPKI, subject: str, trust: TrustStore, **sign: Any) -> list[Any]:
    """The refusal of the XML and of the PDF signature ``subject`` makes, and its report."""
    out = []
    for signed, verify in (
        (await sign_xml(SAMPLE_XML, pki.key(subject), **sign), verify_xml),
        (await sign_pdf(PDF, pki.key(subject), **sign), verify_pdf),
    ):
        with pytest.raises(UntrustedSigner) as refused:
            await verify(signed, trust)  # type: ignore[operator]
        [report] = refused.value.reports  # type: ignore[attr-defined]
        out.append((refused.value, report))
    return out


def _fields(report: SignatureReport) -> dict[str, Any]:
    d = report.as_dict()
    # XAdES-… / PAdES-…; PDF only; and when each was signed, a second apart at times (the
    # claimed time of an untimestamped one): the timestamped test compares it with the stamp's.
    del d["level"], d["field_name"], d["signed_at"]
    return {**d, "cause": report.cause}


@pytest.mark.parametrize("subject", ["revoked", "revoked-crl", "revoked-ocsp"])
async def test_a_revoked_signer_is_reported_revoked(
    pki: TestPKI, pki_server: Any, subject: str
) -> None:
    (xml_exc, xml), (pdf_exc, pdf) = await _refusals(pki, subject, pki.trust(), level="B-B")
    assert xml.revocation == pdf.revocation == "revoked"
    assert xml.reason.startswith("certificate revoked")
    assert _fields(xml) == _fields(pdf)
    assert xml_exc.kind == pdf_exc.kind == "revoked"


async def test_a_signer_named_revoked_is_not_reported_revoked(
    pki: TestPKI, other_pki: TestPKI
) -> None:
    # Under another PKI's root: no chain, nothing checked about revocation.
    refusals = await _refusals(pki, "revoked-crl", other_pki.trust(), level="B-B")
    (xml_exc, xml), (pdf_exc, pdf) = refusals
    assert pdf.revocation == xml.revocation == "not checked"
    assert pdf.reason == "no chain to a configured trust anchor: revoked-crl"
    assert _fields(xml) == _fields(pdf)
    assert xml_exc.kind == pdf_exc.kind == "no-chain"


async def test_a_refused_timestamped_signature_reports_when_it_was_made(
    pki: TestPKI, pki_server: Any
) -> None:
    # Stamped 10 days ago: the certificate (valid from 400 to 30 days ago) had expired then.
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=10)
    async with serve_tsa(pki.directory, at=at) as url:
        (xml_exc, xml), (pdf_exc, pdf) = await _refusals(
            pki, "expired", pki.trust(), level="B-T", tsa_url=url
        )
    assert xml.signed_at == pdf.signed_at == at
    assert (xml.level, pdf.level) == ("XAdES-B-T", "PAdES-B-T")
    assert _fields(xml) == _fields(pdf)
    assert xml_exc.kind == pdf_exc.kind == "expired"
