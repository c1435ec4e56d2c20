"""The streaming scan: attachments decoded to blobs on the fly, the reduced envelope, refusals."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from gateway.exchange import schema
from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import FileAttachment, NewAttachment, build_package, write_package
from gateway.exchange.edxml import PROLOG_LIMIT, read_package
from gateway.exchange.errors import DoctypeForbidden, InvalidEdxml, PayloadTooLarge
from gateway.exchange.stream import CHUNK, MAX_DEPTH, scan_file

from .factories import SAMPLES, cong_van_header, trace_for


def _write(tmp_path: Path, data: bytes, name: str = "p.xml") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _blob_files(store: BlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


def test_attachments_go_to_blobs_with_their_digests(tmp_path: Path, blobs: BlobStore) -> None:
    header = cong_van_header()
    pdf = b"%PDF-1.7\n" + os.urandom(5000)
    data = build_package(
        header,
        trace_for(header),
        [NewAttachment("cv.pdf", pdf), NewAttachment("pl.xlsx", b"PK" * 300, "application/zip")],
    )
    scan = scan_file(_write(tmp_path, data), blobs)
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert scan.size == len(data)
    first, second = scan.attachments
    assert (first.name, first.size, first.sha256) == (
        "cv.pdf",
        len(pdf),
        hashlib.sha256(pdf).hexdigest(),
    )
    assert blobs.read(first.sha256) == pdf
    assert blobs.read(second.sha256) == b"PK" * 300
    # The reduced envelope holds placeholders, not the attachments, and is still valid edXML.
    schema.validate(scan.root)
    assert read_package(scan.root, scan.attachments).header == header
    assert len(scan.splices) == 2


def test_sample_shaped_like_service_crlf_mixed_prefixes_zipped(blobs: BlobStore) -> None:
    scan = scan_file(SAMPLES / "cong-van-stc-tay-ninh.xml", blobs)
    schema.validate(scan.root)
    pkg = read_package(scan.root, scan.attachments)
    assert pkg.header.promulgation_info is not None
    assert str(pkg.header.promulgation_info.promulgation_date) == "2020-10-30"  # from 30/10/2020
    (att,) = pkg.attachments
    assert att.content_type == "application/zip"
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(blobs.read(att.sha256))) as zf:
        assert zf.namelist() == ["BangTongHop_DuToan_2020.csv"]
        assert "Chi thường xuyên" in zf.read("BangTongHop_DuToan_2020.csv").decode()


def test_attachment_bigger_than_libxml2_text_limit(tmp_path: Path, blobs: BlobStore) -> None:
    # libxml2 refuses text nodes over 10 MB without huge_tree; the scan never builds one.
    big = tmp_path / "scan.tif"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    header = cong_van_header()
    pkg = tmp_path / "big.xml"
    with pkg.open("wb") as out:
        write_package(
            out, header, trace_for(header), [FileAttachment(big, "scan.tif", "image/tiff")]
        )
    scan = scan_file(pkg, blobs)
    (att,) = scan.attachments
    assert att.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert len(b"".join(p for _, chunks in scan.texts() for p in chunks)) > 16_000_000


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d.replace(b"JVBERi0", b"JV!ERi0"), InvalidEdxml, "base64"),
        (lambda d: d.replace(b"JVBERi0xLjcgeA==", b"JVBERi0xLjcgeA"), InvalidEdxml, "truncated"),
        (lambda d: d.replace(b"</edXML:edXML>", b""), InvalidEdxml, "well-formed"),
        (
            lambda d: d.replace(b"JVBERi0xLjcgeA==", b"<edXML:x>JVBE</edXML:x>"),
            InvalidEdxml,
            "text only",
        ),
        (
            lambda d: d.replace(b"?>", b'?><!-- x --><!DOCTYPE edXML [<!ENTITY a "b">]>', 1),
            DoctypeForbidden,
            "DOCTYPE",
        ),
    ],
)
def test_refusals_leave_no_blob(
    tmp_path: Path, blobs: BlobStore, mutate: object, error: type[Exception], match: str
) -> None:
    header = cong_van_header()
    data = build_package(
        header,
        trace_for(header),
        [NewAttachment("ok.pdf", b"%PDF-1.7 ok" * 10), NewAttachment("cv.pdf", b"%PDF-1.7 x")],
    )
    assert b"JVBERi0xLjcgeA==" in data
    with pytest.raises(error, match=match):
        scan_file(_write(tmp_path, mutate(data)), blobs)  # type: ignore[operator]
    # Nothing half-written: no temp file left; only whole, content-addressed blobs may exist.
    assert not list(blobs.tmp_dir.iterdir())


def test_a_prolog_too_long_to_check_is_refused(tmp_path: Path) -> None:
    comment = b"<!--" + b"x" * 70000 + b"-->"
    data = b'<?xml version="1.0"?>' + comment + b'<!DOCTYPE edXML [<!ENTITY a "b">]><edXML/>'
    with pytest.raises(InvalidEdxml, match="no root element"):
        scan_file(_write(tmp_path, data), None)


def test_expat_refuses_doctype_even_if_the_prolog_check_were_bypassed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: the parser's own DOCTYPE handler, with the byte check switched off.
    import gateway.exchange.stream as stream

    def not_reached(*_: object, **__: object) -> None:
        raise AssertionError("the expat pass let a DOCTYPE through")

    monkeypatch.setattr(stream, "check_prolog", lambda head: 0)
    monkeypatch.setattr(stream, "parse_bytes", not_reached)
    for doctype in (b'<!DOCTYPE edXML SYSTEM "x.dtd">', b'<!DOCTYPE edXML [<!ENTITY a "b">]>'):
        with pytest.raises(DoctypeForbidden):
            scan_file(_write(tmp_path, b'<?xml version="1.0"?>' + doctype + b"<edXML/>"), None)


def test_size_caps(tmp_path: Path, blobs: BlobStore) -> None:
    header = cong_van_header()
    data = build_package(header, trace_for(header), [NewAttachment("cv.pdf", b"x" * 1000)])
    path = _write(tmp_path, data)
    with pytest.raises(PayloadTooLarge) as info:
        scan_file(path, blobs, max_bytes=len(data) - 1)
    assert info.value.extra["max_bytes"] == len(data) - 1
    with pytest.raises(PayloadTooLarge, match="envelope"):
        scan_file(path, blobs, max_envelope=1000)
    assert scan_file(path, blobs, max_bytes=len(data)).size == len(data)


def test_character_reference_in_attachment_is_refused_for_the_digest(tmp_path: Path) -> None:
    header = cong_van_header()
    data = build_package(header, trace_for(header), [NewAttachment("cv.pdf", b"%PDF-1.7 x")])
    data = data.replace(b"JVBERi0xLjcgeA==", b"JVBERi0xLjcgeA&#61;=")
    scan = scan_file(_write(tmp_path, data), None)  # expat decodes it fine
    with pytest.raises(InvalidEdxml, match="plain base64"):
        for _, chunks in scan.texts():
            list(chunks)


def test_texts_replays_crlf_as_the_parser_sees_it(tmp_path: Path) -> None:
    raw = base64.encodebytes(os.urandom(300)).replace(b"\n", b"\r\n")
    header = cong_van_header()
    data = build_package(header, trace_for(header), [NewAttachment("a.bin", b"marker")])
    data = data.replace(base64.encodebytes(b"marker"), raw)
    scan = scan_file(_write(tmp_path, data), None)
    ((_, chunks),) = list(scan.texts())
    assert b"".join(chunks) == raw.replace(b"\r\n", b"\n")


def _nested(depth: int, *, closed: bool = True) -> bytes:
    """A package whose MessageHeader (itself 4 deep) holds foreign elements nested to ``depth``."""
    header = cong_van_header()
    data = build_package(header, trace_for(header), [])
    n = depth - 4
    inner = b'<x:a xmlns:x="urn:x">' + b"<x:a>" * (n - 1)
    if closed:
        inner += b"</x:a>" * n
    at = data.index(b"</edXML:MessageHeader>")
    return data[:at] + inner + (data[at:] if closed else b"")


def test_nesting_is_refused_past_max_depth_as_soon_as_it_is_seen(tmp_path: Path) -> None:
    assert scan_file(_write(tmp_path, _nested(MAX_DEPTH)), None).root is not None
    with pytest.raises(InvalidEdxml, match=f"nested more than {MAX_DEPTH} deep"):
        scan_file(_write(tmp_path, _nested(MAX_DEPTH + 1)), None)
    # Refused at the start tag that goes too deep, not after the rest was parsed: a file cut
    # right after it is refused for its depth, not as truncated XML.
    with pytest.raises(InvalidEdxml, match=f"nested more than {MAX_DEPTH} deep"):
        scan_file(_write(tmp_path, _nested(100_000, closed=False)), None)


def test_envelope_cap_is_applied_while_the_file_is_fed(tmp_path: Path) -> None:
    # A 3 MB attribute that never ends: refused for its size once 1 MB of it is fed, not read
    # to the end first (it would then be refused as truncated XML).
    header = cong_van_header()
    data = build_package(header, trace_for(header), [])
    at = data.index(b"<edXML:Subject>")
    cut = data[:at] + b'<x:a xmlns:x="urn:x" b="' + b"x" * (3 * CHUNK)
    with pytest.raises(PayloadTooLarge, match=f"over {CHUNK} bytes"):
        scan_file(_write(tmp_path, cut), None, max_envelope=CHUNK)


def test_envelope_cap_while_fed_counts_attachment_text_out_exactly(tmp_path: Path) -> None:
    # Attachments several times the cap, in CRLF lines, on both sides of a parser chunk: the
    # early count never refuses what the exact count accepts.
    header = cong_van_header()
    data = build_package(
        header,
        trace_for(header),
        [NewAttachment("a.bin", b"marker-a"), NewAttachment("b.bin", b"marker-b")],
    )
    for marker in (b"marker-a", b"marker-b"):
        raw = base64.encodebytes(os.urandom(2 * CHUNK)).replace(b"\n", b"\r\n")
        data = data.replace(base64.encodebytes(marker), raw)
    path = _write(tmp_path, data)
    scan = scan_file(path, None)
    envelope = scan.size - sum(s.end - s.start - len(s.placeholder) for s in scan.splices)
    assert envelope < CHUNK
    assert scan_file(path, None, max_envelope=envelope).size == len(data)
    with pytest.raises(PayloadTooLarge, match="envelope"):
        scan_file(path, None, max_envelope=envelope - 1)


@pytest.mark.parametrize("boundary", [False, True])
def test_data_after_base64_padding_is_refused_even_across_a_parser_flush(
    tmp_path: Path, boundary: bool
) -> None:
    # "QQ==" then more base64: a recipient's decoder stops at the padding ("A"), the hub would
    # store "A" + "SECOND PART". With the padding ending exactly where the first parser call
    # ends (PROLOG_LIMIT bytes), the text reaches the decoder in two pieces.
    header = cong_van_header()
    data = build_package(header, trace_for(header), [NewAttachment("a.bin", b"marker")])
    enc = base64.b64encode(b"marker")
    at = data.index(enc)
    blank = b"\n" * (PROLOG_LIMIT - at - 4 if boundary else 10)
    data = data[:at] + blank + b"QQ==" + base64.b64encode(b"SECOND PART") + data[at + len(enc) :]
    assert (data[PROLOG_LIMIT - 4 : PROLOG_LIMIT] == b"QQ==") is boundary
    with pytest.raises(InvalidEdxml, match="not valid base64"):
        scan_file(_write(tmp_path, data), None)
