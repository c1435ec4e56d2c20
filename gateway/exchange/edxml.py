"""Safe parsing of edXML and reading it into the typed model.

Untrusted XML never reaches lxml with a DOCTYPE: ``check_prolog`` looks at the bytes before the
root element and refuses any ``<!DOCTYPE``/``<!ENTITY`` (lxml's "hardened" ``resolve_entities=False``
would silently keep ``&x;`` unexpanded instead of failing). Sizes are capped before parsing.
Large packages go through ``gateway.exchange.stream`` instead, which calls the same checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.errors import DoctypeForbidden, InvalidEdxml, PayloadTooLarge
from gateway.exchange.model import (
    NS,
    AttachmentInfo,
    Business,
    Code,
    DocumentType,
    MessageHeader,
    Organization,
    OtherInfo,
    Package,
    PromulgationInfo,
    Receiver,
    Reference,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
    parse_date,
    parse_timestamp,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DS_NS",
    "check_prolog",
    "is_status_message",
    "parse_bytes",
    "q",
    "read_package",
    "read_status",
    "safe_parser",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
PROLOG_LIMIT = 64 * 1024
# The XML declaration's encoding pseudo-attribute (XML 1.0 §4.3.3: EncName is ASCII).
_ENCODING = re.compile(rb"""\sencoding\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def q(local: str) -> str:
    """Clark name of an edXML element."""
    return f"{{{NS}}}{local}"


def safe_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe and parsing runs on worker threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def check_prolog(head: bytes) -> int:
    """Offset of the root element's ``<`` in ``head`` (the first bytes of a document).

    Raises DoctypeForbidden for ``<!DOCTYPE``/``<!ENTITY`` (any ``<!`` that is not a comment) and
    InvalidEdxml for anything that is not UTF-8 XML starting within PROLOG_LIMIT bytes: edXML is
    UTF-8, so an XML declaration naming any other encoding is refused here, before a parser would
    look the name up among Python's codecs (``x-nope``, ``rot13`` or ``base64`` are no XML
    encodings; ``utf-32`` or ``shift_jis`` would make expat fail on a Python exception).
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x3c\x00")):
        raise InvalidEdxml("edXML must be encoded in UTF-8")
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    if head.startswith(b"<?xml", i) and head[i + 5 : i + 6] in (b" ", b"\t", b"\r", b"\n"):
        end = head.find(b"?>", i)
        declared = _ENCODING.search(head, i, end if end >= 0 else len(head))
        if declared is not None:
            name = (declared.group(1) or declared.group(2) or b"").decode("ascii", "replace")
            if name.strip().lower() != "utf-8":
                raise InvalidEdxml(
                    f"edXML must be encoded in UTF-8, not {name[:40]!r}", field="encoding"
                )
    n = len(head)
    while i < n:
        c = head[i]
        if c in b" \t\r\n":
            i += 1
        elif head.startswith(b"<?", i):
            end = head.find(b"?>", i)
            if end < 0:
                break
            i = end + 2
        elif head.startswith(b"<!--", i):
            end = head.find(b"-->", i + 4)
            if end < 0:
                break
            i = end + 3
        elif head.startswith(b"<!", i):
            raise DoctypeForbidden("DOCTYPE and entity declarations are refused")
        elif c == 0x3C:
            return i
        else:
            raise InvalidEdxml("content before the root element")
    if n >= PROLOG_LIMIT:
        raise InvalidEdxml(f"no root element in the first {PROLOG_LIMIT} bytes")
    raise InvalidEdxml("no root element")


def parse_bytes(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse a whole (small) edXML document. Raises PayloadTooLarge, DoctypeForbidden, InvalidEdxml
    (also for a comment or processing instruction inside an element's text).

    CPU-bound: call through ``asyncio.to_thread`` from the event loop.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{len(data)} bytes is over the {max_bytes} limit", max_bytes=max_bytes
        )
    check_prolog(data[:PROLOG_LIMIT])
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidEdxml(f"not well-formed XML: {exc.msg}") from exc
    # Belt and braces: the prolog check already refused these.
    if root.getroottree().docinfo.doctype:
        raise DoctypeForbidden("DOCTYPE is refused")
    if root.tag != q("edXML"):
        raise InvalidEdxml(f"the root element must be edXML:edXML, not {root.tag}")
    _refuse_split_text(root)
    return root


def _refuse_split_text(root: etree._Element) -> None:
    """Refuse a comment or processing instruction among an element's text. Raises InvalidEdxml.

    The envelope signature's ``URI=""`` reference leaves comments out (XMLDSig §4.3.3.3), so
    anyone who relays a signed package can write ``2102/STC<!---->-BCTC`` where the sender signed
    ``2102/STC-BCTC``, and the signature still verifies. A reader taking an element's first text
    node (lxml's ``.text``, as this hub did, and as many a recipient's software does) then reads
    ``2102/STC``: another document. A processing instruction is signed, but splits the text for
    such readers all the same. Reading the whole text here would fix the hub's reading only;
    refusing the package means nobody downstream is handed the ambiguity either. A comment or PI
    between elements (the text around it blank) is harmless and stays accepted.
    """
    for node in root.iter(etree.Comment, etree.ProcessingInstruction):
        parent = node.getparent()
        if parent is not None and "".join(parent.xpath("text()")).strip(" \t\r\n"):
            where = etree.QName(parent).localname
            raise InvalidEdxml(
                f"a comment or processing instruction inside the text of {where}: the signature "
                "does not cover comments, so readers could disagree on its value",
                field=where,
            )


# -- reading the model ------------------------------------------------------------------------


def _child(el: etree._Element | None, local: str) -> etree._Element | None:
    if el is None:
        return None
    return el.find(q(local))


def _children(el: etree._Element | None, local: str) -> Iterator[etree._Element]:
    if el is None:
        return iter(())
    return iter(el.findall(q(local)))


def _text(el: etree._Element | None, local: str) -> str:
    return _own_text(_child(el, local))


def _own_text(el: etree._Element | None) -> str:
    return "" if el is None or el.text is None else str(el.text).strip()


def _required(el: etree._Element | None, local: str, where: str) -> str:
    value = _text(el, local)
    if not value:
        raise InvalidEdxml(f"{where}/{local} is required", field=f"{where}/{local}")
    return value


def _int(el: etree._Element | None, local: str) -> int | None:
    value = _text(el, local)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidEdxml(f"{local} must be an integer, not {value!r}", field=local) from None


def _date(el: etree._Element | None, local: str) -> date | None:
    value = _text(el, local)
    return parse_date(value) if value else None


def _organization(el: etree._Element, where: str) -> Organization:
    return Organization(
        organ_id=_required(el, "OrganId", where),
        organ_name=_text(el, "OrganName"),
        organization_in_charge=_text(el, "OrganizationInCharge"),
        organ_add=_text(el, "OrganAdd"),
        email=_text(el, "Email"),
        telephone=_text(el, "Telephone"),
        fax=_text(el, "Fax"),
        website=_text(el, "Website"),
    )


def _header_parts(root: etree._Element) -> tuple[etree._Element, etree._Element | None]:
    header = _child(_child(root, "edXMLEnvelope"), "edXMLHeader")
    mh = _child(header, "MessageHeader")
    if header is None or mh is None:
        raise InvalidEdxml("edXMLEnvelope/edXMLHeader/MessageHeader is required")
    return mh, _child(header, "TraceHeaderList")


def _response_for(el: etree._Element) -> ResponseFor:
    return ResponseFor(
        organ_id=_text(el, "OrganId"),
        code=_text(el, "Code"),
        promulgation_date=_date(el, "PromulgationDate"),
        document_id=_required(el, "DocumentId", "ResponseFor"),
    )


def _staff(el: etree._Element | None) -> StaffInfo:
    return StaffInfo(
        department=_text(el, "Department"),
        staff=_text(el, "Staff"),
        mobile=_text(el, "Mobile"),
        email=_text(el, "Email"),
    )


def _trace(el: etree._Element | None) -> TraceHeaderList:
    if el is None:
        return TraceHeaderList()
    traces = tuple(
        TraceHeader(_required(t, "OrganId", "TraceHeader"), parse_timestamp(_text(t, "Timestamp")))
        for t in _children(el, "TraceHeader")
    )
    # "Bussiness" is the spelling on the wire; some systems correct it.
    b = _child(el, "Bussiness")
    if b is None:
        b = _child(el, "Business")
    business = None
    if b is not None:
        typed = _business_child(b, "DocType")
        if typed is None:  # read as 0, it made a revoke or an update a new document
            raise InvalidEdxml("Bussiness has no BussinessDocType", field="BussinessDocType")
        doc_type = _own_text(typed)
        if doc_type not in ("0", "1", "2", "3"):
            raise InvalidEdxml(
                f"BussinessDocType must be 0-3, not {doc_type!r}", field="BussinessDocType"
            )
        info = _business_child(b, "DocumentInfo")
        receivers = tuple(
            Receiver(_required(r, "OrganId", "Receiver"), _int(r, "ReceiverType") or 1)
            for r in _children(_child(info, "ReceiverList"), "Receiver")
        )
        replacements = tuple(
            ReplacementInfo(
                _required(r, "DocumentId", "ReplacementInfo"),
                tuple(
                    (o.text or "").strip() for o in _children(_child(r, "OrganIdList"), "OrganId")
                ),
            )
            for r in _children(_child(b, "ReplacementInfoList"), "ReplacementInfo")
        )
        business = Business(
            document_id=_text(b, "DocumentId"),
            doc_type=int(doc_type),
            reason=_own_text(_business_child(b, "DocReason")),
            paper=_int(b, "Paper") or 0,
            staff_info=_staff(_child(b, "StaffInfo"))
            if _child(b, "StaffInfo") is not None
            else None,
            receivers=receivers,
            replacements=replacements,
        )
    return TraceHeaderList(traces, business)


def _business_child(b: etree._Element, name: str) -> etree._Element | None:
    """``Bussiness<name>``, the wire's spelling, or ``Business<name>``, which some systems
    send: one of them, never both (which would the hub believe?)."""
    found = [
        c for c in (_child(b, f"Bussiness{name}"), _child(b, f"Business{name}")) if c is not None
    ]
    if len(found) > 1:
        raise InvalidEdxml(
            f"Bussiness{name} is given twice (as Business{name} too)", field=f"Bussiness{name}"
        )
    return found[0] if found else None


def is_status_message(root: etree._Element) -> bool:
    mh, _ = _header_parts(root)
    return _child(mh, "StatusCode") is not None


def read_package(root: etree._Element, attachments: Sequence[AttachmentInfo] = ()) -> Package:
    """The typed package. Raises InvalidEdxml for a missing or malformed required part."""
    mh, tl = _header_parts(root)
    from_el = _child(mh, "From")
    if from_el is None:
        raise InvalidEdxml("MessageHeader/From is required", field="From")
    to = tuple(_organization(t, "To") for t in _children(mh, "To"))
    if not to:
        raise InvalidEdxml("MessageHeader/To is required", field="To")
    code_el = _child(mh, "Code")
    prom = _child(mh, "PromulgationInfo")
    dtype = _child(mh, "DocumentType")
    signer = _child(mh, "SignerInfo")
    other = _child(mh, "OtherInfo")
    header = MessageHeader(
        from_=_organization(from_el, "From"),
        to=to,
        document_id=_required(mh, "DocumentId", "MessageHeader"),
        code=Code(_text(code_el, "CodeNumber"), _text(code_el, "CodeNotation"))
        if code_el is not None
        else None,
        promulgation_info=PromulgationInfo(
            _text(prom, "Place"),
            parse_date(_required(prom, "PromulgationDate", "PromulgationInfo")),
        )
        if prom is not None
        else None,
        document_type=DocumentType(
            _int(dtype, "Type") or 0, _text(dtype, "TypeName"), _int(dtype, "TypeDetail")
        )
        if dtype is not None
        else None,
        subject=_text(mh, "Subject"),
        content=_text(mh, "Content"),
        signer_info=SignerInfo(
            _text(signer, "FullName"), _text(signer, "Position"), _text(signer, "Competence")
        )
        if signer is not None
        else None,
        due_date=_date(mh, "DueDate"),
        other_info=OtherInfo(
            priority=_int(other, "Priority") or 0,
            sphere_of_promulgation=_text(other, "SphereOfPromulgation"),
            typer_notation=_text(other, "TyperNotation"),
            promulgation_amount=_int(other, "PromulgationAmount"),
            page_amount=_int(other, "PageAmount"),
            direction=_text(other, "Direction").lower() in ("true", "1"),
            appendixes=tuple(
                (a.text or "").strip() for a in _children(_child(other, "Appendixes"), "Appendix")
            ),
        )
        if other is not None
        else None,
        response_for=tuple(_response_for(r) for r in _children(mh, "ResponseFor")),
        steering_type=_int(mh, "SteeringType"),
        response_for_task=tuple(
            (t.text or "").strip() for t in _children(_child(mh, "ResponseForTask"), "TaskCode")
        ),
        to_places=tuple((p.text or "").strip() for p in _children(_child(mh, "ToPlaces"), "Place")),
    )
    manifest = _child(_child(_child(root, "edXMLEnvelope"), "edXMLBody"), "edXMLManifest")
    references = tuple(
        Reference(
            content_id=_required(r, "ContentId", "Reference"),
            attachment_name=_text(r, "AttachmentName"),
            content_type=_text(r, "ContentType") or "application/octet-stream",
            description=_text(r, "Description"),
        )
        for r in _children(manifest, "Reference")
    )
    return Package(header, _trace(tl), references, tuple(attachments))


def read_status(root: etree._Element) -> StatusMessage:
    """The typed status message. Raises InvalidEdxml."""
    mh, tl = _header_parts(root)
    from_el = _child(mh, "From")
    rf = _child(mh, "ResponseFor")
    if from_el is None or rf is None:
        raise InvalidEdxml("a status message needs From and ResponseFor")
    return StatusMessage(
        from_=_organization(from_el, "From"),
        response_for=_response_for(rf),
        status_code=_required(mh, "StatusCode", "MessageHeader"),
        timestamp=parse_timestamp(_required(mh, "Timestamp", "MessageHeader")),
        description=_text(mh, "Description"),
        staff_info=_staff(_child(mh, "StaffInfo")),
        trace=_trace(tl),
    )
