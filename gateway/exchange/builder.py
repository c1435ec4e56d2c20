"""Building edXML packages and status messages (emits ``yyyy/MM/dd`` dates, ``edXML:`` prefix).

``build_package``/``build_status`` return unsigned bytes: sign them with
``signing.xml.sign_xml(data, key, parent=SIGNATURE_PARENT)``. ``write_package`` streams large
attachments from files into a package on disk without holding them in memory.
"""

from __future__ import annotations

import base64
import io
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.edxml import q
from gateway.exchange.errors import InvalidEdxml
from gateway.exchange.model import (
    NS,
    Business,
    MessageHeader,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
    format_date,
    format_timestamp,
)

__all__ = [
    "SIGNATURE_PARENT",
    "FileAttachment",
    "NewAttachment",
    "append_trace_header",
    "build_package",
    "build_status",
    "package_tree",
    "write_package",
]

SIGNATURE_PARENT = q("edXMLHeader")
_NSMAP = {"edXML": NS}
_B64_LINE = 57  # bytes per 76-character base64 line


@dataclass(frozen=True, slots=True)
class NewAttachment:
    name: str
    data: bytes
    content_type: str = "application/pdf"
    description: str = ""
    zipped: bool = False  # zip before base64, as many systems in service do


@dataclass(frozen=True, slots=True)
class FileAttachment:
    path: Path
    name: str
    content_type: str = "application/pdf"
    description: str = ""


def _sub(parent: etree._Element, local: str, text: str | int | None = None) -> etree._Element:
    el = etree.SubElement(parent, q(local))
    if text is not None:
        el.text = str(text)
    return el


def _opt(parent: etree._Element, local: str, text: str | int | None) -> None:
    if text not in (None, ""):
        _sub(parent, local, text)


def _organization(parent: etree._Element, local: str, org: Organization) -> None:
    el = _sub(parent, local)
    _sub(el, "OrganId", org.organ_id)
    _opt(el, "OrganizationInCharge", org.organization_in_charge)
    _opt(el, "OrganName", org.organ_name)
    _opt(el, "OrganAdd", org.organ_add)
    _opt(el, "Email", org.email)
    _opt(el, "Telephone", org.telephone)
    _opt(el, "Fax", org.fax)
    _opt(el, "Website", org.website)


def _response_for(parent: etree._Element, rf: ResponseFor) -> None:
    el = _sub(parent, "ResponseFor")
    _sub(el, "OrganId", rf.organ_id)
    _sub(el, "Code", rf.code)
    _sub(el, "PromulgationDate", format_date(rf.promulgation_date) if rf.promulgation_date else "")
    _sub(el, "DocumentId", rf.document_id)


def _staff(parent: etree._Element, staff: StaffInfo) -> None:
    el = _sub(parent, "StaffInfo")
    _sub(el, "Department", staff.department)
    _sub(el, "Staff", staff.staff)
    _opt(el, "Mobile", staff.mobile)
    _opt(el, "Email", staff.email)


def _message_header(parent: etree._Element, h: MessageHeader) -> None:
    mh = _sub(parent, "MessageHeader")
    _organization(mh, "From", h.from_)
    for to in h.to:
        _organization(mh, "To", to)
    _sub(mh, "DocumentId", h.document_id)
    if h.code:
        c = _sub(mh, "Code")
        _sub(c, "CodeNumber", h.code.code_number)
        _sub(c, "CodeNotation", h.code.code_notation)
    if h.promulgation_info:
        p = _sub(mh, "PromulgationInfo")
        _sub(p, "Place", h.promulgation_info.place)
        _sub(p, "PromulgationDate", format_date(h.promulgation_info.promulgation_date))
    if h.document_type:
        d = _sub(mh, "DocumentType")
        _sub(d, "Type", h.document_type.type)
        _opt(d, "TypeDetail", h.document_type.type_detail)
        _sub(d, "TypeName", h.document_type.type_name)
    _sub(mh, "Subject", h.subject)
    _opt(mh, "Content", h.content)
    if h.signer_info:
        s = _sub(mh, "SignerInfo")
        _opt(s, "Competence", h.signer_info.competence)
        _opt(s, "Position", h.signer_info.position)
        _sub(s, "FullName", h.signer_info.full_name)
    if h.due_date:
        _sub(mh, "DueDate", format_date(h.due_date))
    if h.other_info:
        o = _sub(mh, "OtherInfo")
        oi = h.other_info
        _sub(o, "Priority", oi.priority)
        _opt(o, "SphereOfPromulgation", oi.sphere_of_promulgation)
        _opt(o, "TyperNotation", oi.typer_notation)
        _opt(o, "PromulgationAmount", oi.promulgation_amount)
        _opt(o, "PageAmount", oi.page_amount)
        _sub(o, "Direction", "true" if oi.direction else "false")
        if oi.appendixes:
            a = _sub(o, "Appendixes")
            for text in oi.appendixes:
                _sub(a, "Appendix", text)
    for rf in h.response_for:
        _response_for(mh, rf)
    _opt(mh, "SteeringType", h.steering_type)
    if h.response_for_task:
        t = _sub(mh, "ResponseForTask")
        for code in h.response_for_task:
            _sub(t, "TaskCode", code)
    if h.to_places:
        p = _sub(mh, "ToPlaces")
        for place in h.to_places:
            _sub(p, "Place", place)


def _business(parent: etree._Element, b: Business) -> None:
    el = _sub(parent, "Bussiness")  # sic: the wire spelling
    _sub(el, "DocumentId", b.document_id)
    _sub(el, "BussinessDocType", b.doc_type)
    _opt(el, "BussinessDocReason", b.reason)
    _sub(el, "Paper", b.paper)
    if b.staff_info:
        _staff(el, b.staff_info)
    if b.receivers:
        info = _sub(el, "BussinessDocumentInfo")
        rl = _sub(info, "ReceiverList")
        for r in b.receivers:
            rec = _sub(rl, "Receiver")
            _sub(rec, "OrganId", r.organ_id)
            _sub(rec, "ReceiverType", r.receiver_type)
    if b.replacements:
        rl = _sub(el, "ReplacementInfoList")
        for rep in b.replacements:
            ri = _sub(rl, "ReplacementInfo")
            _sub(ri, "DocumentId", rep.document_id)
            ol = _sub(ri, "OrganIdList")
            for organ in rep.organ_ids:
                _sub(ol, "OrganId", organ)


def _trace_list(parent: etree._Element, trace: TraceHeaderList) -> None:
    tl = _sub(parent, "TraceHeaderList")
    for th in trace.trace_headers:
        _trace_header(tl, th)
    if trace.business:
        _business(tl, trace.business)


def _trace_header(parent: etree._Element, th: TraceHeader) -> etree._Element:
    el = etree.Element(q("TraceHeader"))
    _sub(el, "OrganId", th.organ_id)
    _sub(el, "Timestamp", format_timestamp(th.timestamp))
    parent.append(el)
    return el


def append_trace_header(root: etree._Element, th: TraceHeader) -> None:
    """Add ``th`` after the existing TraceHeaders (before Bussiness). Raises InvalidEdxml."""
    header = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")
    if header is None:
        raise InvalidEdxml("no edXMLHeader to append a TraceHeader to")
    tl = header.find(q("TraceHeaderList"))
    if tl is None:
        tl = etree.Element(q("TraceHeaderList"))
        mh = header.find(q("MessageHeader"))
        if mh is None:
            raise InvalidEdxml("no MessageHeader")
        mh.addnext(tl)
    existing = tl.findall(q("TraceHeader"))
    el = etree.Element(q("TraceHeader"))
    _sub(el, "OrganId", th.organ_id)
    _sub(el, "Timestamp", format_timestamp(th.timestamp))
    if existing:
        existing[-1].addnext(el)
    else:
        tl.insert(0, el)


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def package_tree(
    header: MessageHeader,
    trace: TraceHeaderList,
    refs: Sequence[tuple[str, str, str, str]],
) -> tuple[etree._Element, list[etree._Element]]:
    """The package tree with empty ContentTransferEncoded elements, one per ``refs`` entry
    ``(content_id, name, content_type, description)``."""
    root = etree.Element(q("edXML"), nsmap=_NSMAP)
    env = _sub(root, "edXMLEnvelope")
    hdr = _sub(env, "edXMLHeader")
    _message_header(hdr, header)
    _trace_list(hdr, trace)
    body = _sub(env, "edXMLBody")
    manifest = _sub(body, "edXMLManifest")
    manifest.set("version", "1.0")
    encoded = _sub(root, "AttachmentEncoded")
    slots = []
    for cid, name, ctype, desc in refs:
        r = _sub(manifest, "Reference")
        _sub(r, "ContentId", cid)
        _sub(r, "ContentType", ctype)
        _sub(r, "Description", desc)
        _sub(r, "AttachmentName", name)
        a = _sub(encoded, "Attachment")
        _sub(a, "ContentId", cid)
        _sub(a, "AttachmentName", name)
        _sub(a, "Description", desc)
        _sub(a, "ContentType", ctype)
        slots.append(_sub(a, "ContentTransferEncoded"))
    return root, slots


def _cid(i: int) -> str:
    return f"cid:{i + 1}-{secrets.token_hex(4)}"


def build_package(
    header: MessageHeader,
    trace: TraceHeaderList = TraceHeaderList(),  # noqa: B008 - frozen, so sharing is safe
    attachments: Sequence[NewAttachment] = (),
) -> bytes:
    """An unsigned package with the attachments base64-encoded inline."""
    refs = []
    payloads = []
    for i, a in enumerate(attachments):
        data, ctype, name = a.data, a.content_type, a.name
        if a.zipped:
            data, ctype, name = _zip(a.name, a.data), "application/zip", a.name + ".zip"
        refs.append((_cid(i), name, ctype, a.description))
        payloads.append(data)
    root, slots = package_tree(header, trace, refs)
    for slot, data in zip(slots, payloads, strict=True):
        slot.text = base64.encodebytes(data).decode("ascii")
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def write_package(
    out: BinaryIO,
    header: MessageHeader,
    trace: TraceHeaderList,
    attachments: Sequence[FileAttachment],
    chunk_lines: int = 1024,
) -> None:
    """Stream an unsigned package to ``out``; each file is read and base64-encoded in chunks."""
    refs = [(_cid(i), a.name, a.content_type, a.description) for i, a in enumerate(attachments)]
    root, slots = package_tree(header, trace, refs)
    marks: list[bytes] = []
    for slot in slots:
        token = "SPLICE" + secrets.token_hex(16)
        slot.text = token
        marks.append(token.encode())
    text: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    for mark, a in zip(marks, attachments, strict=True):
        before, text = text.split(mark, 1)
        out.write(before)
        with a.path.open("rb") as f:
            while chunk := f.read(_B64_LINE * chunk_lines):
                out.write(base64.encodebytes(chunk))
    out.write(text)


def build_status(msg: StatusMessage) -> bytes:
    """An unsigned edXML status message."""
    root = etree.Element(q("edXML"), nsmap=_NSMAP)
    env = _sub(root, "edXMLEnvelope")
    hdr = _sub(env, "edXMLHeader")
    mh = _sub(hdr, "MessageHeader")
    _organization(mh, "From", msg.from_)
    _response_for(mh, msg.response_for)
    _staff(mh, msg.staff_info)
    _sub(mh, "StatusCode", msg.status_code)
    _sub(mh, "Description", msg.description)
    _sub(mh, "Timestamp", format_timestamp(msg.timestamp))
    _trace_list(hdr, msg.trace)
    _sub(env, "edXMLBody")
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out
