"""The birth certificate (giấy khai sinh) as a small one-page PDF, before the register signs it.

Text uses the standard Helvetica font (no embedding), so Vietnamese is written without
diacritics: the signed PDF is the evidence; the register's data travels in the SOAP reply.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from signing.testing import one_page_pdf

__all__ = ["ascii_text", "certificate_pdf"]

_STROKE = str.maketrans({"Đ": "D", "đ": "d"})


def ascii_text(text: str) -> str:
    """``"Nguyễn Thị Lan"`` → ``"Nguyen Thi Lan"`` (Helvetica's WinAnsi has no Vietnamese)."""
    decomposed = unicodedata.normalize("NFD", text.translate(_STROKE))
    return "".join(c for c in decomposed if not unicodedata.combining(c) and ord(c) < 128)


def _pdf_string(text: str) -> str:
    return ascii_text(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def certificate_pdf(title: str, lines: Sequence[tuple[str, str]]) -> bytes:
    """A one-page A4 PDF: ``title`` then ``label: value`` lines. Pure CPU work (run in a thread)."""
    ops = ["BT", "/F1 18 Tf", "72 770 Td", f"({_pdf_string(title)}) Tj", "/F1 11 Tf", "0 -36 Td"]
    for label, value in lines:
        ops += [f"({_pdf_string(label)}: {_pdf_string(value)}) Tj", "0 -18 Td"]
    ops.append("ET")
    return one_page_pdf("\n".join(ops).encode("ascii"))
