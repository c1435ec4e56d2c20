"""PDFs whose checking would cost more than their size says are refused before the work (counted
here by spying on pyHanko, not timed); ordinary signed PDFs, and forms shaped as real writers
make them, still verify. A DSS that cannot be read no longer turns a valid signature invalid."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

import signing.pdf as pdf_module
from signing import pdf_limits
from signing.errors import DocumentTooComplex, SignatureInvalid
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import sample_pdf, serve_pki
from tests.signing import pdf_bombs
from tests.signing.run_cli import lienthong

PDF = sample_pdf()


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fields pyHanko's signature validation is called on."""
    seen: list[str] = []
    real = pdf_module.async_validate_pdf_signature

    async def spy(sig: Any, **kw: Any) -> Any:
        seen.append(sig.field_name)
        return await real(sig, **kw)

    monkeypatch.setattr(pdf_module, "async_validate_pdf_signature", spy)
    return seen


@pytest.fixture
def stream_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The objects pyHanko looks up in object streams."""
    seen: list[int] = []
    real = PdfFileReader._get_object_from_stream

    def spy(self: Any, idnum: int, stmnum: int, idx: int) -> Any:
        seen.append(idnum)
        return real(self, idnum, stmnum, idx)

    monkeypatch.setattr(PdfFileReader, "_get_object_from_stream", spy)
    return seen


@pytest.fixture(scope="module")
def signed(pki) -> bytes:  # type: ignore[no-untyped-def]
    return asyncio.run(sign_pdf(PDF, pki.key("register")))


async def test_more_signatures_than_the_cap_are_refused_before_any_is_validated(
    pki, signed, validations
):
    # 1,000 such fields took 37 s and 560 MB; each validation walks the whole form.
    bomb = pdf_bombs.with_signature_fields(signed, pdf_limits.MAX_SIGNATURES)
    with pytest.raises(DocumentTooComplex) as info:
        await verify_pdf(bomb, pki.trust(revocation="off"))
    assert info.value.reason == (
        "too many signatures: the PDF has more than 32 signed fields, each of which would be "
        "checked"
    )
    assert validations == []
    # At the cap they are checked, each (the copies are not what was signed).
    at_cap = pdf_bombs.with_signature_fields(signed, pdf_limits.MAX_SIGNATURES - 1)
    with pytest.raises(SignatureInvalid):
        await verify_pdf(at_cap, pki.trust(revocation="off"))
    assert len(validations) == pdf_limits.MAX_SIGNATURES


async def test_a_form_over_the_field_cap_is_refused_before_any_validation(pki, signed, validations):
    bomb = pdf_bombs.with_text_fields(signed, pdf_limits.MAX_FORM_FIELDS)
    with pytest.raises(DocumentTooComplex, match="its form has more than 2000 fields"):
        await verify_pdf(bomb, pki.trust(revocation="off"))
    assert validations == []


async def test_many_signatures_in_turn_on_a_large_form_are_refused_before_validation(
    pki, validations
):
    # Each signature's diff analysis walks the form in every later revision: 32 signatures in
    # turn on a form of 1,900 fields took 41 s, all of them valid.
    form = pdf_bombs.form_pdf(500, per_stream=100)
    for _ in range(4):
        form = await sign_pdf(form, pki.key("register"))
    trust = pki.trust(revocation="off")
    assert all(r.valid for r in await verify_pdf(form, trust))  # (3+2+1) × 510 is fine
    validations.clear()
    for _ in range(16):  # (19+18+…+1) × 510: 97,000 field walks, over MAX_DIFF_WORK
        form = await sign_pdf(form, pki.key("register"))
    with pytest.raises(DocumentTooComplex, match="checking what changed after each of its 20"):
        await verify_pdf(form, trust)
    assert validations == []


async def test_a_costly_object_stream_is_refused_before_any_object_is_taken_from_it(
    pki, signed, stream_lookups, validations
):
    # pyHanko reads an object stream's header from its start for each object it takes from
    # it: 4,000 fields in one stream took 31 s, 8,000 three minutes.
    bomb = pdf_bombs.with_text_fields(signed, 1500, per_stream=1500)
    with pytest.raises(DocumentTooComplex, match="object streams would read more than 2097152"):
        await verify_pdf(bomb, pki.trust(revocation="off"))
    assert stream_lookups == [] and validations == []
    # The same fields in streams of 100 (as qpdf, pdfTeX and PDFBox write them) are read.
    fine = pdf_bombs.with_text_fields(signed, 1500, per_stream=100)
    with pytest.raises(SignatureInvalid, match="document modified after signing"):
        await verify_pdf(fine, pki.trust(revocation="off"))
    assert stream_lookups


async def test_a_cms_padded_with_certificates_is_refused_before_they_are_read(
    pki, monkeypatch, validations
):
    # The CMS's certificates are outside what the signer signs: ~90 KB of memory each.
    converted: list[Any] = []
    real = pdf_module.from_asn1
    monkeypatch.setattr(pdf_module, "from_asn1", lambda c: converted.append(c) or real(c))
    key = pki.key("register")
    padded = await pdf_bombs.sign_with_extra_certificates(PDF, key, 200)
    with pytest.raises(SignatureInvalid) as info:
        await verify_pdf(padded, pki.trust(revocation="off"))
    [report] = info.value.reports  # type: ignore[attr-defined]
    assert report.reason == (
        "too many certificates in the signature: its CMS carries 202, more than the 64 checked"
    )
    assert converted == [] and validations == []
    # A chain and a few dozen more is checked (and valid).
    many = await pdf_bombs.sign_with_extra_certificates(PDF, key, 60)
    [report] = await verify_pdf(many, pki.trust(revocation="off"))
    assert report.valid, report.reason


def test_cli_says_invalid_with_the_reason(pki, signed, tmp_path):
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf_bombs.with_signature_fields(signed, 40))
    r = lienthong("verify", "pdf", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID")
    assert "reason:     too many signatures: the PDF has more than 32 signed fields" in r.stdout


async def test_an_unreadable_crl_in_the_dss_is_left_out(pki, signed):
    # A DSS is a permitted change after signing: anyone could append one with a junk CRL, and
    # the signature was reported "the CMS in /Contents cannot be read".
    junk = pdf_bombs.with_dss_crls(signed, [pdf_bombs.junk_crl()])
    [report] = await verify_pdf(junk, pki.trust(revocation="off"))
    assert report.valid, report.reason
    assert report.level == "PAdES-B-B"


async def test_b_lt_stands_beside_an_unreadable_crl_and_a_failing_offline_check_falls_back(
    pki, tsa_url, monkeypatch
):
    async with serve_pki(pki):
        blt = await sign_pdf(
            PDF, pki.key("gateway"), level="B-LT", tsa_url=tsa_url, trust=pki.trust()
        )
    trust = pki.trust(revocation="soft-fail")  # nothing to fetch from: the DSS must do
    junk = pdf_bombs.with_dss_crls(blt, [pdf_bombs.junk_crl()])
    [report] = await verify_pdf(junk, trust)
    assert report.valid, report.reason
    assert report.level == "PAdES-B-LT"
    # Whatever the offline judgement fails on, it is no B-LT signature: judged online, as B-T.
    real = pdf_module._judge

    async def offline_fails(*args: Any) -> Any:
        if args[-1] is not None:
            raise ValueError("Error parsing asn1crypto.crl.TbsCertList")
        return await real(*args)

    monkeypatch.setattr(pdf_module, "_judge", offline_fails)
    [report] = await verify_pdf(junk, trust)
    assert report.valid, report.reason
    assert report.level == "PAdES-B-T"


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_ordinary_signed_pdfs_pass_the_limits(pki, pki_server, tsa_url, level, validations):
    once = await sign_pdf(PDF, pki.key("register"), level=level, tsa_url=tsa_url, trust=pki.trust())
    twice = await sign_pdf(
        once, pki.key("gateway"), level=level, tsa_url=tsa_url, trust=pki.trust()
    )
    reports = await verify_pdf(twice, pki.trust(revocation="hard-fail"))
    assert [(r.valid, r.level) for r in reports] == [(True, f"PAdES-{level}")] * 2
    assert validations


@pytest.mark.parametrize("per_stream", [100, 200])
async def test_large_forms_in_object_streams_as_writers_make_them_verify(pki, per_stream):
    form = pdf_bombs.form_pdf(1900, per_stream=per_stream)
    cosigned = await sign_pdf(await sign_pdf(form, pki.key("register")), pki.key("gateway"))
    reports = await verify_pdf(cosigned, pki.trust(revocation="off"))
    assert [r.valid for r in reports] == [True, True]
