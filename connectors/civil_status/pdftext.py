# mypy: disable-error-code="no-untyped-call"
# (pyHanko's PDF objects are not annotated)
"""What a signed PDF's pages show, as text: to tie a birth certificate to the registration it
comes with (its number, the child's personal id), read from the revision its last signature
covers — what a later, unsigned revision adds certifies nothing.

Each string the page's text operators show (``Tj``, ``'``, ``"``, ``TJ``) is decoded through its
font's ``ToUnicode`` map (without one, byte for byte as Latin-1), in the order written: one line
per operator, a ``TJ`` array's pieces run together. Form XObjects the page draws are read too.
Where the text sits is not looked at: this finds what a document says, not how it is laid out.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

__all__ = ["signed_text"]

_MAX_PAGES = 16  # a birth certificate has one
_MAX_FORM_DEPTH = 4  # Form XObjects drawn inside Form XObjects
_MAX_CODES = 1 << 16  # entries read from one ToUnicode map
_HEX = rb"<([0-9A-Fa-f\s]*)>"
_DELIMITERS = b"()<>[]{}/%"
_SPACE = b" \t\r\n\f\x00"
_TOKEN = re.compile(rb"[^\s()<>\[\]{}/%\x00]+")
_OPERAND = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)|true|false|null")
_NEWLINE = re.compile(rb"[\r\n]")
_IMAGE_END = re.compile(rb"\sEI(?=\s|$)")
_OCTAL = re.compile(rb"[0-7]{1,3}")
_MAX_CONTENT = 8 << 20  # bytes of content streams read from one PDF (a certificate: some KB)
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}


def signed_text(pdf: bytes) -> str:
    """The text the pages of ``pdf`` show as its last signature signed it (the whole PDF if it
    has no signature). CPU work: run it in a thread.

    Raises:
        ValueError: the PDF, its pages or their content cannot be read.
    """
    try:
        return "\n".join(_shown(_reader(_signed_revision(pdf))))
    except Exception as exc:  # pyHanko's PdfReadError, a KeyError, a malformed object, …
        raise ValueError(f"cannot read the text of the PDF: {exc}") from exc


def _reader(pdf: bytes) -> Any:
    return PdfFileReader(io.BytesIO(pdf), strict=False)


def _signed_revision(pdf: bytes) -> bytes:
    """``pdf`` up to the end of the bytes its last signature covers (``/ByteRange [0 a b c]``:
    the file the signer had, up to ``b + c``)."""
    ends = []
    for sig in _reader(pdf).embedded_signatures:
        _, _, start, length = (int(n) for n in sig.byte_range)
        ends.append(start + length)
    return pdf[: max(ends)] if ends else pdf


def _shown(reader: Any) -> Iterator[str]:
    budget = [_MAX_CONTENT]  # what is left to read: the text beyond is not looked at
    pages = reader.root["/Pages"]
    for index in range(min(int(pages["/Count"]), _MAX_PAGES)):
        page_ref, resources = reader.find_page_for_modification(index)
        contents = page_ref.get_object().get("/Contents")
        if contents is None:
            continue
        parts = contents if isinstance(contents, generic.ArrayObject) else [contents]
        streams = [p.get_object() for p in parts]
        yield from _operators(streams, _dict(resources), 0, budget)


def _dict(value: Any) -> Any:
    value = value.get_object() if value is not None else None
    return value if isinstance(value, generic.DictionaryObject) else generic.DictionaryObject()


def _operators(streams: list[Any], resources: Any, depth: int, budget: list[int]) -> Iterator[str]:
    fonts, xobjects = _dict(resources.get("/Font")), _dict(resources.get("/XObject"))
    decoders: dict[str, _Decoder] = {}
    decoder = _Decoder(None)
    data = b""
    for stream in streams:
        data = b"\n".join((data, stream.data[: budget[0]]))
        budget[0] = max(0, budget[0] - len(stream.data))
    for op, args in _content(data):
        if op == b"Tf" and args and isinstance(args[0], _Name):
            name = str(args[0])
            if name not in decoders:
                decoders[name] = _Decoder(_dict(fonts.get(name)))
            decoder = decoders[name]
        elif op in (b"Tj", b"'", b'"') and args:
            yield decoder.text(args[-1])
        elif op == b"TJ" and args and isinstance(args[0], list):
            yield "".join(decoder.text(item) for item in args[0])
        elif op == b"Do" and args and isinstance(args[0], _Name) and depth < _MAX_FORM_DEPTH:
            form = xobjects.get(str(args[0]))
            form = form.get_object() if form is not None else None
            if isinstance(form, generic.StreamObject) and form.get("/Subtype") == "/Form":
                inner = form.get("/Resources")
                resources_of = _dict(inner) if inner else resources
                yield from _operators([form], resources_of, depth + 1, budget)


class _Name(str):
    """A name operand (``/F1``), as its resource dictionary's key."""


def _content(data: bytes) -> Iterator[tuple[bytes, list[Any]]]:
    """A content stream's operators with their operands: strings as bytes, names as
    :class:`_Name`, arrays as lists; numbers, dictionaries and the rest as None (unread).
    pyHanko's own parser takes the fill operator ``f`` for the start of ``false``."""
    stack: list[list[Any]] = [[]]
    at, end = 0, len(data)
    while at < end:
        c = data[at]
        if c in _SPACE:
            at += 1
        elif c == ord("%"):
            newline = _NEWLINE.search(data, at)
            at = newline.end() if newline else end
        elif c == ord("("):
            value, at = _literal(data, at + 1)
            stack[-1].append(value)
        elif data.startswith(b"<<", at) or data.startswith(b">>", at):
            stack[-1].append(None)  # a property list's bounds (BDC, DP): not text
            at += 2
        elif c == ord("<"):
            close = data.find(b">", at)
            close = end if close < 0 else close
            stack[-1].append(_hex(data[at + 1 : close]))
            at = close + 1
        elif c == ord("["):
            stack.append([])
            at += 1
        elif c == ord("]"):
            if len(stack) > 1:
                inner = stack.pop()
                stack[-1].append(inner)
            at += 1
        elif c == ord("/"):
            token = _TOKEN.match(data, at + 1)
            name = token.group() if token else b""
            stack[-1].append(_Name("/" + name.decode("latin-1")))
            at += 1 + len(name)
        elif c in _DELIMITERS:  # a stray ")", "{", "}", ">"
            at += 1
        else:
            token = _TOKEN.match(data, at)
            assert token is not None  # c is neither blank nor a delimiter
            word, at = token.group(), token.end()
            if _OPERAND.fullmatch(word):
                stack[-1].append(None)
                continue
            yield word, stack[0]
            stack = [[]]
            if word == b"ID":  # an inline image's data, up to "EI" on its own
                image_end = _IMAGE_END.search(data, at + 1)
                at = image_end.end() if image_end else end


def _literal(data: bytes, at: int) -> tuple[bytes, int]:
    """A literal string from ``at`` (after its "("): its bytes, and where it ends."""
    out, depth, end = bytearray(), 1, len(data)
    while at < end:
        c = data[at]
        at += 1
        if c == ord("\\") and at < end:
            e = data[at]
            at += 1
            if e in _ESCAPES:
                out += _ESCAPES[e]
            elif 48 <= e <= 55:  # up to three octal digits
                digits = _OCTAL.match(data, at - 1)
                assert digits is not None
                out.append(int(digits.group(), 8) & 0xFF)
                at = digits.end()
            elif e == ord("\r"):  # a line continued
                at += data.startswith(b"\n", at)
            elif e != ord("\n"):
                out.append(e)
        elif c == ord("("):
            depth += 1
            out.append(c)
        elif c == ord(")"):
            depth -= 1
            if depth == 0:
                return bytes(out), at
            out.append(c)
        else:
            out.append(c)
    return bytes(out), at


class _Decoder:
    """A font's codes to text: its ToUnicode map, or Latin-1 byte for byte without one."""

    def __init__(self, font: Any) -> None:
        self.widths: list[int] = []
        self.codes: dict[bytes, str] = {}
        cmap = font.get("/ToUnicode") if font is not None else None
        cmap = cmap.get_object() if cmap is not None else None
        if isinstance(cmap, generic.StreamObject):
            self._read(cmap.data)

    def text(self, raw: Any) -> str:
        if not isinstance(raw, bytes):
            return ""  # a TJ adjustment (a number)
        if not self.widths:
            return raw.decode("latin-1")
        out, at = [], 0
        while at < len(raw):
            for width in self.widths:
                if raw[at : at + width] in self.codes:
                    out.append(self.codes[raw[at : at + width]])
                    at += width
                    break
            else:
                at += self.widths[-1]
        return "".join(out)

    def _read(self, data: bytes) -> None:
        for block in _blocks(data, b"codespacerange"):
            for low, _ in re.findall(_HEX + rb"\s*" + _HEX, block):
                self.widths.append(len(_hex(low)))
        for block in _blocks(data, b"bfchar"):
            for code, text in re.findall(_HEX + rb"\s*" + _HEX, block):
                self._add(_hex(code), _utf16(_hex(text)))
        for block in _blocks(data, b"bfrange"):
            for low, high, dest in re.findall(
                _HEX + rb"\s*" + _HEX + rb"\s*(<[0-9A-Fa-f\s]*>|\[[^\]]*\])", block
            ):
                self._range(_hex(low), _hex(high), dest)
        self.widths = sorted({w for w in self.widths if w} or {2}, reverse=True)

    def _range(self, low: bytes, high: bytes, dest: bytes) -> None:
        first, last = int.from_bytes(low, "big"), int.from_bytes(high, "big")
        last = min(last, first + _MAX_CODES - len(self.codes))
        if dest.startswith(b"["):
            texts = [_utf16(_hex(t)) for t in re.findall(_HEX, dest)]
        else:
            start = _hex(dest[1:-1])
            base = int.from_bytes(start[-2:], "big") if len(start) >= 2 else 0
            head = start[:-2]
            texts = [
                _utf16(head + ((base + i) & 0xFFFF).to_bytes(2, "big"))
                for i in range(last - first + 1)
            ]
        for i, text in enumerate(texts[: last - first + 1]):
            self._add((first + i).to_bytes(len(low), "big"), text)

    def _add(self, code: bytes, text: str) -> None:
        if len(self.codes) < _MAX_CODES:
            self.codes[code] = text


def _blocks(data: bytes, name: bytes) -> list[bytes]:
    return re.findall(rb"begin" + name + rb"(.*?)end" + name, data, flags=re.S)


def _hex(text: bytes) -> bytes:
    digits = b"".join(text.split())
    return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode("ascii"))


def _utf16(data: bytes) -> str:
    return data.decode("utf-16-be", errors="replace")
