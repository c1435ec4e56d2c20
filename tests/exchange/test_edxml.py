"""Safe parsing, the typed model, dates, the builder and the XSD."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from lxml import etree

from gateway.exchange import schema
from gateway.exchange.builder import NewAttachment, append_trace_header, build_package, build_status
from gateway.exchange.edxml import check_prolog, parse_bytes, q, read_package, read_status
from gateway.exchange.errors import DoctypeForbidden, InvalidEdxml, PayloadTooLarge, SchemaInvalid
from gateway.exchange.model import (
    VN_TZ,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    format_timestamp,
    parse_date,
    parse_timestamp,
)

from .factories import NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for


def _package(**kw: object) -> bytes:
    header = cong_van_header()
    return build_package(header, trace_for(header), [NewAttachment("cv.pdf", b"%PDF-1.7 x")])


# -- prolog -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY x "y">]><edXML/>',
        b"<!DOCTYPE edXML SYSTEM 'http://evil/x.dtd'><edXML/>",
        b'<?xml version="1.0"?>\n<!-- c --><!ENTITY x "y"><edXML/>',
        b'\xef\xbb\xbf<?xml version="1.0"?><!doctype edXML><edXML/>',
    ],
)
def test_prolog_refuses_doctype_and_entities(head: bytes) -> None:
    with pytest.raises(DoctypeForbidden) as info:
        check_prolog(head)
    assert info.value.slug == "doctype-forbidden"


def test_prolog_allows_declaration_comments_and_pis() -> None:
    head = (
        b'\xef\xbb\xbf<?xml version="1.0"?>\r\n<!-- <!DOCTYPE in a comment> -->\n<?pi x?><edXML/>'
    )
    assert head[check_prolog(head) :].startswith(b"<edXML")


@pytest.mark.parametrize(
    "head", [b"\xff\xfe<\x00e\x00", b"junk<edXML/>", b"<?xml version='1.0'?>", b""]
)
def test_prolog_refuses_non_xml(head: bytes) -> None:
    with pytest.raises(InvalidEdxml):
        check_prolog(head)


def test_parse_bytes_refuses_doctype_size_and_junk() -> None:
    with pytest.raises(DoctypeForbidden):
        parse_bytes(b'<!DOCTYPE a [<!ENTITY b SYSTEM "file:///etc/passwd">]><a>&b;</a>')
    with pytest.raises(PayloadTooLarge) as info:
        parse_bytes(_package(), max_bytes=100)
    assert info.value.status == 413
    with pytest.raises(InvalidEdxml, match="well-formed"):
        parse_bytes(b"<edXML xmlns='x'><a></edXML>")
    with pytest.raises(InvalidEdxml, match="root element"):
        parse_bytes(b"<html/>")


_SUBJECT = "V/v báo cáo tình hình thực hiện dự toán".encode()


@pytest.mark.parametrize(
    "insert",
    [b"<!---->", b"<!-- ghi chu -->", b"<?x y?>", b"<?pi?>"],
)
def test_a_comment_or_pi_inside_an_element_text_is_refused(insert: bytes) -> None:
    # Readers that take an element's first text node would read "V/v " (see
    # _refuse_split_text); comments are not even covered by the envelope signature.
    data = _package()
    assert data.count(_SUBJECT) == 1
    split = data.replace(_SUBJECT, _SUBJECT[:4] + insert + _SUBJECT[4:])
    with pytest.raises(InvalidEdxml, match="inside the text of Subject") as refused:
        parse_bytes(split)
    assert refused.value.extra == {"field": "Subject"}


@pytest.mark.parametrize(
    "change",
    [
        (b"<edXML:Subject>", b"\n  <!-- ghi chu -->\n  <?x y?><edXML:Subject>"),  # between elements
        (b"<edXML:edXMLEnvelope>", b"<!-- c --><edXML:edXMLEnvelope>"),
        (_SUBJECT, _SUBJECT[:4] + b"<![CDATA[" + _SUBJECT[4:] + b"]]>"),  # one text, as c14n
    ],
)
def test_a_comment_or_pi_between_elements_is_accepted(change: tuple[bytes, bytes]) -> None:
    data = _package()
    assert data.count(change[0]) == 1
    root = parse_bytes(data.replace(*change))
    assert read_package(root).header.subject.startswith("V/v báo cáo tình hình thực hiện dự toán")


# -- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020/10/30", date(2020, 10, 30)),
        ("30/10/2020", date(2020, 10, 30)),
        ("2020/1/5", date(2020, 1, 5)),
    ],
)
def test_both_date_forms(text: str, expected: date) -> None:
    assert parse_date(text) == expected


def test_timestamps_are_vietnam_time_and_emitted_in_the_standard_form() -> None:
    ts = parse_timestamp("30/10/2020 09:15:02")
    assert ts == datetime(2020, 10, 30, 9, 15, 2, tzinfo=VN_TZ)
    assert format_timestamp(ts) == "2020/10/30 09:15:02"


@pytest.mark.parametrize("text", ["2020-10-30", "31/02/2020", "30/10/20", "", "2020/10/30T09:00"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(InvalidEdxml):
        parse_date(text)


# -- model round trip --------------------------------------------------------------------------


def test_package_round_trip() -> None:
    header = cong_van_header(to=(NGHE_AN, "000.00.00.G15"))
    trace = trace_for(header, doc_type=2)
    root = parse_bytes(build_package(header, trace, []))
    schema.validate(root)
    pkg = read_package(root)
    assert pkg.header == header
    assert pkg.trace == trace
    assert pkg.doc_type == 2
    # The wire spelling is kept.
    assert root.find(f".//{q('Bussiness')}") is not None


def test_status_round_trip() -> None:
    msg = StatusMessage(
        from_=Organization(NGHE_AN, "UBND tỉnh Nghệ An"),
        response_for=ResponseFor(
            TAY_NINH_STC, "2491/STC-BCTC", date(2020, 10, 30), "X,2020/10/30,1/A"
        ),
        status_code="05",
        timestamp=datetime(2020, 10, 31, 8, 0, tzinfo=VN_TZ),
        description="Đang xử lý",
        staff_info=StaffInfo("Văn phòng", "Lê Văn Minh"),
    )
    root = parse_bytes(build_status(msg))
    schema.validate(root)
    assert read_status(root) == msg


def test_append_trace_header_goes_after_the_others_before_bussiness() -> None:
    root = parse_bytes(_package())
    append_trace_header(
        root, TraceHeader("000.00.00.G22", datetime(2020, 10, 30, 9, 20, tzinfo=VN_TZ))
    )
    schema.validate(root)
    tl = root.find(f".//{q('TraceHeaderList')}")
    assert [etree.QName(c).localname for c in tl] == ["TraceHeader", "TraceHeader", "Bussiness"]
    assert read_package(root).trace.trace_headers[-1].organ_id == "000.00.00.G22"


def test_missing_required_parts() -> None:
    root = parse_bytes(_package())
    root.find(f".//{q('DocumentId')}").text = " "
    with pytest.raises(InvalidEdxml, match="DocumentId"):
        read_package(root)


# -- XSD: strict where implementations agree, lenient where they differ ------------------------


def _mutate(xpath_local: str, text: str) -> etree._Element:
    root = parse_bytes(_package())
    el = root.find(f".//{q(xpath_local)}")
    el.text = text
    return root


@pytest.mark.parametrize(
    ("local", "text"),
    [
        ("OrganId", "000.00.11.h53"),  # lower-case level-1 letter
        ("OrganId", "00.00.11.H53"),
        ("PromulgationDate", "2020-10-30"),
        ("BussinessDocType", "4"),
        ("Priority", "7"),
    ],
)
def test_schema_refuses(local: str, text: str) -> None:
    with pytest.raises(SchemaInvalid) as info:
        schema.validate(_mutate(local, text))
    assert info.value.slug == "invalid-edxml"
    assert info.value.extra["errors"]


def test_schema_refuses_message_header_out_of_order() -> None:
    root = parse_bytes(_package())
    mh = root.find(f".//{q('MessageHeader')}")
    subject = mh.find(q("Subject"))
    mh.remove(subject)
    mh.insert(0, subject)
    with pytest.raises(SchemaInvalid):
        schema.validate(root)


def test_schema_refuses_unknown_status_code() -> None:
    msg = StatusMessage(
        Organization(NGHE_AN),
        ResponseFor(TAY_NINH_STC, "", None, "D"),
        "17",
        datetime(2020, 10, 31, tzinfo=VN_TZ),
    )
    with pytest.raises(SchemaInvalid):
        schema.validate(parse_bytes(build_status(msg)))


def test_schema_is_lenient_on_record_order_and_business_spelling() -> None:
    root = parse_bytes(_package())
    frm = root.find(f".//{q('From')}")
    organ_id = frm.find(q("OrganId"))
    frm.remove(organ_id)
    frm.append(organ_id)  # OrganId last: seen in service
    b = root.find(f".//{q('Bussiness')}")
    b.tag = q("Business")
    root.find(f".//{q('PromulgationDate')}").text = "30/10/2020"
    schema.validate(root)
    assert read_package(root).trace.business is not None


def _business(package: bytes, *renames: tuple[str, str]) -> etree._Element:
    root = parse_bytes(package)
    for old, new in renames:
        root.find(f".//{q(old)}").tag = q(new)
    return root


def test_a_system_that_corrects_the_spelling_throughout_is_read_alike() -> None:
    """Found by probing: the reader took Business/BusinessDocType, but the XSD, which runs
    first, refused it: a system that spells it right throughout got 400. The spec: the wire
    spells Bussiness; accept Business too."""
    revoke = build_package(cong_van_header(), trace_for(cong_van_header(), 1), [])
    wire = read_package(parse_bytes(revoke)).trace.business
    root = _business(
        revoke,
        ("Bussiness", "Business"),
        ("BussinessDocType", "BusinessDocType"),
    )
    schema.validate(root)
    assert wire is not None and wire.doc_type == 1
    assert read_package(root).trace.business == wire


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("drop", "Bussiness has no BussinessDocType"),
        ("both", "BussinessDocType is given twice (as BusinessDocType too)"),
    ],
)
def test_a_business_block_says_its_doc_type_once(change: str, says: str) -> None:
    """With either spelling allowed, neither is required by the XSD: a block without one was
    read as 0, a new document, and a revoke became one; one with both, either."""
    root = parse_bytes(build_package(cong_van_header(), trace_for(cong_van_header(), 1), []))
    typed = root.find(f".//{q('BussinessDocType')}")
    if change == "drop":
        typed.getparent().remove(typed)
    else:
        etree.SubElement(typed.getparent(), q("BusinessDocType")).text = "0"
    schema.validate(root)
    with pytest.raises(InvalidEdxml, match=re.escape(says)):
        read_package(root)
