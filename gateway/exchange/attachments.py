"""Checks on the attachments themselves: manifest consistency and PDF signatures.

Attached PDFs carry their own signatures (``adbe.pkcs7.detached`` or PAdES); each one, also when
zipped (as many systems in service send them), must verify against the configured trust anchors.
pyHanko needs the PDF in memory, so PDFs are capped (``max_pdf_bytes``), and are read and checked
one at a time; a package's PDFs together (what its zips inflate to included) and their number are
capped too. A PDF over a cap is refused rather than passed unchecked. So is one whose checking
would cost more than any genuine document's (too many signatures, form fields, objects in object
streams: ``signing.pdf_limits``, refused before pyHanko validates it), and the gateway verifies
at most MAX_CONCURRENT_PDF_CHECKS PDFs at once, all packages together.

A PDF is known by its content as well as by its name and type: PDF readers open any file with
``%PDF-`` in its first 1,024 bytes as one, whatever it is called, so an unsigned PDF attached as
``cong-van.bin`` (``application/octet-stream``) must not escape the check. They open one whose
header is altered or gone as well, by its ``startxref`` or its trailer dictionary, wherever in the
file (pdf_body_in): every attachment is read to its end for them. Zip members alike (what is read
of them counts in MAX_ZIP_INFLATE).

A zip whose PDFs cannot all be read is refused (400 ``invalid-edxml``) rather than passed with
a signature unchecked: a member that is encrypted, or whose compressed data does not inflate, or
compressed otherwise than stored or deflated (zipfile inflates bzip2 and LZMA whole: a zip bomb). So is a zip inside a zip (a member
named ``*.zip``): its PDFs would escape the check, and inflating archives within archives is
where zip bombs live; the sender attaches the inner files, or the inner zip, directly. Every
member is looked into (its first KiB), so an encrypted one is refused whatever its name.

A zip is known by its content too (``PK\x03\x04`` at its start), as a PDF is: one attached as
``ho-so.bin``, or a ``.docx`` (a zip), is opened and its members looked into. And it is read two
ways at once: zipfile reads the central directory at its end, while streaming readers
(``java.util.zip.ZipInputStream``, as many document systems unpack) read one local header after
another from its start. A zip on which the two disagree is refused (400 ``invalid-edxml``): a
local entry the directory does not list (a PDF hidden from the hub, handed to recipients),
members overlapping, bytes before the first, between two or after the last, a local header that
says another name, method or size than the directory. Where a member's data ends is known without
inflating it from its sizes, except for a deflated member written with a data descriptor (its
local header gives no size: a streaming reader inflates it to its end, then reads the next
header): such members are inflated to check that their data ends where the directory says, at
most MAX_ZIP_INFLATE bytes a package (413 beyond: a zip bomb).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import logging
import struct
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cryptography import x509

from gateway.exchange.blobs import BlobStore
from gateway.exchange.errors import (
    BlobError,
    ForgedSender,
    InvalidEdxml,
    PayloadTooLarge,
    SignatureInvalid,
)
from gateway.exchange.model import AttachmentInfo, Package
from gateway.threadwork import to_its_end

__all__ = [
    "DEFAULT_MAX_PDF",
    "DEFAULT_MAX_PDFS",
    "DEFAULT_MAX_PDF_TOTAL",
    "MAX_CONCURRENT_PDF_CHECKS",
    "SignerOk",
    "check_manifest",
    "is_pdf",
    "looks_like_pdf",
    "media_type",
    "named_parts",
    "pdf_sources",
    "verify_pdf_source",
    "verify_pdfs",
]

# pyHanko's loggers that, while it validates a PDF, log a warning or a debug line with the
# exception's traceback ("Failed to build path for …" for a signer under a PKI not trusted here):
# the PDF is the client's, so its failures are the client's, answered with a problem, and the
# gateway's log keeps one line of each, never a traceback (``_OneLine``).
_PDF_VALIDATION_LOGGERS = (
    "pyhanko.sign.validation.generic_cms",
    "pyhanko.sign.validation.pdf_embedded",
    "pyhanko.sign.validation.status",
    "pyhanko.sign.validation.ades",
    "pyhanko.sign.diff_analysis.policies",
    "pyhanko.pdf_utils.reader",
    "pyhanko.pdf_utils.xref",
    "pyhanko_certvalidator.revinfo.validate_crl",
    "pyhanko_certvalidator.revinfo.validate_ocsp",
)


class _OneLine(logging.Filter):
    """Folds a record's exception into its message, on one line, and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.stack_info:
            exc = record.exc_info[1] if record.exc_info else None
            message = record.getMessage()
            if exc is not None:
                message = f"{message}: {type(exc).__name__}: {exc}"
            record.msg, record.args = " ".join(message.split()), ()
            record.exc_info = record.exc_text = record.stack_info = None
        return True


def _quiet_pdf_validation() -> None:
    for name in _PDF_VALIDATION_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _OneLine) for f in log.filters):
            log.addFilter(_OneLine())


_quiet_pdf_validation()

DEFAULT_MAX_PDF = 64 * 1024 * 1024  # one PDF (pyHanko reads it whole)
# All the PDFs of one package, attached or unzipped: a zip of a few hundred KB can inflate to
# gigabytes, each byte of which would be hashed. Above the package cap (200 MB), so that any
# package of plain PDFs fits.
DEFAULT_MAX_PDF_TOTAL = 256 * 1024 * 1024
DEFAULT_MAX_PDFS = 64  # PDFs per package, attached or unzipped: each is a signature to check
# A zip's central directory, which zipfile reads whole into objects before anything else: 1 MiB
# lists some 20,000 files; a 200 MB zip of empty files would list millions (seconds of CPU and
# gigabytes of memory before its first member is looked at).
MAX_ZIP_DIRECTORY = 1024 * 1024
_EOCD = b"PK\x05\x06"  # end of central directory record (22 bytes + a comment of up to 64 KiB)
_ZIP64_LOCATOR = b"PK\x06\x07"  # 20 bytes, just before it in a zip64 file
_ZIP64_EOCD = b"PK\x06\x06"  # 56 bytes, just before the locator
_LOCAL_HEADER = b"PK\x03\x04"  # a local file header: where a zip begins
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # its fixed 30 bytes
_DESCRIPTOR = b"PK\x07\x08"  # the signature a data descriptor may begin with
_ZIP64_EXTRA = 0x0001
# What the layout check may inflate of one package's zips: the deflated members written with a
# data descriptor, whose end only inflating them tells: about 1 s of one CPU for 1 GiB of a zip
# bomb's zeros (text inflates slower, but a package is at most max_document_bytes compressed).
MAX_ZIP_INFLATE = 1 << 30
_INFLATE_CHUNK = 64 * 1024

# PDFs verified at once in one gateway, all packages together: each takes a CPU (pyHanko's work is
# Python, under the GIL: more at once are no faster) and up to some hundreds of MB; the rest wait
# their turn. A few, so that one waiting on a CRL or OCSP fetch does not hold the others up.
MAX_CONCURRENT_PDF_CHECKS = 4
_pdf_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _pdf_check_slot() -> asyncio.Semaphore:
    """The running loop's semaphore of MAX_CONCURRENT_PDF_CHECKS (a semaphore is bound to one
    loop; tests and the CLI run several)."""
    loop = asyncio.get_running_loop()
    gate = _pdf_checks.get(loop)
    if gate is None:
        gate = _pdf_checks[loop] = asyncio.Semaphore(MAX_CONCURRENT_PDF_CHECKS)
    return gate


# PDF readers accept the "%PDF-" header anywhere in a file's first 1,024 bytes (Acrobat's rule,
# in the implementation notes of Adobe's PDF Reference), not only at its start.
PDF_HEADER_WINDOW = 1024
# Whether a certificate may sign the PDF that is (or is in) an attachment: see verify_pdfs.
SignerOk = Callable[[AttachmentInfo, x509.Certificate], bool]


def _cid(value: str) -> str:
    return value.strip().removeprefix("cid:").strip("<>")


def _is_path(name: str) -> bool:
    """Whether an attachment name is a path rather than a file name (recipients file attachments
    by name: ``../../etc/cron.d/x.pdf`` would land elsewhere than the document's folder)."""
    return "/" in name or "\\" in name or name in (".", "..")


def named_parts(pkg: Package, parts: Sequence[AttachmentInfo]) -> list[AttachmentInfo]:
    """``parts`` (multipart/related), each sent without a file name named as its manifest
    Reference names it: the manifest, which the envelope's signature covers, names them; a part
    the manifest does not reference is left for check_manifest to refuse."""
    names = {_cid(r.content_id): r.attachment_name for r in pkg.references}
    return [
        p if p.name else dataclasses.replace(p, name=names.get(_cid(p.content_id), ""))
        for p in parts
    ]


def check_manifest(pkg: Package, parts: Sequence[AttachmentInfo] = ()) -> None:
    """Every manifest Reference has its Attachment and every Attachment its Reference, and no
    ContentId repeats; every MIME part (``parts``, multipart/related) is one the manifest
    references: a part travels outside the signed envelope, and one the sender did not list would
    be forwarded as if it had. An embedded Attachment says the same ContentType (its media type)
    and AttachmentName as its Reference: the hub judges an attachment by the Attachment element
    (is it a PDF, whose signature must be checked?), while recipients file it as the manifest
    says (a Reference ``cong-van.pdf``, ``application/pdf`` for an Attachment ``cong-van.bin``,
    ``application/octet-stream`` was an unsigned PDF let through). A part's file name (its
    Content-Disposition, which no signature covers; ``named_parts`` names one sent without) is
    its Reference's AttachmentName likewise, and no AttachmentName is a path.
    Raises InvalidEdxml."""
    references = {_cid(r.content_id): r for r in pkg.references}
    referenced = references.keys()
    for r in pkg.references:
        if _is_path(r.attachment_name):
            raise InvalidEdxml(
                f"manifest Reference {r.content_id} names its attachment {r.attachment_name!r}, "
                "which is a path: an AttachmentName is a file name (no / or \\, not . or ..)",
                field="AttachmentName",
                content_id=_cid(r.content_id),
            )
    for part in parts:
        if _cid(part.content_id) not in referenced:
            raise InvalidEdxml(
                f"part <{_cid(part.content_id)}> is not referenced by the package's manifest",
                field="Reference",
                content_id=_cid(part.content_id),
            )
    seen: set[str] = set()
    for a in pkg.attachments:
        cid = _cid(a.content_id)
        if cid in seen:
            raise InvalidEdxml(f"attachment ContentId {a.content_id} repeats", field="ContentId")
        if cid not in referenced:
            # The manifest is the document's list of parts, which recipients file: one it does
            # not list would reach them unannounced (and unnamed in the receipt's manifest).
            raise InvalidEdxml(
                f"attachment {a.content_id} ({a.name}) is not listed in the package's manifest",
                field="Reference",
                content_id=cid,
            )
        seen.add(cid)
        r = references[cid]
        if a in parts:
            if a.name != r.attachment_name:
                raise InvalidEdxml(
                    f"part <{cid}> is named {a.name!r}, but its manifest Reference says "
                    f"{r.attachment_name!r}: a part is named as the manifest names it (or sent "
                    "without a file name)",
                    field="Attachment",
                    content_id=cid,
                )
        elif a.name != r.attachment_name or media_type(a.content_type) != media_type(
            r.content_type
        ):
            raise InvalidEdxml(
                f"attachment {a.content_id} is {a.name!r} ({a.content_type}), but its manifest "
                f"Reference says {r.attachment_name!r} ({r.content_type})",
                field="Attachment",
                content_id=cid,
            )
    for r in pkg.references:
        if _cid(r.content_id) not in seen:
            raise InvalidEdxml(
                f"manifest Reference {r.content_id} has no attachment", field="Reference"
            )


def media_type(content_type: str) -> str:
    """``type/subtype`` of a Content-Type, lower case, without parameters or blanks: the one
    reading of an attachment's type, for every check that looks at it."""
    return content_type.split(";", 1)[0].strip().lower()


def is_pdf(name: str, content_type: str) -> bool:
    return media_type(content_type) == "application/pdf" or name.lower().endswith(".pdf")


def looks_like_pdf(head: bytes) -> bool:
    """Whether a PDF reader would open a file that begins with ``head`` (at least its first
    PDF_HEADER_WINDOW + 4 bytes, or the whole file) as a PDF: ``%PDF-`` starts in its first KiB."""
    return head.find(b"%PDF-", 0, PDF_HEADER_WINDOW + 4) >= 0


# A reader opens a file whose header is altered or missing too (poppler: "May not be a PDF file
# (continuing anyway)"): by the startxref that points to its cross-reference data, or, repairing
# it, by a trailer dictionary, wherever either is (poppler found one 25 KB before the end, past any
# window the norm names). A file that holds either is a PDF.
_TRAILER_GAP = 32  # the white space looked through between "trailer" and its "<<"
_PDF_WHITE = b"\0\t\n\f\r "
_BODY_CARRY = 48  # what a piece read keeps of the one before: a marker may straddle the two


def pdf_body_in(pieces: Iterable[bytes]) -> bool:
    """Whether the file read as ``pieces`` holds a PDF's ``startxref`` or ``trailer <<``."""
    carry = b""
    for piece in pieces:
        data = carry + piece
        if b"startxref" in data:
            return True
        at = data.find(b"trailer")
        while at >= 0:
            if data[at + 7 : at + 9 + _TRAILER_GAP].lstrip(_PDF_WHITE).startswith(b"<<"):
                return True
            at = data.find(b"trailer", at + 7)
        carry = data[-_BODY_CARRY:]
    return False


def _blob_pieces(blobs: BlobStore, a: AttachmentInfo) -> Iterator[bytes]:
    with blobs.open(a.sha256) as raw:
        f = _BlobFile(raw, a.name)
        while piece := f.read(_INFLATE_CHUNK):
            yield piece


def _member_is_pdf(zf: zipfile.ZipFile, info: zipfile.ZipInfo, room: int) -> tuple[bool, int]:
    """Whether a zip member is a PDF by its content (looks_like_pdf, pdf_body_in), and how many
    bytes past its first KiB were read to tell. Raises _Overinflated past ``room`` bytes."""
    read = 0
    with zf.open(info) as member:
        head = member.read(PDF_HEADER_WINDOW + 4)
        if looks_like_pdf(head):
            return True, 0

        def pieces() -> Iterator[bytes]:
            nonlocal read
            yield head
            while piece := member.read(_INFLATE_CHUNK):
                read += len(piece)
                if read > room:
                    raise _Overinflated
                yield piece

        found = pdf_body_in(pieces())
    return found, read


def _head(blobs: BlobStore, a: AttachmentInfo) -> bytes:
    with blobs.open(a.sha256) as f:
        try:
            return f.read(PDF_HEADER_WINDOW + 4)
        except OSError as exc:
            raise BlobError(f"cannot read attachment {a.name}: {exc.strerror or exc}") from exc


def _is_zip(name: str, content_type: str, head: bytes = b"") -> bool:
    """Whether an attachment is a zip: by its name or type, or by its first bytes (a local
    header: what a streaming reader unpacks, whatever the file is called)."""
    return (
        media_type(content_type) in ("application/zip", "application/x-zip-compressed")
        or name.lower().endswith(".zip")
        or head.startswith(_LOCAL_HEADER)
    )


def _zip_directory_size(f: Any) -> int | None:
    """The size of the central directory the zip in ``f`` declares, found as zipfile finds it
    (the last end record in the file's last 64 KiB + 22 bytes; its zip64 record if it has one).
    None when there is none: zipfile then says what is wrong."""
    f.seek(0, 2)
    size = f.tell()
    span = min(size, 56 + 20 + 22 + 0xFFFF)
    f.seek(size - span)
    tail = f.read(span)
    at = tail.rfind(_EOCD, max(0, span - 22 - 0xFFFF))
    if at < 0 or len(tail) - at < 22:
        return None
    declared = int.from_bytes(tail[at + 12 : at + 16], "little")
    if at >= 56 + 20 and tail[at - 20 : at - 16] == _ZIP64_LOCATOR:
        record = tail[at - 20 - 56 : at - 20]
        if record[:4] == _ZIP64_EOCD:
            declared = int.from_bytes(record[40:48], "little")
    return declared


class _BlobFile:
    """A blob opened for zipfile: an error reading the disk is a BlobError (the gateway's), so
    that any OSError zipfile raises otherwise is about the zip's contents (bz2's 'Invalid data
    stream') and the client's."""

    def __init__(self, f: Any, name: str) -> None:
        self._f, self.name = f, name

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._f.read(n)
        except OSError as exc:
            raise BlobError(f"cannot read attachment {self.name}: {exc.strerror or exc}") from exc
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return int(self._f.seek(offset, whence))
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # before the start: a zip too short for what it says
                raise  # (zipfile looks for a zip64 record 20 bytes before a 22-byte empty zip)
            raise BlobError(f"cannot read attachment {self.name}: {exc.strerror or exc}") from exc

    def tell(self) -> int:
        return int(self._f.tell())

    def seekable(self) -> bool:
        return True


# The methods whose members zipfile inflates a bounded piece at a time. It inflates a bzip2 or
# LZMA member whole on its first read, whatever size it declares: a 1 KB zip holding 1 GiB of
# zeros took 2 GB to read its first KiB. Every zip tool writes deflate unless told otherwise.
_READ_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}

# What zipfile (and the decompressors under it) raise for a zip it cannot read: a broken
# structure, an encrypted member (RuntimeError), data that does not inflate (zlib.error).
_UNREADABLE_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    OSError,
    ValueError,
)


class _Disagree(Exception):
    """The zip's local headers and its central directory disagree (the reason)."""


class _Overinflated(Exception):
    """Finding where the zip's members end would inflate more than MAX_ZIP_INFLATE bytes."""


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    """``(inflated, compressed)`` from a local header's zip64 extra field, if it has one."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA and size >= 16:
            inflated, compressed = struct.unpack_from("<QQ", extra, at + 4)
            return inflated, compressed
        at += 4 + size
    return None


def _descriptor(f: Any, at: int, info: zipfile.ZipInfo, zip64: bool) -> int:
    """The length of the data descriptor at ``at`` (after a member's data), as a streaming reader
    reads it: signed or not, its CRC and sizes the directory's. Raises _Disagree."""
    f.seek(at)
    raw = f.read(24)
    signed = raw[:4] == _DESCRIPTOR
    body = raw[4:] if signed else raw
    width = 8 if zip64 else 4
    if len(body) >= 4 + 2 * width:
        crc = int.from_bytes(body[:4], "little")
        compressed = int.from_bytes(body[4 : 4 + width], "little")
        inflated = int.from_bytes(body[4 + width : 4 + 2 * width], "little")
        if (crc, compressed, inflated) == (info.CRC, info.compress_size, info.file_size):
            return (4 if signed else 0) + 4 + 2 * width
    raise _Disagree(f"{info.filename}: no data descriptor where its data ends")


def _inflate_to_end(f: Any, start: int, info: zipfile.ZipInfo, room: int) -> int:
    """Inflate the deflated data of ``info`` at ``start``: it must end exactly after the
    directory's compressed size, as the directory's size and CRC. Returns the bytes inflated;
    raises _Disagree, _Overinflated past ``room`` bytes."""
    f.seek(start)
    inflater = zlib.decompressobj(-15)
    left, size, crc = info.compress_size, 0, 0
    while left and not inflater.eof:
        data = f.read(min(left, _INFLATE_CHUNK))
        if not data:
            break
        left -= len(data)
        while data and not inflater.eof:
            piece = inflater.decompress(data, _INFLATE_CHUNK)
            size += len(piece)
            if size > room:
                raise _Overinflated
            crc = zlib.crc32(piece, crc)
            data = inflater.unconsumed_tail
    if not inflater.eof:
        raise _Disagree(
            f"{info.filename}: its deflated data does not end within the "
            f"{info.compress_size} bytes its directory gives it"
        )
    if left or inflater.unused_data:
        raise _Disagree(
            f"{info.filename}: its deflated data ends before the {info.compress_size} bytes "
            "its directory gives it"
        )
    if (size, crc) != (info.file_size, info.CRC):
        raise _Disagree(f"{info.filename}: it inflates to other data than its directory says")
    return size


def _check_layout(f: Any, zf: zipfile.ZipFile, room: int) -> int:
    """Check that the zip in ``f`` is, read from its start as streaming readers read it, the
    members its directory (``zf``) lists, one after the other from byte 0 to the directory, each
    local header saying what its directory entry says. Returns the bytes inflated to find where
    data ends (see _inflate_to_end). Raises _Disagree, _Overinflated (past ``room``)."""
    at = inflated = 0
    for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
        if info.header_offset < at:
            raise _Disagree(f"{info.filename} overlaps the member before it")
        if info.header_offset > at:
            where = "" if at == 0 else " between members"
            raise _Disagree(
                f"bytes {at} to {info.header_offset}{where} are no member its directory lists"
            )
        f.seek(at)
        fixed = f.read(_LOCAL.size)
        if len(fixed) < _LOCAL.size or fixed[:4] != _LOCAL_HEADER:
            raise _Disagree(f"{info.filename}: no local header where its directory says")
        _, _, flags, method, _, _, crc, compressed, size, name_len, extra_len = _LOCAL.unpack(fixed)
        name = f.read(name_len)
        extra = f.read(extra_len)
        listed = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if name != listed:
            local = name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
            raise _Disagree(f"{info.filename}: its local header names {local!r}")
        # Bit 0: encrypted; bit 3: sizes in a data descriptor after the data.
        if method != info.compress_type or (flags ^ info.flag_bits) & 0x09:
            raise _Disagree(
                f"{info.filename}: its local header says another compression or encryption"
            )
        zip64 = _zip64_sizes(extra)
        start = at + _LOCAL.size + name_len + extra_len
        at = start + info.compress_size
        if flags & 0x08:
            if method == zipfile.ZIP_DEFLATED and not flags & 0x01:  # encrypted: refused below
                inflated += _inflate_to_end(f, start, info, room - inflated)
            at += _descriptor(f, at, info, zip64 is not None)
            continue
        if 0xFFFFFFFF in (compressed, size) and zip64 is not None:
            size, compressed = zip64
        if (crc, compressed, size) != (info.CRC, info.compress_size, info.file_size):
            raise _Disagree(
                f"{info.filename}: its local header says {compressed} bytes ({size} inflated), "
                f"its directory {info.compress_size} ({info.file_size})"
            )
    if at < zf.start_dir:
        raise _Disagree(
            f"bytes {at} to {zf.start_dir}, before its directory, are no member it lists"
        )
    if at > zf.start_dir:
        raise _Disagree("its last member runs into its directory")
    return inflated


def pdf_sources(
    pkg: Package,
    blobs: BlobStore,
    max_pdf_bytes: int = DEFAULT_MAX_PDF,
    *,
    max_total: int = DEFAULT_MAX_PDF_TOTAL,
    max_pdfs: int = DEFAULT_MAX_PDFS,
) -> Iterator[tuple[str, bytes, AttachmentInfo]]:
    """``(label, pdf bytes, attachment)`` for each PDF attached, directly or inside a zip (the
    attachment is then the zip), one at a time: check each before asking for the next, so that
    one PDF at most is in memory.

    Synchronous (run each step in a thread). Raises PayloadTooLarge for a PDF over
    ``max_pdf_bytes``, for PDFs together over ``max_total`` bytes (what a zip inflates to is
    counted as it is read: its headers may lie) or for more than ``max_pdfs`` PDFs;
    InvalidEdxml for a broken zip; BlobError.
    """
    count = 0
    total = 0
    inflated = 0  # by _check_layout, all the package's zips together

    def take(label: str, size: int) -> int:
        """Count one more PDF of (at least) ``size`` bytes; how many bytes it may have."""
        nonlocal count
        count += 1
        if count > max_pdfs:
            raise PayloadTooLarge(
                f"more than {max_pdfs} PDFs in the package: their signatures cannot all be checked",
                max_pdfs=max_pdfs,
            )
        room = min(max_pdf_bytes, max_total - total)
        if size > room:
            over(label, size)
        return room

    def over(label: str, size: int) -> None:
        if size > max_pdf_bytes:
            raise PayloadTooLarge(
                f"PDF {label} is over {max_pdf_bytes} bytes: its signature cannot be checked",
                max_bytes=max_pdf_bytes,
            )
        raise PayloadTooLarge(
            f"the PDFs of the package (unzipped) are over {max_total} bytes together: "
            "their signatures cannot all be checked",
            max_bytes=max_total,
        )

    for a in pkg.attachments:
        # A zip is read as one (its members checked below), even when a stored PDF member puts
        # "%PDF-" in its first KiB; anything else that is a PDF by its content is one.
        named_pdf = is_pdf(a.name, a.content_type)
        head = b"" if named_pdf or a.size == 0 else _head(blobs, a)
        zipped = _is_zip(a.name, a.content_type, head)
        if named_pdf or (
            not zipped and (looks_like_pdf(head) or pdf_body_in(_blob_pieces(blobs, a)))
        ):
            take(a.name, a.size)
            total += a.size
            yield a.name, blobs.read(a.sha256), a
        elif zipped:
            try:
                with blobs.open(a.sha256) as raw:
                    f = _BlobFile(raw, a.name)
                    directory = _zip_directory_size(f)
                    if directory is not None and directory > MAX_ZIP_DIRECTORY:
                        raise PayloadTooLarge(
                            f"attachment {a.name}: its zip directory is over {MAX_ZIP_DIRECTORY} "
                            "bytes (too many files to list)",
                            max_bytes=MAX_ZIP_DIRECTORY,
                        )
                    with zipfile.ZipFile(f) as zf:
                        try:
                            inflated += _check_layout(f, zf, MAX_ZIP_INFLATE - inflated)
                        except _Disagree as exc:
                            raise InvalidEdxml(
                                f"attachment {a.name}: its local headers and its directory "
                                f"disagree ({exc}): a reader that unpacks it entry by entry "
                                "would find other files than the hub checked",
                                attachment=a.name,
                            ) from None
                        except _Overinflated:
                            raise PayloadTooLarge(
                                f"attachment {a.name}: its members written with a data "
                                f"descriptor inflate to over {MAX_ZIP_INFLATE} bytes (the "
                                "package's zips together): where their data ends cannot be "
                                "checked",
                                attachment=a.name,
                                max_bytes=MAX_ZIP_INFLATE,
                            ) from None
                        for info in zf.infolist():
                            lower = info.filename.lower()
                            if info.is_dir():
                                continue
                            if lower.endswith(".zip"):
                                raise InvalidEdxml(
                                    f"attachment {a.name} holds a zip ({info.filename}): zips "
                                    "inside zips are refused, attach the inner files directly",
                                    attachment=a.name,
                                )
                            label = f"{a.name}/{info.filename}"
                            if info.flag_bits & 0x1:
                                raise InvalidEdxml(
                                    f"attachment {label} is encrypted: whether it is a PDF, and "
                                    "its signature, cannot be checked",
                                    attachment=label,
                                )
                            if info.compress_type not in _READ_METHODS:
                                method = _METHOD_NAMES.get(info.compress_type)
                                raise InvalidEdxml(
                                    f"attachment {label} is compressed with "
                                    f"{method or f'method {info.compress_type}'}: only stored "
                                    "or deflated members are read (zip it with deflate)",
                                    attachment=label,
                                )
                            if not lower.endswith(".pdf"):
                                try:
                                    found, read = _member_is_pdf(
                                        zf, info, MAX_ZIP_INFLATE - inflated
                                    )
                                except _Overinflated:
                                    raise PayloadTooLarge(
                                        f"attachment {a.name}: its members inflate to over "
                                        f"{MAX_ZIP_INFLATE} bytes (the package's zips "
                                        "together): whether each is a PDF cannot be checked",
                                        attachment=a.name,
                                        max_bytes=MAX_ZIP_INFLATE,
                                    ) from None
                                inflated += read
                                if not found:
                                    continue
                            with zf.open(info) as member:
                                room = take(label, info.file_size)
                                # Read one byte past the room: the header's size may lie (zip bomb).
                                data = member.read(room + 1)
                            if len(data) > room:
                                over(label, len(data))
                            total += len(data)
                            yield label, data, a
                            del data
            except _UNREADABLE_ZIP as exc:
                raise InvalidEdxml(
                    f"attachment {a.name} is not a readable zip: {exc}", attachment=a.name
                ) from exc


async def verify_pdf_source(
    label: str,
    data: bytes,
    trust: Any,
    signer_ok: Callable[[x509.Certificate], bool] | None = None,
) -> dict[str, Any]:
    """Verify every signature of one PDF; all must be valid and trusted, and with ``signer_ok``
    one at least by a certificate it accepts.

    At most MAX_CONCURRENT_PDF_CHECKS run at once; the others wait.

    Returns its report dict. Raises SignatureInvalid naming the attachment, PayloadTooLarge for
    a PDF refused unchecked as costlier to verify than any genuine one (too many signatures,
    form fields, objects in object streams: ``signing.pdf_limits``), ForgedSender when no
    signature is by a signer ``signer_ok`` accepts.
    """
    from signing.errors import DocumentTooComplex
    from signing.errors import SignatureInvalid as SigningInvalid
    from signing.pdf import verify_pdf

    try:
        async with _pdf_check_slot():  # held until the check's thread is done, cancelled or not
            found = await to_its_end(verify_pdf(data, trust))
    except DocumentTooComplex as exc:
        raise PayloadTooLarge(
            f"attachment {label}: {exc.reason}: its signatures cannot be checked",
            attachment=label,
        ) from exc
    except SigningInvalid as exc:
        raise SignatureInvalid(f"attachment {label}: {exc.reason}", attachment=label) from exc
    bad = [r for r in found if not r.valid]
    if bad:
        raise SignatureInvalid(
            f"attachment {label}: {bad[0].reason or 'invalid signature'}", attachment=label
        )
    if signer_ok is not None and not any(
        r.certificate is not None and signer_ok(r.certificate) for r in found
    ):
        raise ForgedSender(
            f"attachment {label} is signed by {', '.join(r.signer for r in found)}, "
            "not by the agency that sends it",
            attachment=label,
        )
    return {"attachment": label, "signatures": [r.as_dict() for r in found]}


async def verify_pdfs(
    sources: Iterator[tuple[str, bytes, AttachmentInfo]],
    trust: Any,
    signer_ok: SignerOk | None = None,
) -> list[dict[str, Any]]:
    """Verify the PDFs ``sources`` yields (``pdf_sources``), each before the next is read (in a
    thread); with ``signer_ok``, one of each PDF's signatures at least must be by a certificate
    that ``signer_ok(attachment, certificate)`` accepts. Returns one report dict per PDF. Raises
    as ``pdf_sources``, SignatureInvalid and ForgedSender."""
    reports: list[dict[str, Any]] = []
    try:
        while True:
            item = await asyncio.to_thread(next, sources, None)
            if item is None:
                return reports
            label, data, attachment = item
            del item
            ok = None if signer_ok is None else functools.partial(signer_ok, attachment)
            reports.append(await verify_pdf_source(label, data, trust, ok))
            del data
    finally:
        close = getattr(sources, "close", None)
        if close is not None:
            await asyncio.to_thread(close)  # closes an open zip and its blob
