"""Streaming scan of an edXML package on disk: constant memory whatever the attachments' size.

lxml's iterparse accumulates each text node whole (a 200 MB attachment is one ~270 MB base64
string, and with ``huge_tree`` off libxml2 refuses text nodes over 10 MB), so the scan is done
with expat, which hands over character data in chunks and reports byte offsets:

1. the prolog is checked (no DOCTYPE/ENTITY) and expat refuses any DOCTYPE it meets anyway;
2. each ``Attachment/ContentTransferEncoded`` text is base64-decoded on the fly into its own blob
   (hashed as written), and its byte range in the file is recorded;
3. a *reduced* document — the file with each of those ranges replaced by a unique placeholder — is
   parsed by lxml: it is small, keeps every byte of the envelope as sent (prefixes, namespace
   declarations, attribute order), and is what the XSD, the model reader and the signature
   verifier look at. ``Scan.texts()`` replays the original attachment text for the signature's
   digest, so nothing large is ever in memory.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import secrets
import xml.parsers.expat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.blobs import BlobRef, BlobStore, BlobWriter
from gateway.exchange.edxml import DEFAULT_MAX_BYTES, PROLOG_LIMIT, check_prolog, parse_bytes, q
from gateway.exchange.errors import DoctypeForbidden, ExchangeError, InvalidEdxml, PayloadTooLarge
from gateway.exchange.model import NS, AttachmentInfo

__all__ = ["DEFAULT_MAX_ENVELOPE", "Scan", "SpliceRange", "scan_file"]

DEFAULT_MAX_ENVELOPE = 8 * 1024 * 1024
CHUNK = 1024 * 1024
# Deepest element nesting accepted. The deepest the edXML XSD defines is 9 (…/TraceHeaderList/
# Bussiness/BussinessDocumentInfo/ReceiverList/Receiver/OrganId), an XMLDSig (XAdES) signature in
# edXMLHeader about 13; the XSD lets foreign elements in, so leave room, but refuse a nesting that
# only serves to make the parser work (expat's cost per element grows with the depth).
MAX_DEPTH = 64
_ATTACHMENT_PATH = [f"{NS} edXML", f"{NS} AttachmentEncoded", f"{NS} Attachment"]
_CTE = f"{NS} ContentTransferEncoded"
_HEADER = f"{NS} edXMLHeader"
_HEADER_PATH = [f"{NS} edXML", f"{NS} edXMLEnvelope", _HEADER]
_TRACE_LIST = f"{NS} TraceHeaderList"
_TRACE = f"{NS} TraceHeader"
_TRACE_PARENT = [*_HEADER_PATH, _TRACE_LIST]
_B64_OK = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"
_WS = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class SpliceRange:
    start: int  # first byte of the text
    end: int  # the '<' of the end tag
    placeholder: str
    blob: BlobRef | None
    sha256: str
    size: int


@dataclass
class Scan:
    """What ``scan_file`` found. ``root`` is the reduced document (see the module docstring)."""

    path: Path
    size: int
    sha256: str
    root: etree._Element
    splices: list[SpliceRange]
    header_end: int  # offset of the '<' of </edXMLHeader>: where a Signature can be inserted
    attachments: list[AttachmentInfo] = field(default_factory=list)
    # Where a TraceHeader can be appended: just after the last TraceHeader (or the start tag of
    # TraceHeaderList when it has none); -1 without a TraceHeaderList.
    trace_insert: int = -1

    def texts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """For each splice, its placeholder and the original text as c14n writes it.

        Raises InvalidEdxml if the raw text holds anything but base64 and whitespace (a character
        reference or CDATA would make the raw bytes differ from the parsed text).
        """
        for s in self.splices:
            yield s.placeholder, _normalised(self.path, s.start, s.end)


def _normalised(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        left = end - start
        pending_cr = False
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise InvalidEdxml("package file changed while being read")
            left -= len(chunk)
            if chunk.translate(None, _B64_OK):  # anything left is not base64 or whitespace
                raise InvalidEdxml("attachment content must be plain base64 text")
            if pending_cr:
                chunk = b"\r" + chunk
                pending_cr = False
            if chunk.endswith(b"\r") and left > 0:
                chunk, pending_cr = chunk[:-1], True
            # XML end-of-line handling, as the parser (and so c14n) sees the text.
            yield chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if pending_cr:
            yield b"\n"


class _Base64Sink:
    """Incremental base64 decoder writing to a blob (or only hashing when there is no store)."""

    def __init__(self, writer: BlobWriter | None, max_bytes: int) -> None:
        self.writer = writer
        self.hash = hashlib.sha256()
        self.size = 0
        self.max = max_bytes
        self.carry = b""
        self.padded = False  # the last quartet decoded ended with '=': nothing may follow
        self.seen_text = False

    def feed(self, text: str) -> None:
        self.seen_text = True
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidEdxml("attachment content is not base64") from None
        data = self.carry + raw.translate(None, _WS)
        if data and self.padded:
            # a2b_base64 refuses this within one call; text comes in several (parser flushes).
            raise InvalidEdxml("attachment content is not valid base64: data after the padding")
        cut = len(data) - len(data) % 4
        self.carry = data[cut:]
        if cut:
            self._out(data[:cut])

    def _out(self, b64: bytes) -> None:
        try:
            decoded = binascii.a2b_base64(b64, strict_mode=True)
        except binascii.Error as exc:
            raise InvalidEdxml(f"attachment content is not valid base64: {exc}") from exc
        self.padded = b64.endswith(b"=")
        self.size += len(decoded)
        if self.size > self.max:
            raise PayloadTooLarge(f"an attachment is over {self.max} bytes", max_bytes=self.max)
        self.hash.update(decoded)
        if self.writer is not None:
            self.writer.write(decoded)

    def finish(self) -> BlobRef | None:
        if self.carry:
            raise InvalidEdxml("attachment base64 is truncated")
        return self.writer.commit() if self.writer is not None else None


def _end_of_start_tag(f: Any, lt: int) -> int:
    """Offset just after the '>' of the start tag beginning at ``lt`` (quote-aware)."""
    f.seek(lt)
    head = f.read(64 * 1024)
    quote = 0
    for i, c in enumerate(head):
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return lt + i + 1
    raise InvalidEdxml("start tag too long")


def scan_file(
    path: Path | str,
    blobs: BlobStore | None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_envelope: int = DEFAULT_MAX_ENVELOPE,
) -> Scan:
    """Scan the package at ``path``; attachments go to ``blobs`` (not stored when None).

    Synchronous and CPU/IO-bound: run it through ``asyncio.to_thread``. Raises PayloadTooLarge,
    DoctypeForbidden, InvalidEdxml, BlobError. On error no blob written by this call stays
    referenced (blobs already committed are content-addressed and harmless).
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise InvalidEdxml(f"cannot read the package: {exc.strerror}") from exc
    if size > max_bytes:
        raise PayloadTooLarge(f"{size} bytes is over the {max_bytes} limit", max_bytes=max_bytes)

    stack: list[str] = []
    captures: list[tuple[int, int, _Base64Sink]] = []
    state: dict[str, Any] = {"sink": None, "lt": 0, "header_end": -1, "trace_list": -1, "trace": -1}
    # Bytes known to lie inside ContentTransferEncoded elements: the closed ones, and the open
    # one up to ``text_to`` (how far its text has been handed over). Everything else fed to the
    # parser counts against max_envelope as it is fed (see ``too_big``).
    state["attached"] = 0
    state["text_to"] = 0
    # UTF-8 whatever the declaration says (check_prolog refuses any other): expat then never
    # looks an encoding name up among Python's codecs.
    parser = xml.parsers.expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = 256 * 1024
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(*_: Any) -> None:
        raise DoctypeForbidden("DOCTYPE and entity declarations are refused")

    def start(name: str, _attrs: Any) -> None:
        if state["sink"] is not None:
            raise InvalidEdxml("ContentTransferEncoded must hold text only")
        if len(stack) >= MAX_DEPTH:
            raise InvalidEdxml(f"elements are nested more than {MAX_DEPTH} deep")
        if name == _TRACE_LIST and stack == _HEADER_PATH:
            state["trace_list"] = parser.CurrentByteIndex
        if name == _CTE and stack == _ATTACHMENT_PATH:
            writer = blobs.writer(max_bytes) if blobs is not None else None
            state["sink"] = _Base64Sink(writer, max_bytes)
            state["lt"] = state["text_to"] = parser.CurrentByteIndex
        stack.append(name)

    def end(name: str) -> None:
        # Compare paths only for the two elements that matter (list equality stops at the length).
        if name == _HEADER and stack == _HEADER_PATH:
            state["header_end"] = parser.CurrentByteIndex
        elif name == _TRACE and len(stack) == 5 and stack[:4] == _TRACE_PARENT:
            state["trace"] = parser.CurrentByteIndex  # the '<' of </TraceHeader>
        stack.pop()
        sink = state["sink"]
        if sink is not None:
            state["sink"] = None
            captures.append((state["lt"], parser.CurrentByteIndex, sink))
            state["attached"] += parser.CurrentByteIndex - state["lt"]

    def chars(text: str) -> None:
        sink = state["sink"]
        if sink is not None:
            # Where the event that handed this text over starts: every byte before it is inside
            # the open element (pyexpat also hands over what it holds when Parse returns).
            state["text_to"] = parser.CurrentByteIndex
            sink.feed(text)

    def too_big(fed: int) -> None:
        """Refuse as soon as the bytes fed outside attachment text pass ``max_envelope``: a
        190 MB attribute must not be parsed whole first. A lower bound of the envelope's size
        (the exact size is checked below)."""
        outside = fed - state["attached"]
        if state["sink"] is not None:
            outside -= max(0, state["text_to"] - state["lt"])
        if outside > max_envelope:
            raise PayloadTooLarge(
                f"the envelope without attachments is over {max_envelope} bytes",
                max_bytes=max_envelope,
            )

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars

    digest = hashlib.sha256()
    sinks: list[_Base64Sink] = []
    try:
        with path.open("rb") as f:
            head = f.read(PROLOG_LIMIT)
            check_prolog(head)
            chunk = head
            fed = 0
            while chunk:
                digest.update(chunk)
                parser.Parse(chunk, False)
                fed += len(chunk)
                too_big(fed)
                chunk = f.read(CHUNK)
            parser.Parse(b"", True)
            splices: list[SpliceRange] = []
            for lt, end_lt, sink in captures:
                sinks.append(sink)
                ref = sink.finish()
                if not sink.seen_text:
                    continue
                start_text = _end_of_start_tag(f, lt)
                # 52 characters, a multiple of 4: the placeholder is itself valid base64.
                mark = (
                    "LIENTHONGSPLICE" + secrets.token_hex(16).upper() + f"{len(splices):04d}" + "A"
                )
                splices.append(
                    SpliceRange(start_text, end_lt, mark, ref, sink.hash.hexdigest(), sink.size)
                )
            if state["trace"] >= 0:
                trace_insert = _end_of_start_tag(f, state["trace"])  # '>' of the end tag
            elif state["trace_list"] >= 0:
                trace_insert = _end_of_start_tag(f, state["trace_list"])
                f.seek(trace_insert - 2)
                if f.read(1) == b"/":  # <TraceHeaderList/>: nowhere to put a child
                    trace_insert = -1
            else:
                trace_insert = -1
            reduced_size = size - sum(s.end - s.start - len(s.placeholder) for s in splices)
            if reduced_size > max_envelope:
                raise PayloadTooLarge(
                    f"the envelope without attachments is {reduced_size} bytes, over {max_envelope}",
                    max_bytes=max_envelope,
                )
            parts = []
            pos = 0
            for s in splices:
                f.seek(pos)
                parts.append(f.read(s.start - pos))
                parts.append(s.placeholder.encode())
                pos = s.end
            f.seek(pos)
            parts.append(f.read())
    except xml.parsers.expat.ExpatError as exc:
        _abort(captures, state)
        raise InvalidEdxml(
            f"not well-formed XML: {xml.parsers.expat.ErrorString(exc.code)} "
            f"(line {exc.lineno}, column {exc.offset})"
        ) from exc
    except OSError as exc:
        _abort(captures, state)
        raise InvalidEdxml(f"cannot read the package: {exc.strerror}") from exc
    except (LookupError, UnicodeError) as exc:  # belt and braces: an encoding expat asked for
        _abort(captures, state)
        raise InvalidEdxml(f"the package cannot be decoded: {exc}") from exc
    except ExchangeError:
        _abort(captures, state)
        raise
    root = parse_bytes(b"".join(parts), max_bytes=max_envelope + PROLOG_LIMIT)
    scan = Scan(path, size, digest.hexdigest(), root, splices, state["header_end"])
    scan.trace_insert = trace_insert
    scan.attachments = _attachments(root, splices)
    return scan


def _abort(captures: list[tuple[int, int, _Base64Sink]], state: dict[str, Any]) -> None:
    sinks = [c[2] for c in captures]
    if state["sink"] is not None:
        sinks.append(state["sink"])
    for sink in sinks:
        if sink.writer is not None:
            sink.writer.abort()


def _attachments(root: etree._Element, splices: list[SpliceRange]) -> list[AttachmentInfo]:
    by_mark = {s.placeholder: s for s in splices}
    out = []
    empty = hashlib.sha256(b"").hexdigest()
    for a in root.iterfind(f"{q('AttachmentEncoded')}/{q('Attachment')}"):
        cte = a.find(q("ContentTransferEncoded"))
        text = (cte.text or "").strip() if cte is not None else ""
        s = by_mark.get(text)

        def t(local: str, el: etree._Element = a) -> str:
            return (el.findtext(q(local)) or "").strip()

        out.append(
            AttachmentInfo(
                content_id=t("ContentId"),
                name=t("AttachmentName"),
                content_type=t("ContentType") or "application/octet-stream",
                description=t("Description"),
                sha256=s.sha256 if s else empty,
                size=s.size if s else 0,
            )
        )
    return out
