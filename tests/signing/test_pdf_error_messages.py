"""`sign pdf` and `verify pdf` say what went wrong: a PDF whose cross-reference data pyHanko's
reader stops on read "is not a readable PDF: " and nothing more. Real signatures, the CLI in its
own process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from tests.signing.run_cli import lienthong

PDF = sample_pdf()


def _corrupt_xref(pdf: bytes) -> bytes:
    """``pdf`` with the first subsection of its last cross-reference stream grown over the next
    one (object 1 listed twice), on which pyHanko's reader stops with a bare AssertionError."""
    head, index, tail = pdf.rpartition(b"/Index [ 0 1 1 ")
    assert index, "no cross-reference stream"
    return head + b"/Index [ 0 2 1 " + tail


def test_a_corrupt_cross_reference_is_named(pki: TestPKI, tmp_path: Path) -> None:
    signed = asyncio.run(sign_pdf(PDF, pki.key("gateway")))
    path = tmp_path / "bad-xref.pdf"
    path.write_bytes(_corrupt_xref(signed))
    why = f"error: {path} is not a readable PDF: its cross-reference data is corrupt\n"
    r = lienthong("verify", "pdf", str(path), "--trust", str(pki.root_pem))
    assert (r.returncode, r.stderr) == (2, why), r.stdout + r.stderr
    out = tmp_path / "out.pdf"
    r = lienthong("sign", "pdf", str(path), str(out), "--key", str(pki.p12_path("gateway")))
    assert (r.returncode, r.stderr) == (2, why), r.stdout + r.stderr
    assert not out.exists()
