"""Zip attachments are read as zipfile reads them (the central directory) and as streaming readers
do (java.util.zip.ZipInputStream: one local header after another): a zip on which the two
disagree hid an unsigned PDF from the hub and handed it to recipients. And a zip is known by its
content (``PK\\x03\\x04``), as a PDF by ``%PDF-``, whatever it is called."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.exchange import attachments
from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.check import check_package
from gateway.exchange.errors import InvalidEdxml, PayloadTooLarge, SignatureInvalid
from gateway.exchange.xmldsig import sign_bytes
from signing.testing import TestPKI, sample_pdf
from tests.e2e.test_documents import PROBLEM, Hub, running_hub

from .factories import AGENCIES, NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for

UNSIGNED = sample_pdf("Cong van khong ky")
README = "xem tệp đính kèm\n".encode() * 3


@dataclass(frozen=True)
class _E:
    """One member as written: its local header, its data (deflated ``content`` unless ``data``
    is given), and with flag 8 a data descriptor after it."""

    name: bytes
    content: bytes
    flags: int = 0
    method: int = zipfile.ZIP_DEFLATED
    data: bytes | None = None
    local: bytes | None = None  # the content the local header describes, if not ``content``


def _deflated(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _local(e: _E, data: bytes) -> bytes:
    crc, usize, csize = zlib.crc32(e.content), len(e.content), len(data)
    if e.local is not None:  # stored
        crc, usize, csize = zlib.crc32(e.local), len(e.local), len(e.local)
    sizes = (0, 0, 0) if e.flags & 8 else (crc, csize, usize)
    fixed = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, e.flags, e.method, 0, 0x21, *sizes,
                        len(e.name), 0)  # fmt: skip
    return fixed + e.name


def _zip_of(*items: _E | bytes, hide: bytes = b"", twice: bytes = b"") -> bytes:
    """A zip of ``items`` (members, or raw bytes put between them as they are); its directory
    lists every member but ``hide``, and ``twice`` twice."""
    out, central, count = bytearray(), bytearray(), 0
    for e in items:
        if isinstance(e, bytes):
            out += e
            continue
        data = e.data if e.data is not None else (
            _deflated(e.content) if e.method == zipfile.ZIP_DEFLATED else e.content
        )  # fmt: skip
        crc, usize = zlib.crc32(e.content), len(e.content)
        offset = len(out)
        out += _local(e, data) + data
        if e.flags & 8:
            out += struct.pack("<4s3I", b"PK\x07\x08", crc, len(data), usize)
        if e.name != hide:
            record = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, e.flags, e.method, 0,
                                 0x21, crc, len(data), usize, len(e.name), 0, 0, 0, 0, 0,
                                 offset) + e.name  # fmt: skip
            times = 2 if e.name == twice else 1
            central += record * times
            count += times
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + end)


def _hidden_member() -> bytes:
    """The probe's zip: the local headers carry cong-van.pdf and readme.txt, the directory lists
    readme.txt alone."""
    return _zip_of(_E(b"cong-van.pdf", UNSIGNED), _E(b"readme.txt", README), hide=b"cong-van.pdf")


def _ends_early() -> bytes:
    """readme.txt's deflated data (written with a data descriptor) ends before the size the
    directory gives it; the rest holds a descriptor and a whole local entry, cong-van.pdf. A
    streaming reader inflates readme.txt to its end, reads that descriptor, then the PDF."""
    first = _deflated(README)
    inner = struct.pack("<4s3I", b"PK\x07\x08", zlib.crc32(README), len(first), len(README))
    pdf = _E(b"cong-van.pdf", UNSIGNED)
    hidden = _local(pdf, _deflated(UNSIGNED)) + _deflated(UNSIGNED)
    return _zip_of(_E(b"readme.txt", README, flags=8, data=first + inner + hidden))


def _local_size_differs() -> bytes:
    """readme.txt stored: its local header gives it its own size, the directory a size that
    takes in a whole local entry after it (a streaming reader reads the local header's)."""
    pdf = _E(b"cong-van.pdf", UNSIGNED)
    hidden = _local(pdf, _deflated(UNSIGNED)) + _deflated(UNSIGNED)
    return _zip_of(_E(b"readme.txt", README + hidden, method=zipfile.ZIP_STORED, local=README))


def _gap() -> bytes:
    return _zip_of(_E(b"readme.txt", README), b"\0" * 40, _E(b"phu-luc.txt", README))


def _lead() -> bytes:
    return _zip_of(b"MZ" + b"\0" * 62, _E(b"readme.txt", README))


def _before_directory() -> bytes:
    return _zip_of(_E(b"readme.txt", README), b"\0" * 40)


def _listed_twice() -> bytes:
    return _zip_of(_E(b"readme.txt", README), _E(b"phu-luc.txt", README), twice=b"readme.txt")


def _local_name_differs() -> bytes:
    """The directory lists a folder (never opened) where the local header names a file."""
    z = _zip_of(_E(b"cong-van.pdf", UNSIGNED))
    at = z.rfind(b"PK\x01\x02")
    return z[:at] + z[at:].replace(b"cong-van.pdf", b"thu-muc-abc/")


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _signed(pki: TestPKI, number: str, *attached: NewAttachment) -> bytes:
    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), number)
    return sign_bytes(
        build_package(header, trace_for(header), list(attached)),
        pki.key(f"agency-{TAY_NINH_STC}"),
    )


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_hidden_member, "bytes 0 to "),
        (_ends_early, "readme.txt: its deflated data ends before"),
        (_local_size_differs, "readme.txt: its local header says"),
        (_gap, "between members are no member"),
        (_lead, "bytes 0 to 64 are no member"),
        (_before_directory, "before its directory"),
        (_listed_twice, "readme.txt overlaps"),
        (_local_name_differs, "thu-muc-abc/: its local header names 'cong-van.pdf'"),
    ],
)
async def test_a_zip_whose_local_entries_and_directory_disagree_is_refused(
    hub: Hub, pki: TestPKI, make: Callable[[], bytes], says: str
) -> None:
    zipped = make()
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:  # what zipfile reads: no PDF
        assert [i.filename for i in zf.infolist() if i.filename.endswith(".pdf")] == []
    data = _signed(pki, "2601", NewAttachment("ho-so.zip", zipped, "application/zip"))
    before = await hub.store_counts()
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 400, await r.text()
        body = await r.json(content_type=None)
    assert body["type"] == PROBLEM + "invalid-edxml", body
    assert "its local headers and its directory disagree" in body["detail"], body
    assert says in body["detail"] and body["attachment"] == "ho-so.zip", body
    assert await hub.store_counts() == before


class _Pipe:
    """A file zipfile cannot seek in: it writes each member with a data descriptor (flag 8), as
    java.util.zip, macOS and many streaming writers do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)

    def flush(self) -> None:
        pass


def _streamed(members: list[tuple[str, bytes, int]]) -> bytes:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w") as zf:  # type: ignore[call-overload]
        for name, content, method in members:
            zf.writestr(name, content, compress_type=method)
    return bytes(pipe.data)


async def test_zips_as_writers_make_them_pass(hub: Hub, pki: TestPKI, signed_pdf: bytes) -> None:
    streamed = _streamed(
        [
            ("cong-van.pdf", signed_pdf, zipfile.ZIP_DEFLATED),
            ("thu-muc/", b"", zipfile.ZIP_STORED),
            ("ghi-chu.txt", README, zipfile.ZIP_STORED),
            ("bang-tong-hop.csv", README * 500, zipfile.ZIP_DEFLATED),
        ]
    )
    assert streamed[6] & 8  # flag 8: a data descriptor
    seekable = io.BytesIO()
    with zipfile.ZipFile(seekable, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cong-van.pdf", signed_pdf)
        zf.writestr(zipfile.ZipInfo("trong.txt"), b"")
        zf.mkdir("thu-muc")
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    data = _signed(
        pki,
        "2602",
        NewAttachment("streamed.zip", streamed, "application/zip"),
        NewAttachment("seekable.zip", seekable.getvalue(), "application/zip"),
        NewAttachment("empty.zip", empty.getvalue(), "application/zip"),
    )
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()


async def _check(tmp_path: Path, blobs: BlobStore, trust: Any, data: bytes) -> Any:
    path = tmp_path / "in.xml"
    path.write_bytes(data)
    return await check_package(
        path, blobs, sender=TAY_NINH_STC, known_agencies=AGENCIES, trust=trust
    )


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("ho-so.bin", "application/octet-stream"),
        ("bao-cao.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("ho-so", ""),
    ],
)
async def test_a_zip_is_known_by_its_content_whatever_it_is_called(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    key: Callable[[str], Any],
    signed_pdf: bytes,
    name: str,
    content_type: str,
) -> None:
    """A zip named ho-so.bin (or a .docx, which is a zip) was never opened: an unsigned PDF
    deflated in it reached recipients unchecked."""
    header = cong_van_header()

    def package(zipped: bytes) -> bytes:
        attached = [NewAttachment(name, zipped, content_type or "application/octet-stream")]
        return sign_bytes(build_package(header, trace_for(header), attached), key(TAY_NINH_STC))

    with pytest.raises(SignatureInvalid, match=rf"{name}/word/media/cong-van\.pdf"):
        await _check(
            tmp_path, blobs, trust, package(_zip_of(_E(b"word/media/cong-van.pdf", UNSIGNED)))
        )
    with pytest.raises(InvalidEdxml, match="its local headers and its directory disagree"):
        await _check(tmp_path, blobs, trust, package(_hidden_member()))
    checked = await _check(tmp_path, blobs, trust, package(_zip_of(_E(b"a.pdf", signed_pdf))))
    assert [r["attachment"] for r in checked.pdf_reports] == [f"{name}/a.pdf"]


async def test_inflating_members_to_find_their_end_is_bounded(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    key: Callable[[str], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member written with a data descriptor is inflated to find where its data ends (a zip
    bomb would take minutes), and again, as any member not named .pdf, to tell whether it is a
    PDF: at most MAX_ZIP_INFLATE bytes a package, then 413."""
    monkeypatch.setattr(attachments, "MAX_ZIP_INFLATE", 100_000)
    header = cong_van_header()

    def package(*members: tuple[str, bytes]) -> bytes:
        streamed = _streamed([(n, c, zipfile.ZIP_DEFLATED) for n, c in members])
        attached = [NewAttachment("ho-so.zip", streamed, "application/zip")]
        return sign_bytes(build_package(header, trace_for(header), attached), key(TAY_NINH_STC))

    await _check(tmp_path, blobs, trust, package(("a.csv", b"0" * 40_000)))
    for members in (
        [("a.csv", b"0" * 40_000), ("b.csv", b"0" * 40_000)],  # found while reading a.csv
        [("a.csv", b"0" * 60_000), ("b.csv", b"0" * 60_000)],  # while finding their ends
    ):
        with pytest.raises(PayloadTooLarge, match="over 100000 bytes") as info:
            await _check(tmp_path, blobs, trust, package(*members))
        assert info.value.extra["attachment"] == "ho-so.zip"
