"""Typed model of edXML packages and status messages (QCVN 102:2016, as used in service).

Plain frozen dataclasses: the parser fills them from an lxml tree, the builder turns them back into
XML. Dates are ``datetime.date``; timestamps are aware datetimes (edXML writes Vietnam local time,
UTC+7, without an offset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from gateway.exchange.errors import InvalidEdxml

__all__ = [
    "NS",
    "VN_TZ",
    "AttachmentInfo",
    "Business",
    "Code",
    "DocumentType",
    "MessageHeader",
    "Organization",
    "OtherInfo",
    "Package",
    "PromulgationInfo",
    "Receiver",
    "Reference",
    "ReplacementInfo",
    "ResponseFor",
    "SignerInfo",
    "StaffInfo",
    "StatusMessage",
    "TraceHeader",
    "TraceHeaderList",
    "format_date",
    "format_timestamp",
    "normal_document_id",
    "parse_date",
    "parse_timestamp",
]

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
VN_TZ = timezone(timedelta(hours=7), "ICT")

_DATE_FORMS = (
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), (1, 2, 3)),  # the standard's form
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), (3, 2, 1)),  # seen in real packages
)
_TIME = re.compile(r"^(\S+)(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def parse_date(text: str) -> date:
    """``yyyy/MM/dd`` or ``dd/MM/yyyy`` (a time part is ignored). Raises InvalidEdxml."""
    return parse_timestamp(text).date()


def parse_timestamp(text: str) -> datetime:
    """``yyyy/MM/dd[ HH:mm[:ss]]`` or ``dd/MM/yyyy[ …]``, Vietnam time. Raises InvalidEdxml."""
    m = _TIME.match(text.strip())
    if m:
        day_part, hh, mm, ss = m.groups()
        for pattern, (yi, mi, di) in _DATE_FORMS:
            d = pattern.match(day_part)
            if d:
                try:
                    return datetime(
                        int(d.group(yi)),
                        int(d.group(mi)),
                        int(d.group(di)),
                        int(hh or 0),
                        int(mm or 0),
                        int(ss or 0),
                        tzinfo=VN_TZ,
                    )
                except ValueError:
                    break
    raise InvalidEdxml(f"not an edXML date: {text!r}", field="date")


def format_date(value: date) -> str:
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: datetime) -> str:
    local = value.astimezone(VN_TZ)
    return f"{format_date(local.date())} {local:%H:%M:%S}"


def normal_document_id(document_id: str) -> str:
    """``document_id`` as spec/edxml.md emits it: ``{OrganId},{yyyy/MM/dd},{number}``, its date
    zero-padded. Senders also write ``30/10/2020`` or ``2020/1/5`` (accepted alike): one document
    whichever, so the hub files and compares DocumentIds in this form. An id with no date where
    the form puts one is returned as it is."""
    parts = document_id.split(",")
    if len(parts) != 3:
        return document_id
    try:
        issued = parse_date(parts[1])
    except InvalidEdxml:
        return document_id
    return f"{parts[0]},{format_date(issued)},{parts[2]}"


@dataclass(frozen=True, slots=True)
class Organization:
    organ_id: str
    organ_name: str = ""
    organization_in_charge: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class Code:
    code_number: str
    code_notation: str


@dataclass(frozen=True, slots=True)
class PromulgationInfo:
    place: str
    promulgation_date: date


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: int
    type_name: str
    type_detail: int | None = None


@dataclass(frozen=True, slots=True)
class SignerInfo:
    full_name: str
    position: str = ""
    competence: str = ""


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: int = 0
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool = False
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    organ_id: str
    code: str
    promulgation_date: date | None
    document_id: str


@dataclass(frozen=True, slots=True)
class MessageHeader:
    from_: Organization
    to: tuple[Organization, ...]
    document_id: str
    code: Code | None = None
    promulgation_info: PromulgationInfo | None = None
    document_type: DocumentType | None = None
    subject: str = ""
    content: str = ""
    signer_info: SignerInfo | None = None
    due_date: date | None = None
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int | None = None
    response_for_task: tuple[str, ...] = ()
    to_places: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    mobile: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class Receiver:
    organ_id: str
    receiver_type: int = 1


@dataclass(frozen=True, slots=True)
class ReplacementInfo:
    document_id: str
    organ_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Business:
    """``Bussiness`` on the wire; doc_type 0 new, 1 revoke, 2 update, 3 replace."""

    document_id: str
    doc_type: int = 0
    reason: str = ""
    paper: int = 0
    staff_info: StaffInfo | None = None
    receivers: tuple[Receiver, ...] = ()
    replacements: tuple[ReplacementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceHeaderList:
    trace_headers: tuple[TraceHeader, ...] = ()
    business: Business | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    content_id: str
    attachment_name: str
    content_type: str = "application/pdf"
    description: str = ""


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """An attachment as received: decoded bytes live in the blob named by ``sha256``."""

    content_id: str
    name: str
    content_type: str
    description: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Package:
    header: MessageHeader
    trace: TraceHeaderList
    references: tuple[Reference, ...] = ()
    attachments: tuple[AttachmentInfo, ...] = ()

    @property
    def doc_type(self) -> int:
        return self.trace.business.doc_type if self.trace.business else 0


@dataclass(frozen=True, slots=True)
class StatusMessage:
    from_: Organization
    response_for: ResponseFor
    status_code: str
    timestamp: datetime
    description: str = ""
    staff_info: StaffInfo = field(default_factory=StaffInfo)
    trace: TraceHeaderList = field(default_factory=TraceHeaderList)
