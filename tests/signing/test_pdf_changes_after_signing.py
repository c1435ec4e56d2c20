"""What the revisions after a PDF signature may change: other signatures, document timestamps and
DSS updates, nothing the signer signed (nor what the page shows). A form field filled in again after signing (the birth
certificate's name) was accepted, as pyHanko's policy for approval signatures allows it: the page
showed another name under a VALID signature. Real signatures from the session's test PKI; the
edits are incremental updates as any PDF editor writes them; the CLI in its own process."""

from __future__ import annotations

import io

import pytest
from pyhanko.pdf_utils import generic as g
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter

from signing.errors import SignatureInvalid
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import TestPKI, sample_pdf
from tests.signing.pdf_edits import add_signature_field
from tests.signing.run_cli import lienthong


def _name(text: str) -> g.NameObject:
    return g.NameObject(text)


def _appearance(font: g.IndirectObject, text: str) -> g.StreamObject:
    """A text field's normal appearance showing ``text``."""
    return g.StreamObject(
        {
            _name("/Type"): _name("/XObject"),
            _name("/Subtype"): _name("/Form"),
            _name("/BBox"): g.ArrayObject([g.NumberObject(n) for n in (0, 0, 400, 30)]),
            _name("/Resources"): g.DictionaryObject(
                {_name("/Font"): g.DictionaryObject({_name("/F1"): font})}
            ),
        },
        stream_data=f"/Tx BMC BT /F1 18 Tf 2 8 Td ({text}) Tj ET EMC".encode(),
    )


def birth_certificate_form(name: str) -> bytes:
    """A one-page form whose text field HoTen holds ``name``, with its appearance (the page
    shows it)."""
    w = PdfFileWriter()
    font = w.add_object(
        g.DictionaryObject(
            {
                _name("/Type"): _name("/Font"),
                _name("/Subtype"): _name("/Type1"),
                _name("/BaseFont"): _name("/Helvetica"),
            }
        )
    )
    page = g.DictionaryObject(
        {
            _name("/Type"): _name("/Page"),
            _name("/MediaBox"): g.ArrayObject([g.NumberObject(n) for n in (0, 0, 595, 842)]),
            _name("/Contents"): w.add_object(
                g.StreamObject(stream_data=b"BT /F1 18 Tf 72 760 Td (GIAY KHAI SINH) Tj ET")
            ),
            _name("/Resources"): g.DictionaryObject(
                {_name("/Font"): g.DictionaryObject({_name("/F1"): font})}
            ),
        }
    )
    w.insert_page(page)
    page_ref = w.root["/Pages"]["/Kids"][0]
    field = w.add_object(
        g.DictionaryObject(
            {
                _name("/Type"): _name("/Annot"),
                _name("/Subtype"): _name("/Widget"),
                _name("/FT"): _name("/Tx"),
                _name("/T"): g.pdf_string("HoTen"),
                _name("/V"): g.pdf_string(name),
                _name("/Rect"): g.ArrayObject([g.NumberObject(n) for n in (72, 700, 472, 730)]),
                _name("/F"): g.NumberObject(4),
                _name("/P"): page_ref,
                _name("/DA"): g.pdf_string("/F1 18 Tf 0 g"),
                _name("/AP"): g.DictionaryObject(
                    {_name("/N"): w.add_object(_appearance(font, name))}
                ),
            }
        )
    )
    page_ref.get_object()[_name("/Annots")] = g.ArrayObject([field])
    w.root[_name("/AcroForm")] = g.DictionaryObject(
        {
            _name("/Fields"): g.ArrayObject([field]),
            _name("/DA"): g.pdf_string("/F1 18 Tf 0 g"),
            _name("/DR"): g.DictionaryObject(
                {_name("/Font"): g.DictionaryObject({_name("/F1"): font})}
            ),
        }
    )
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def fill_in(pdf: bytes, name: str) -> bytes:
    """``pdf`` with HoTen set to ``name`` (value and appearance) by an incremental update."""
    w = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    font = w.root["/AcroForm"]["/DR"]["/Font"].raw_get("/F1")
    for ref in w.root["/AcroForm"]["/Fields"]:
        field = ref.get_object()
        if str(field.get("/T")) == "HoTen":
            field[_name("/V")] = g.pdf_string(name)
            field[_name("/AP")] = g.DictionaryObject(
                {_name("/N"): w.add_object(_appearance(font, name))}
            )
            w.update_container(field)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def repaint_in_place(pdf: bytes, name: str) -> bytes:
    """``pdf`` with HoTen's appearance stream overwritten (same object) to show ``name``, its
    value left as it was: what the page shows changes, not the field's value."""
    w = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    for ref in w.root["/AcroForm"]["/Fields"]:
        field = ref.get_object()
        if str(field.get("/T")) == "HoTen":
            ref = field["/AP"].raw_get("/N").reference
            font = w.root["/AcroForm"]["/DR"]["/Font"].raw_get("/F1")
            w.mark_update(ref)
            # What mark_update queued, replaced (the writer keys objects by generation, number).
            w.objects[(ref.generation, ref.idnum)] = _appearance(font, name)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def signed_form(pki: TestPKI) -> bytes:
    import asyncio

    return asyncio.run(sign_pdf(birth_certificate_form("Nguyen Van A"), pki.key("register")))


async def test_a_form_field_filled_in_again_after_signing_is_a_modification(
    pki: TestPKI, signed_form: bytes
) -> None:
    edited = fill_in(signed_form, "Tran Thi B")
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(edited, pki.trust(revocation="off"))
    [report] = refused.value.reports  # type: ignore[attr-defined]
    assert not report.valid
    assert report.reason == "document modified after signing: form field 'HoTen' changed"
    assert report.signer == "register"


def test_verify_pdf_names_the_changed_field(pki: TestPKI, signed_form: bytes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "edited.pdf"
    path.write_bytes(fill_in(signed_form, "Tran Thi B"))
    r = lienthong("verify", "pdf", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID PAdES-B-B signature in field Signature1")
    assert "reason:     document modified after signing: form field 'HoTen' changed" in r.stdout


async def test_a_later_signature_on_a_signed_form_leaves_the_first_valid(
    pki: TestPKI, signed_form: bytes
) -> None:
    cosigned = await sign_pdf(signed_form, pki.key("gateway"))
    reports = await verify_pdf(cosigned, pki.trust(revocation="off"))
    assert [(r.field_name, r.valid) for r in reports] == [
        ("Signature1", True),
        ("Signature2", True),
    ]


async def test_a_field_filled_in_then_signed_again_voids_only_the_first_signature(
    pki: TestPKI, signed_form: bytes
) -> None:
    # The second signer signed the new name; the first did not.
    resigned = await sign_pdf(fill_in(signed_form, "Tran Thi B"), pki.key("gateway"))
    first, second = await verify_pdf(resigned, pki.trust(revocation="off"))
    assert (first.valid, first.reason) == (
        False,
        "document modified after signing: form field 'HoTen' changed",
    )
    assert second.valid and second.signer == "gateway"


async def test_an_appearance_overwritten_in_place_after_signing_is_a_modification(
    pki: TestPKI, signed_form: bytes
) -> None:
    # pyHanko's default policy allows it (FORM_FILLING): the value still says Nguyen Van A.
    edited = repaint_in_place(signed_form, "Tran Thi B")
    assert b"(Tran Thi B) Tj" in edited[len(signed_form) :]
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(edited, pki.trust(revocation="off"))
    assert refused.value.reason == "document modified after signing"


# An agency's signed payment order, and what anyone (no key needed) may append to it: an empty
# signature field whose widget paints a white box and another amount over the signed one.
AMOUNT_BOX = (60, 700, 560, 760)
PAINTED = "So tien: 9.000.000.000 dong"


@pytest.fixture(scope="module")
def signed_amount(pki: TestPKI) -> bytes:
    import asyncio

    return asyncio.run(
        sign_pdf(sample_pdf("So tien: 1.000.000 dong"), pki.key("agency-000.00.11.H53"))
    )


async def test_an_empty_signature_field_painted_over_the_text_is_a_modification(
    pki: TestPKI, signed_amount: bytes
) -> None:
    # pyHanko's policy accepts any new signature field, with any appearance: VALID, while every
    # viewer showed 9.000.000.000 where the agency signed 1.000.000 (tests/interop renders it).
    painted = add_signature_field(signed_amount, "Signature9", AMOUNT_BOX, paint=PAINTED)
    assert f"({PAINTED}) Tj".encode() in painted[len(signed_amount) :]
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(painted, pki.trust(revocation="off"))
    [report] = refused.value.reports  # type: ignore[attr-defined]
    assert (report.valid, report.signer) == (False, "agency-000.00.11.H53")
    assert report.reason == (
        "document modified after signing: signature field 'Signature9' added, not signed"
    )


async def test_an_empty_signature_field_added_after_signing_is_a_modification(
    pki: TestPKI, signed_amount: bytes
) -> None:
    # Invisible or not: a field nobody signed is no later signature, and nothing else may follow.
    for box in (None, AMOUNT_BOX):
        added = add_signature_field(signed_amount, "Signature2", box)
        with pytest.raises(SignatureInvalid) as refused:
            await verify_pdf(added, pki.trust(revocation="off"))
        assert refused.value.reason == (
            "document modified after signing: signature field 'Signature2' added, not signed"
        ), box


async def test_an_empty_field_added_beside_a_later_signature_voids_the_first_only(
    pki: TestPKI, signed_amount: bytes
) -> None:
    added = add_signature_field(signed_amount, "Signature2", AMOUNT_BOX, paint=PAINTED)
    cosigned = await sign_pdf(added, pki.key("gateway"))  # in Signature3: Signature2 stays empty
    first, second = await verify_pdf(cosigned, pki.trust(revocation="off"))
    assert (first.field_name, first.valid, first.reason) == (
        "Signature1",
        False,
        "document modified after signing: signature field 'Signature2' added, not signed",
    )
    # The gateway signed the page as it then looked, the painted field included.
    assert (second.field_name, second.valid) == ("Signature3", True)


async def test_a_field_added_after_signing_and_then_signed_is_a_later_signature(
    pki: TestPKI, signed_amount: bytes
) -> None:
    """A co-signer's visible stamp is a signature's appearance like any: the field prepared in a
    revision of its own, then signed, over the text. Both signatures stand: the co-signer signed
    the page as it shows, stamp included, and is accountable for it (README)."""
    prepared = add_signature_field(signed_amount, "Signature2", AMOUNT_BOX, paint=PAINTED)
    cosigned = await sign_pdf(prepared, pki.key("gateway"), field_name="Signature2")
    reports = await verify_pdf(cosigned, pki.trust(revocation="off"))
    assert [(r.field_name, r.signer, r.valid) for r in reports] == [
        ("Signature1", "agency-000.00.11.H53", True),
        ("Signature2", "gateway", True),
    ]


def test_verify_pdf_names_the_field_painted_after_signing(  # type: ignore[no-untyped-def]
    pki: TestPKI, signed_amount: bytes, tmp_path
) -> None:
    path = tmp_path / "painted.pdf"
    path.write_bytes(add_signature_field(signed_amount, "Signature9", AMOUNT_BOX, paint=PAINTED))
    r = lienthong("verify", "pdf", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID PAdES-B-B signature in field Signature1")
    assert (
        "reason:     document modified after signing: signature field 'Signature9' added, "
        "not signed"
    ) in r.stdout
