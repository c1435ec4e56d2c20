"""The hub's TraceHeader in forwarded copies, and the verifier's tolerance of exactly that."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.exchange import schema
from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import build_package
from gateway.exchange.edxml import read_package
from gateway.exchange.errors import SignatureInvalid
from gateway.exchange.model import VN_TZ, TraceHeader, TraceHeaderList
from gateway.exchange.stream import scan_file
from gateway.exchange.trace import forward_copy
from gateway.exchange.xmldsig import check_envelope, sign_bytes, sign_file
from signing.errors import SignatureInvalid as StrictInvalid
from signing.xml import verify_xml

from .factories import SAMPLES, TAY_NINH_STC, cong_van_header, trace_for

HUB = TraceHeader("000.00.00.G22", datetime(2020, 10, 30, 9, 16, tzinfo=VN_TZ))
HOP = TraceHeader("000.00.00.H41", datetime(2020, 10, 30, 9, 17, tzinfo=VN_TZ))


def _forward(path: Path, blobs: BlobStore, th: TraceHeader = HUB) -> Path:
    ref = forward_copy(scan_file(path, None), th, blobs)
    assert ref is not None
    return ref.path


def test_forwarded_copy_verifies_and_names_who_appended(
    tmp_path: Path, blobs: BlobStore, make_package: Callable[..., bytes]
) -> None:
    src = tmp_path / "p.xml"
    src.write_bytes(make_package())
    fwd = _forward(src, blobs)
    scan = scan_file(fwd, None)
    schema.validate(scan.root)
    assert [t.organ_id for t in read_package(scan.root).trace.trace_headers] == [
        TAY_NINH_STC,
        HUB.organ_id,
    ]
    sig, _ = check_envelope(scan)
    assert sig.appended_by == [HUB.organ_id]
    # Two hops: both TraceHeaders are accepted, in order.
    twice = _forward(fwd, blobs, HOP)
    assert check_envelope(scan_file(twice, None))[0].appended_by == [HUB.organ_id, HOP.organ_id]


async def test_strict_xmldsig_refuses_the_copy_so_the_original_is_kept(
    tmp_path: Path, blobs: BlobStore, make_package: Callable[..., bytes], trust: Any
) -> None:
    src = tmp_path / "p.xml"
    src.write_bytes(make_package())
    with pytest.raises(StrictInvalid):
        await verify_xml(_forward(src, blobs).read_bytes(), trust)
    assert (await verify_xml(src.read_bytes(), trust)).report.valid


def test_sample_with_default_namespace_and_crlf(
    tmp_path: Path, blobs: BlobStore, key: Callable[[str], Any]
) -> None:
    signed = tmp_path / "s.xml"
    sign_file(SAMPLES / "cong-van-stc-tay-ninh.xml", signed, key(TAY_NINH_STC))
    fwd = _forward(signed, blobs)
    assert b"<TraceHeader><OrganId>000.00.00.G22</OrganId>" in fwd.read_bytes()  # no prefix there
    assert check_envelope(scan_file(fwd, None))[0].appended_by == [HUB.organ_id]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b"2020/10/30 09:15:00", b"2020/10/30 09:15:01", 1),  # the sender's own
        lambda d: d.replace(b"<edXML:BussinessDocType>0", b"<edXML:BussinessDocType>1"),
        lambda d: d.replace(
            b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>",
            b"<edXML:OrganId>000.00.00.G23</edXML:OrganId>",
        ).replace(
            b"</edXML:TraceHeader><edXML:Bussiness>",
            b"</edXML:TraceHeader><edXML:TraceHeader><edXML:OrganId>000.00.00.G15</edXML:OrganId></edXML:TraceHeader>"
            b"<edXML:Bussiness><edXML:Paper>1</edXML:Paper>",
        ),
    ],
)
def test_anything_but_appended_trace_headers_is_refused(
    tmp_path: Path,
    blobs: BlobStore,
    make_package: Callable[..., bytes],
    mutate: Callable[[bytes], bytes],
) -> None:
    src = tmp_path / "p.xml"
    src.write_bytes(make_package())
    data = _forward(src, blobs).read_bytes()
    changed = mutate(data)
    assert changed != data
    (tmp_path / "t.xml").write_bytes(changed)
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        check_envelope(scan_file(tmp_path / "t.xml", None))


def test_no_trace_header_list_no_copy(
    tmp_path: Path, blobs: BlobStore, key: Callable[[str], Any]
) -> None:
    header = cong_van_header()
    data = build_package(header, TraceHeaderList(), [])
    bare = data.replace(b"<edXML:TraceHeaderList/>", b"")
    for i, body in enumerate((data, bare)):
        p = tmp_path / f"{i}.xml"
        p.write_bytes(sign_bytes(body, key(TAY_NINH_STC)))
        assert forward_copy(scan_file(p, None), HUB, blobs) is None
    # An empty but open TraceHeaderList takes the first TraceHeader.
    opened = data.replace(
        b"<edXML:TraceHeaderList/>", b"<edXML:TraceHeaderList></edXML:TraceHeaderList>"
    )
    (tmp_path / "open.xml").write_bytes(opened)
    p = tmp_path / "open-signed.xml"
    sign_file(tmp_path / "open.xml", p, key(TAY_NINH_STC))  # keeps the bytes (lxml would not)
    fwd = _forward(p, blobs)
    assert check_envelope(scan_file(fwd, None))[0].appended_by == [HUB.organ_id]
    assert trace_for(header)  # the usual case is covered above
