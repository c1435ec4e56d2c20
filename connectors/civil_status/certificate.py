# mypy: disable-error-code="no-untyped-call"
# (pyHanko's PDF objects are not annotated)
"""The birth certificate (giấy khai sinh) as a small one-page PDF, before the register signs it.

Text is set in DejaVu Sans (Debian's ``fonts-dejavu-core``), embedded, so the certificate says
what was registered, diacritics and all: twins "Anh" and "Ánh", two registrations to the register,
are two names on their certificates too. The font is cut once per process (fontTools) to the
letters Vietnamese is written with and embedded in each certificate (about 20 KB); its
``ToUnicode`` map lets any reader (``pdftotext``) read the text back.

Without that font file the text falls back to Helvetica without diacritics (logged once): the
sandbox still registers, and the certificate still carries the data, only less precisely.
"""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PdfFileWriter

from connectors.text import nfc
from signing.testing import one_page_pdf

__all__ = ["FONT_PATH", "ascii_text", "certificate_pdf"]

log = logging.getLogger(__name__)

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # fonts-dejavu-core
# ASCII, Latin-1, Latin Extended-A, ơ/ư (Latin Extended-B), every Vietnamese letter with its tone
# (Latin Extended Additional), dashes, quotes, ellipsis and the đồng sign.
_REPERTOIRE = (
    *range(0x20, 0x7F),
    *range(0xA0, 0x180),
    *(0x1A0, 0x1A1, 0x1AF, 0x1B0),
    *range(0x1EA0, 0x1EFA),
    *(0x2013, 0x2014, 0x2018, 0x2019, 0x201C, 0x201D, 0x2026, 0x20AB),
)
_NAME = "/LTVNAA+DejaVuSans"  # a subset is named with a six-letter tag (ISO 32000-1, 9.6.4)
_STROKE = str.maketrans({"Đ": "D", "đ": "d"})


def ascii_text(text: str) -> str:
    """``"Nguyễn Thị Lan"`` → ``"Nguyen Thi Lan"`` (Helvetica's WinAnsi has no Vietnamese)."""
    decomposed = unicodedata.normalize("NFD", text.translate(_STROKE))
    return "".join(c for c in decomposed if not unicodedata.combining(c) and ord(c) < 128)


@dataclass(frozen=True)
class _Font:
    program: bytes  # the cut TrueType font
    glyphs: dict[int, int]  # code point → glyph id (= CID: CIDToGIDMap /Identity)
    widths: list[int]  # by glyph id, in thousandths of an em
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int


@lru_cache(maxsize=1)
def _font() -> _Font | None:
    """DejaVu Sans cut to :data:`_REPERTOIRE`, or None (logged) when the font is not installed."""
    try:
        data = FONT_PATH.read_bytes()
    except OSError as exc:
        log.warning(
            "%s: %s; birth certificates are written without diacritics "
            "(install Debian's fonts-dejavu-core)",
            FONT_PATH,
            exc.strerror or exc,
        )
        return None
    from fontTools import subset, ttLib

    options = subset.Options()
    options.layout_features = []  # NFC text needs no shaping: one letter, one glyph
    options.hinting = False
    options.drop_tables += ["FFTM"]
    options.notdef_outline = True
    font = ttLib.TTFont(io.BytesIO(data))
    cutter = subset.Subsetter(options)
    cutter.populate(unicodes=_REPERTOIRE)
    cutter.subset(font)
    out = io.BytesIO()
    font.save(out)
    font = ttLib.TTFont(io.BytesIO(out.getvalue()))  # read back: glyph ids as embedded

    def em(units: float) -> int:
        return round(float(units) * 1000 / int(font["head"].unitsPerEm))

    order = font.getGlyphOrder()
    head, hhea = font["head"], font["hhea"]
    return _Font(
        program=out.getvalue(),
        glyphs={cp: font.getGlyphID(name) for cp, name in font.getBestCmap().items()},
        widths=[em(font["hmtx"][name][0]) for name in order],
        bbox=(em(head.xMin), em(head.yMin), em(head.xMax), em(head.yMax)),
        ascent=em(hhea.ascent),
        descent=em(hhea.descent),
        # OS/2 before version 2 (DejaVu's) has no cap height: the ascent stands in for it
        cap_height=em(getattr(font["OS/2"], "sCapHeight", 0) or hhea.ascent),
    )


def _name(text: str) -> generic.NameObject:
    return generic.NameObject(text)


def _stream(data: bytes, **entries: generic.PdfObject) -> generic.StreamObject:
    stream = generic.StreamObject({_name(f"/{k}"): v for k, v in entries.items()}, data)
    stream.compress()
    return stream


def _to_unicode(glyphs: dict[int, int]) -> bytes:
    """The CMap from glyph ids back to text (what a reader copies or extracts)."""
    pairs = sorted((gid, cp) for cp, gid in glyphs.items() if gid)
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for start in range(0, len(pairs), 100):  # at most 100 entries a block
        chunk = pairs[start : start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        lines += [f"<{gid:04X}> <{cp:04X}>" for gid, cp in chunk]
        lines.append("endbfchar")
    lines.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return "\n".join(lines).encode("ascii")


def _type0(writer: BasePdfFileWriter, font: _Font) -> generic.DictionaryObject:
    """The embedded font as PDF objects: Type0 over a CIDFontType2, Identity-H."""
    add = writer.add_object
    descriptor = generic.DictionaryObject(
        {
            _name("/Type"): _name("/FontDescriptor"),
            _name("/FontName"): _name(_NAME),
            _name("/Flags"): generic.NumberObject(32),  # non-symbolic
            _name("/FontBBox"): generic.ArrayObject(map(generic.NumberObject, font.bbox)),
            _name("/ItalicAngle"): generic.NumberObject(0),
            _name("/Ascent"): generic.NumberObject(font.ascent),
            _name("/Descent"): generic.NumberObject(font.descent),
            _name("/CapHeight"): generic.NumberObject(font.cap_height),
            _name("/StemV"): generic.NumberObject(80),
            _name("/FontFile2"): add(
                _stream(font.program, Length1=generic.NumberObject(len(font.program)))
            ),
        }
    )
    cid_font = generic.DictionaryObject(
        {
            _name("/Type"): _name("/Font"),
            _name("/Subtype"): _name("/CIDFontType2"),
            _name("/BaseFont"): _name(_NAME),
            _name("/CIDSystemInfo"): generic.DictionaryObject(
                {
                    _name("/Registry"): generic.TextStringObject("Adobe"),
                    _name("/Ordering"): generic.TextStringObject("Identity"),
                    _name("/Supplement"): generic.NumberObject(0),
                }
            ),
            _name("/FontDescriptor"): add(descriptor),
            _name("/CIDToGIDMap"): _name("/Identity"),
            _name("/W"): generic.ArrayObject(
                [
                    generic.NumberObject(0),
                    generic.ArrayObject(map(generic.NumberObject, font.widths)),
                ]
            ),
        }
    )
    return generic.DictionaryObject(
        {
            _name("/Type"): _name("/Font"),
            _name("/Subtype"): _name("/Type0"),
            _name("/BaseFont"): _name(_NAME),
            _name("/Encoding"): _name("/Identity-H"),
            _name("/DescendantFonts"): generic.ArrayObject([add(cid_font)]),
            _name("/ToUnicode"): add(_stream(_to_unicode(font.glyphs))),
        }
    )


def _page(font: _Font, lines: Sequence[tuple[int, str]]) -> bytes:
    """An A4 page with each ``(size, text)`` line in the embedded font."""
    ops, y = ["BT", "72 770 Td"], 0
    for size, text in lines:
        glyphs = "".join(f"{font.glyphs.get(ord(c), 0):04X}" for c in nfc(text))
        ops += [f"/F1 {size} Tf", f"0 {-y} Td", f"<{glyphs}> Tj"]
        y = size + 7
    ops.append("ET")
    writer = PdfFileWriter()
    page = generic.DictionaryObject(
        {
            _name("/Type"): _name("/Page"),
            _name("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]
            ),
            _name("/Contents"): writer.add_object(_stream("\n".join(ops).encode("ascii"))),
            _name("/Resources"): generic.DictionaryObject(
                {
                    _name("/Font"): generic.DictionaryObject(
                        {_name("/F1"): writer.add_object(_type0(writer, font))}
                    )
                }
            ),
        }
    )
    writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _pdf_string(text: str) -> str:
    return ascii_text(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _ascii_page(title: str, lines: Sequence[tuple[str, str]]) -> bytes:
    ops = ["BT", "/F1 18 Tf", "72 770 Td", f"({_pdf_string(title)}) Tj", "/F1 11 Tf", "0 -36 Td"]
    for label, value in lines:
        ops += [f"({_pdf_string(label)}: {_pdf_string(value)}) Tj", "0 -18 Td"]
    ops.append("ET")
    return one_page_pdf("\n".join(ops).encode("ascii"))


def certificate_pdf(title: str, lines: Sequence[tuple[str, str]]) -> bytes:
    """A one-page A4 PDF: ``title`` then ``label: value`` lines. Pure CPU work (run in a thread)."""
    font = _font()
    if font is None:
        return _ascii_page(title, lines)
    return _page(font, [(16, title), *((11, f"{label}: {value}") for label, value in lines)])
