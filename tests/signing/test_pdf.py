"""PAdES signing and verification, legacy reporting, tampering."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from signing.errors import SignatureInvalid, SigningError, UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import TestPKI, sample_pdf
from signing.timestamps import serve_tsa

PDF = sample_pdf()


@pytest.mark.parametrize("subject", ["gateway", "agency-000.00.11.H53"])
@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_round_trip(pki, pki_server, tsa_url, subject, level):
    signed = await sign_pdf(
        PDF, pki.key(subject), level=level, tsa_url=tsa_url, trust=pki.trust(), reason="Cấp bản sao"
    )
    [report] = await verify_pdf(signed, pki.trust(revocation="hard-fail"))
    assert report.valid, report.reason
    assert report.level == f"PAdES-{level}"
    assert report.signer == subject and report.revocation == "good"
    assert report.signed_at is not None and report.field_name == "Signature1"


async def test_flipped_byte_in_content(pki, pki_server):
    signed = await sign_pdf(PDF, pki.key("register"))
    i = signed.index(b"Giay khai sinh")
    tampered = signed[:i] + b"H" + signed[i + 1 :]
    with pytest.raises(SignatureInvalid) as info:
        await verify_pdf(tampered, pki.trust())
    assert info.value.reason.startswith("digest mismatch")


async def test_revoked_and_expired_signers(pki, pki_server):
    for subject, reason in [("revoked", "certificate revoked"), ("expired", "certificate expired")]:
        signed = await sign_pdf(PDF, pki.key(subject))
        with pytest.raises(UntrustedSigner) as info:
            await verify_pdf(signed, pki.trust())
        assert info.value.reason.startswith(reason)


async def test_signer_judged_as_of_its_timestamp(pki, pki_server, tsa_url):
    """As for XML (test_xml.py): a trusted timestamp sets the moment the signer is judged at."""
    trust = pki.trust(revocation="hard-fail")
    revoked_at = dt.datetime.fromisoformat(pki.index["revoked_at"])
    cases = [
        ("revoked", revoked_at - dt.timedelta(minutes=30), None),
        ("revoked", None, "certificate revoked"),
        ("expired", dt.datetime.now(dt.UTC) - dt.timedelta(days=100), None),
        ("expired", dt.datetime.now(dt.UTC) - dt.timedelta(days=10), "certificate expired"),
    ]
    for subject, at, refusal in cases:
        async with contextlib.AsyncExitStack() as stack:
            url = (
                tsa_url
                if at is None
                else await stack.enter_async_context(serve_tsa(pki.directory, at=at))
            )
            signed = await sign_pdf(PDF, pki.key(subject), level="B-T", tsa_url=url)
        if refusal is None:
            [report] = await verify_pdf(signed, trust)
            assert report.valid, (subject, report.reason)
            assert report.signed_at == at.replace(tzinfo=dt.UTC) and report.level == "PAdES-B-T"
        else:
            with pytest.raises(UntrustedSigner, match=refusal):
                await verify_pdf(signed, trust)


async def test_timestamp_from_an_untrusted_tsa_refused(pki, pki_server, tmp_path):
    """Else any key could date a revoked signer's signature before its revocation."""
    stranger = TestPKI.create(tmp_path / "other", base_url="http://127.0.0.1:9")
    async with serve_tsa(stranger.directory) as url:
        signed = await sign_pdf(PDF, pki.key("gateway"), level="B-T", tsa_url=url)
    with pytest.raises(SignatureInvalid, match="signature timestamp is not from a trusted TSA"):
        await verify_pdf(signed, pki.trust())


async def test_two_signatures(pki, pki_server):
    once = await sign_pdf(PDF, pki.key("register"), field_name="Register")
    twice = await sign_pdf(once, pki.key("gateway"), field_name="Gateway")
    reports = await verify_pdf(twice, pki.trust())
    assert [r.field_name for r in reports] == ["Register", "Gateway"]
    assert all(r.valid for r in reports)


async def test_unsigned_and_garbage(pki):
    with pytest.raises(SignatureInvalid, match="no signature found"):
        await verify_pdf(PDF, pki.trust())
    with pytest.raises(SignatureInvalid, match="not a readable PDF"):
        await verify_pdf(b"%PDF-1.7 nonsense", pki.trust())


async def test_sign_argument_errors(pki):
    with pytest.raises(SigningError, match="TSA"):
        await sign_pdf(PDF, pki.key("gateway"), level="B-T")
    with pytest.raises(SigningError, match="trust"):
        await sign_pdf(PDF, pki.key("gateway"), level="B-LT", tsa_url="http://127.0.0.1:9/")
    with pytest.raises(SigningError):
        await sign_pdf(b"not a pdf", pki.key("gateway"))
