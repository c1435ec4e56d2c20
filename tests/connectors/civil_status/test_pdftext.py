"""The text a signed birth certificate shows, as the connector reads it to tie the certificate to
its registration: what the register signed, checked against poppler's pdftotext."""

from __future__ import annotations

import asyncio
import io
import subprocess
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from connectors.civil_status.certificate import certificate_pdf
from connectors.civil_status.pdftext import signed_text
from signing.pdf import sign_pdf
from signing.testing import one_page_pdf

LINES = [
    ("Số", "KS.040.2026.000001"),
    ("Họ, chữ đệm, tên", "Nguyễn Ngọc Ánh"),
    ("Số định danh cá nhân", "040326000123"),
]


def pdftotext(pdf: bytes) -> str:
    read = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return read.stdout.decode("utf-8")


def test_the_certificate_reads_as_pdftotext_reads_it(pki: Any) -> None:
    signed = asyncio.run(sign_pdf(certificate_pdf("GIẤY KHAI SINH", LINES), pki.key("register")))
    ours = signed_text(signed)
    assert ours.splitlines() == [line for line in pdftotext(signed).splitlines() if line.strip()]
    assert "Họ, chữ đệm, tên: Nguyễn Ngọc Ánh" in ours.splitlines()


def test_text_a_later_revision_shows_is_not_what_was_signed(pki: Any) -> None:
    """A revision after the signature that draws another page: pdftotext shows it, the reader
    gives what the signer signed (whether a verifier lets that revision through is its own
    concern: nothing it adds counts here)."""
    shown = b"BT /F1 11 Tf 72 770 Td (So: KS.040.2026.000001) Tj ET"
    signed = asyncio.run(sign_pdf(one_page_pdf(shown), pki.key("register")))
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    other = generic.StreamObject(
        stream_data=b"BT /F1 11 Tf 72 700 Td (So: KS.040.2026.000999) Tj ET"
    )
    page[generic.NameObject("/Contents")] = writer.add_object(other)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    changed = out.getvalue()
    assert "KS.040.2026.000999" in pdftotext(changed)
    assert "KS.040.2026.000999" not in signed_text(changed)
    assert signed_text(changed) == "So: KS.040.2026.000001"


def test_an_unsigned_pdf_reads_whole() -> None:
    assert signed_text(certificate_pdf("GIẤY KHAI SINH", LINES)).splitlines()[1:] == [
        f"{label}: {value}" for label, value in LINES
    ]


def test_what_pdf_writers_put_around_the_text_is_read_past() -> None:
    """Filled shapes (``re f``, which pyHanko's own content parser takes for ``false``), an inline
    image, a marked-content property list, kerned TJ arrays, escaped and octal characters."""
    content = (
        b"q 0.9 g 0 0 595 842 re f Q /P <</MCID 0>> BDC\n"
        b"BT /F1 11 Tf 72 770 Td [(KS.0) -20 (40.2026.) 15.5 (000001)] TJ ET EMC\n"
        b"BI /W 2 /H 1 /BPC 8 /CS /G ID \x00EI\xff EI Q\n"
        b"BT /F1 11 Tf 72 750 Td (Ho \\(ten\\): \\116guyen\\\nVan) Tj 0 -12 Td <3034> Tj ET % done\n"
    )
    assert signed_text(one_page_pdf(content)).splitlines() == [
        "KS.040.2026.000001",
        "Ho (ten): NguyenVan",
        "04",
    ]


def test_text_in_a_form_xobject_the_page_draws_is_read() -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(one_page_pdf(b"BT /F1 11 Tf (page) Tj ET")))
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    resources = page["/Resources"]
    form = generic.StreamObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/XObject"),
            generic.NameObject("/Subtype"): generic.NameObject("/Form"),
            generic.NameObject("/BBox"): generic.ArrayObject(
                map(generic.NumberObject, (0, 0, 9, 9))
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(
                {generic.NameObject("/Font"): resources["/Font"]}
            ),
        },
        stream_data=b"BT /F1 11 Tf (in a form) Tj ET",
    )
    resources[generic.NameObject("/XObject")] = generic.DictionaryObject(
        {generic.NameObject("/X1"): writer.add_object(form)}
    )
    drawn = b"BT /F1 11 Tf (page) Tj ET q /X1 Do Q"
    page[generic.NameObject("/Contents")] = writer.add_object(
        generic.StreamObject(stream_data=drawn)
    )
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    assert signed_text(out.getvalue()).splitlines() == ["page", "in a form"]


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7\nnot a pdf", b"%PDF-1.7\n" + b"\x00" * 100])
def test_what_is_no_pdf_is_told(data: bytes) -> None:
    with pytest.raises(ValueError, match="cannot read the text of the PDF"):
        signed_text(data)
