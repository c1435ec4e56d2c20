"""A trusted timestamp proves when a signature was made, so the signer's certificate is judged as
of then (XAdES and PAdES B-T): revoked or expired since, the signature stands; revoked before, it
does not. Without a timestamp the signer's own claim of time proves nothing: judged now."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from signing.errors import SigningError, UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.report import SignatureReport
from signing.testing import SAMPLE_XML, TestPKI, sample_pdf
from signing.timestamps import serve_tsa
from signing.trust import TrustStore
from signing.xml import sign_xml, verify_xml

PDF = sample_pdf()


async def _xml_report(data: bytes, trust: TrustStore) -> SignatureReport:
    return (await verify_xml(data, trust)).report


async def _pdf_report(data: bytes, trust: TrustStore) -> SignatureReport:
    [report] = await verify_pdf(data, trust)
    return report


Sign = Callable[..., Awaitable[bytes]]
Verify = Callable[[bytes, TrustStore], Awaitable[SignatureReport]]
FORMATS: dict[str, tuple[Sign, Verify]] = {
    "xades": (lambda key, **kw: sign_xml(SAMPLE_XML, key, **kw), _xml_report),
    "pades": (lambda key, **kw: sign_pdf(PDF, key, **kw), _pdf_report),
}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_signer_judged_as_of_its_timestamp(
    pki: TestPKI, pki_server: Any, tsa_url: str, fmt: str
) -> None:
    sign, verify = FORMATS[fmt]
    trust = pki.trust(revocation="hard-fail")
    revoked_at = dt.datetime.fromisoformat(pki.index["revoked_at"])
    now = dt.datetime.now(dt.UTC)
    cases = [  # (subject, the TSA's time (None: now), the refusal (None: valid))
        ("revoked", revoked_at - dt.timedelta(minutes=30), None),
        ("revoked", None, "certificate revoked"),
        ("expired", now - dt.timedelta(days=100), None),  # the certificate: -400 to -30 days
        ("expired", now - dt.timedelta(days=10), "certificate expired"),
    ]
    for subject, at, refusal in cases:
        async with contextlib.AsyncExitStack() as stack:
            url = (
                tsa_url
                if at is None
                else await stack.enter_async_context(serve_tsa(pki.directory, at=at))
            )
            signed = await sign(pki.key(subject), level="B-T", tsa_url=url)
        if refusal is None:
            report = await verify(signed, trust)
            assert report.valid, (subject, at, report.reason)
            assert report.signed_at == at and report.revocation == "good", (subject, at)
        else:
            with pytest.raises(UntrustedSigner, match=refusal):
                await verify(signed, trust)
    with pytest.raises(UntrustedSigner, match="certificate expired"):
        await verify(await sign(pki.key("expired"), level="B-B"), trust)


@pytest.mark.parametrize(
    ("fmt", "refusal"),
    [
        # As verify_pdf says it; verify_xml said only "no chain to a configured trust anchor:
        # tsa", read as the signer's chain failing.
        (
            "xades",
            r"^signature timestamp is not from a trusted TSA \(no chain to a configured "
            r"trust anchor: tsa\)$",
        ),
        ("pades", "signature timestamp is not from a trusted TSA"),
    ],
)
async def test_timestamp_from_an_untrusted_tsa_refused(
    pki: TestPKI, pki_server: Any, tmp_path: Any, fmt: str, refusal: str
) -> None:
    """Else any key could date a revoked signer's signature before its revocation."""
    sign, verify = FORMATS[fmt]
    stranger = TestPKI.create(tmp_path / "other", base_url="http://127.0.0.1:9")
    async with serve_tsa(stranger.directory) as url:
        signed = await sign(pki.key("gateway"), level="B-T", tsa_url=url)
    with pytest.raises(SigningError, match=refusal):
        await verify(signed, pki.trust())


@pytest.mark.parametrize("fmt", FORMATS)
async def test_ocsp_only_revocation_after_the_timestamp_is_refused(
    pki: TestPKI, pki_server: Any, fmt: str
) -> None:
    """A known limitation, documented in the README: pyhanko-certvalidator (0.33) takes an OCSP
    "revoked" answer dated after the moment judged as no proof of the status then (its CRL check
    takes the same revocation as good then). If this test fails after an upgrade, the library
    has changed: drop the README's exception."""
    sign, verify = FORMATS[fmt]
    at = dt.datetime.fromisoformat(pki.index["revoked_at"]) - dt.timedelta(minutes=30)
    async with serve_tsa(pki.directory, at=at) as url:
        by_crl = await sign(pki.key("revoked-crl"), level="B-T", tsa_url=url)
        by_ocsp = await sign(pki.key("revoked-ocsp"), level="B-T", tsa_url=url)
    for revocation in ("soft-fail", "hard-fail"):
        trust = pki.trust(revocation=revocation)
        assert (await verify(by_crl, trust)).revocation == "good"
        with pytest.raises(UntrustedSigner) as refused:
            await verify(by_ocsp, trust)
        assert refused.value.kind == "revocation-unknown"
        assert refused.value.reason == "revocation status unknown: revoked-ocsp"
    assert (await verify(by_ocsp, pki.trust(revocation="off"))).revocation == "not checked"
