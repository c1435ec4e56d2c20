"""PAdES signing and verification, legacy reporting, tampering."""

from __future__ import annotations

import pytest

from signing.errors import SignatureInvalid, SigningError, UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import sample_pdf

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
    assert report.field_name == "Signature1"
    # Proven by a timestamp from B-T on; at B-B only the signer's claim.
    assert (report.signed_at is None) == (level == "B-B")
    assert report.claimed_signing_time is not None


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


@pytest.mark.parametrize(("subject", "purpose"), [("tsa", "timeStamping"), ("ocsp", "OCSPSigning")])
async def test_a_tsa_or_ocsp_key_does_not_sign_documents(pki, pki_server, subject, purpose):
    signed = await sign_pdf(PDF, pki.key(subject))
    with pytest.raises(UntrustedSigner) as info:
        await verify_pdf(signed, pki.trust())
    assert info.value.reason == (
        f"extended key usage ({purpose}) does not allow signing documents: {subject}"
    )


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
    # A "PDF" without its end marker is refused before pyHanko searches all of it backwards for
    # one (~0.2 s of CPU a MB); a signed PDF with up to 1 KiB of trailing bytes still reads.
    with pytest.raises(SignatureInvalid, match=r"no %%EOF in its last 1024 bytes"):
        await verify_pdf(b"%PDF-1.4\n" + b"\0" * (4 << 20), pki.trust())
    signed = await sign_pdf(PDF, pki.key("gateway"))
    assert (await verify_pdf(signed + b"\n" * 1000, pki.trust()))[0].valid
    with pytest.raises(SignatureInvalid, match="no %%EOF"):
        await verify_pdf(signed + b"\n" * 1024, pki.trust())


async def test_sign_argument_errors(pki):
    with pytest.raises(SigningError, match="TSA"):
        await sign_pdf(PDF, pki.key("gateway"), level="B-T")
    with pytest.raises(SigningError, match="trust"):
        await sign_pdf(PDF, pki.key("gateway"), level="B-LT", tsa_url="http://127.0.0.1:9/")
    with pytest.raises(SigningError):
        await sign_pdf(b"not a pdf", pki.key("gateway"))
