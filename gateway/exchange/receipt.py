"""The hub's signed receipt: what it received (digests), when, and its own TraceHeader.

The receipt is the sender's proof of delivery to the hub: DocumentId, sender, recipients, the
SHA-256 of the package bytes as received and of each decoded attachment, and the hub's
TraceHeader, under an enveloped XMLDSig made with the gateway's key (``signing.xml.sign_xml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.edxml import DS_NS, q, safe_parser
from gateway.exchange.errors import InvalidEdxml, ReceiptUnsigned
from gateway.exchange.model import (
    NS,
    VN_TZ,
    AttachmentInfo,
    TraceHeader,
    format_timestamp,
    parse_timestamp,
)

if TYPE_CHECKING:
    from signing.keys import SigningKey

__all__ = ["RECEIPT_NS", "Receipt", "build_receipt", "read_receipt", "sign_receipt"]

RECEIPT_NS = "urn:lienthong:edxml:receipt:1"


def _r(local: str) -> str:
    return f"{{{RECEIPT_NS}}}{local}"


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str  # the hub's id for the document
    document_id: str
    sender: str
    recipients: tuple[str, ...]
    received_at: datetime
    package_sha256: str
    package_size: int
    attachments: tuple[AttachmentInfo, ...]
    trace: TraceHeader
    signed: bool = False


def build_receipt(r: Receipt) -> bytes:
    """Unsigned receipt XML."""
    root = etree.Element(_r("Receipt"), nsmap={None: RECEIPT_NS, "edXML": NS})
    etree.SubElement(root, _r("Id")).text = r.id
    etree.SubElement(root, _r("DocumentId")).text = r.document_id
    etree.SubElement(root, _r("From")).text = r.sender
    for to in r.recipients:
        etree.SubElement(root, _r("To")).text = to
    etree.SubElement(root, _r("ReceivedAt")).text = r.received_at.astimezone(VN_TZ).isoformat()
    etree.SubElement(root, _r("Package"), sha256=r.package_sha256, size=str(r.package_size))
    for a in r.attachments:
        etree.SubElement(
            root,
            _r("Attachment"),
            contentId=a.content_id,
            name=a.name,
            sha256=a.sha256,
            size=str(a.size),
        )
    th = etree.SubElement(root, q("TraceHeader"))
    etree.SubElement(th, q("OrganId")).text = r.trace.organ_id
    etree.SubElement(th, q("Timestamp")).text = format_timestamp(r.trace.timestamp)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


async def sign_receipt(data: bytes, key: SigningKey) -> bytes:
    """Sign with the gateway key. Raises ReceiptUnsigned if it cannot: its token fails, or its
    certificate (or an issuer given with it) expired since the gateway started — a receipt
    signed so would be refused by the sender who checks it."""
    from signing.errors import SigningError
    from signing.trust import check_valid_now
    from signing.xml import sign_xml

    try:
        check_valid_now((key.certificate, *key.chain))
        return await sign_xml(data, key, level="XMLDSig")
    except SigningError as exc:
        raise ReceiptUnsigned(f"the hub cannot sign its receipt: {exc}") from exc


def read_receipt(data: bytes) -> Receipt:
    """Parse a receipt (signature not checked here: use ``signing.verify_xml``).

    Raises InvalidEdxml.
    """
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data[:4096]:
        raise InvalidEdxml("DOCTYPE in a receipt")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidEdxml(f"receipt is not well-formed: {exc.msg}") from exc
    if root.tag != _r("Receipt"):
        raise InvalidEdxml("not a lienthong receipt")

    def text(local: str) -> str:
        return (root.findtext(_r(local)) or "").strip()

    pkg = root.find(_r("Package"))
    th = root.find(q("TraceHeader"))
    if pkg is None or th is None:
        raise InvalidEdxml("receipt lacks Package or TraceHeader")
    try:
        received = datetime.fromisoformat(text("ReceivedAt"))
        size = int(pkg.get("size", ""))
        atts = tuple(
            AttachmentInfo(
                a.get("contentId", ""),
                a.get("name", ""),
                "",
                "",
                a.get("sha256", ""),
                int(a.get("size", "")),
            )
            for a in root.iterfind(_r("Attachment"))
        )
    except ValueError as exc:
        raise InvalidEdxml(f"receipt field malformed: {exc}") from exc
    return Receipt(
        id=text("Id"),
        document_id=text("DocumentId"),
        sender=text("From"),
        recipients=tuple((t.text or "").strip() for t in root.iterfind(_r("To"))),
        received_at=received,
        package_sha256=pkg.get("sha256", ""),
        package_size=size,
        attachments=atts,
        trace=TraceHeader(
            (th.findtext(q("OrganId")) or "").strip(),
            parse_timestamp(th.findtext(q("Timestamp")) or ""),
        ),
        signed=root.find(f"{{{DS_NS}}}Signature") is not None,
    )
