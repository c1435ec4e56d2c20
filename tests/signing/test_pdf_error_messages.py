"""`sign pdf` and `verify pdf` say what went wrong: a TSA that cannot be reached, that is no TSA,
or a --tsa that is no URL read "PDF signature timestamp failed: Error while contacting timestamp
service" alike, without the URL; a PDF whose cross-reference data pyHanko's reader stops on read
"is not a readable PDF: " and nothing more. Real sockets and signatures, the CLI in its own
process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signing.errors import TimestampError
from signing.pdf import sign_pdf
from signing.testing import TestPKI, free_port, sample_pdf
from tests.signing.run_cli import lienthong

PDF = sample_pdf()


async def _tsa_error(pki: TestPKI, url: str) -> str:
    with pytest.raises(TimestampError) as failed:
        await sign_pdf(PDF, pki.key("gateway"), level="B-T", tsa_url=url)
    return str(failed.value)


async def test_a_tsa_failure_names_the_tsa_and_the_cause(pki: TestPKI, pki_server: str) -> None:
    port = free_port()
    assert await _tsa_error(pki, f"http://127.0.0.1:{port}/") == (
        f"PDF signature timestamp from http://127.0.0.1:{port}/ failed: cannot connect to "
        f"127.0.0.1:{port} (Connection refused)"
    )
    # A server that is no TSA (the PKI's CRL server); the query may hold the TSA's key.
    assert await _tsa_error(pki, f"{pki_server}/tsa?token=S3cret") == (
        f"PDF signature timestamp from {pki_server}/tsa?token=*** failed: HTTP 404 Not Found"
    )
    assert await _tsa_error(pki, "tsa.example.vn") == (
        "PDF signature timestamp from tsa.example.vn failed: not an http:// or https:// URL"
    )


def test_sign_pdf_cli_prints_the_tsa_failure_on_one_line(pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "in.pdf").write_bytes(PDF)
    port = free_port()
    r = lienthong(
        "sign",
        "pdf",
        str(tmp_path / "in.pdf"),
        str(tmp_path / "out.pdf"),
        "--key",
        str(pki.p12_path("gateway")),
        "--level",
        "B-T",
        "--tsa",
        f"http://127.0.0.1:{port}/",
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr == (
        f"error: PDF signature timestamp from http://127.0.0.1:{port}/ failed: cannot connect "
        f"to 127.0.0.1:{port} (Connection refused)\n"
    )


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
