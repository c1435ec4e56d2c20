"""Everything the hub checks about an incoming package or status message, in one call.

Order: size, DOCTYPE, well-formedness (streaming scan; attachments land in the blob store), XSD,
model, sender and recipients (cheap, before any cryptography), the envelope signature and its
binding to the sender, the attached PDFs' signatures. Nothing here touches the database: the
caller stores the result in one transaction. Blobs written for a refused package are
content-addressed and unreferenced, hence harmless (a sweeper may collect them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.exchange import schema
from gateway.exchange.attachments import (
    DEFAULT_MAX_PDF,
    DEFAULT_MAX_PDF_TOTAL,
    DEFAULT_MAX_PDFS,
    SignerOk,
    check_manifest,
    media_type,
    named_parts,
    pdf_sources,
    verify_pdfs,
)
from gateway.exchange.blobs import BlobStore
from gateway.exchange.edxml import DEFAULT_MAX_BYTES, is_status_message, read_package, read_status
from gateway.exchange.errors import ForgedSender, InvalidEdxml, SignatureInvalid, UnknownRecipient
from gateway.exchange.model import (
    AttachmentInfo,
    MessageHeader,
    Package,
    StatusMessage,
    parse_date,
)
from gateway.exchange.status import MEANINGS
from gateway.exchange.stream import Scan, scan_file
from gateway.exchange.xmldsig import EnvelopeSignature, verify_envelope

__all__ = [
    "MAX_DOCUMENT_ID",
    "MAX_SUBJECT",
    "CheckPolicy",
    "Checked",
    "CheckedStatus",
    "certificate_agency",
    "check_package",
    "check_status",
    "signer_is",
]


# The longest DocumentId the hub files (a real one is about 40 characters). Both stores must answer
# alike: PostgreSQL cannot index a key over about 2,700 bytes (the sender's DocumentIds are a
# unique key), so without a bound a long one was a 500 there and accepted by SQLite.
MAX_DOCUMENT_ID = 255
# The longest Subject (trích yếu) the hub takes, in characters. spec/edxml.md sets no length; the
# rules on administrative documents (Decree 30/2020/NĐ-CP, Annex I) make it one short sentence or
# phrase summing the document up, a few hundred characters at the most in real letters; the text
# itself goes in Content or an attachment. 2,000 is several times the longest, and keeps an inbox
# page (100 items, each with its Subject) under a megabyte or so, where the 8 MiB envelope cap
# alone let one page be 750 MB of JSON.
MAX_SUBJECT = 2000

# What a DocumentId may not hold: it is one line of text, as the JSON API's names are — no control
# character (C0, DEL, C1) and no line or paragraph separator. Recipients file the document by it,
# and a push carries it in a header (X-Lienthong-Document-Id), which cannot hold a DEL or a C0.
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# An agency identifier (identifiers.md: ``ddd.dd.dd.Xdd``) as a whole token: not inside a longer
# run of digits, letters and dots.
_AGENCY_ID = re.compile(
    r"(?<![0-9A-Za-z.])[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}(?![0-9A-Za-z.])"
)


def certificate_agency(cert: x509.Certificate) -> str | None:
    """The agency identifier the certificate is issued to: the one its subject's common name
    names (``CN=Sở Tài chính 000.00.11.H53``; the test PKI: ``CN=agency-000.00.11.H53``).

    None when the subject has no single CN, or the CN names no agency identifier or more than
    one. Nothing else is read: the organisation (O) of an agency's certificate often names its
    parent body (the province's People's Committee for a department), so an identifier found
    there, or anywhere in a longer string, must not count.
    """
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(cns) != 1:
        return None
    found = _AGENCY_ID.findall(str(cns[0].value))
    return found[0] if len(found) == 1 else None


def signer_is(cert: x509.Certificate, organ_id: str) -> bool:
    """Whether the certificate is issued to agency ``organ_id`` (``certificate_agency``: exactly
    that identifier in its CN). A deployment whose certificates name agencies otherwise can
    pass its own rule in CheckPolicy.signer_matches, or turn the binding off.
    """
    return certificate_agency(cert) == organ_id


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pdf_bytes: int = DEFAULT_MAX_PDF
    max_pdf_total_bytes: int = DEFAULT_MAX_PDF_TOTAL  # a package's PDFs together, unzipped
    max_pdfs: int = DEFAULT_MAX_PDFS  # PDFs per package, attached or unzipped
    require_signature: bool = True
    # The envelope signer's certificate must name From/OrganId (refuses a package signed by
    # agency A but claiming to come from B, even over B's own authenticated connection).
    bind_signer: bool = True
    verify_pdfs: bool = True
    signer_matches: Callable[[x509.Certificate, str], bool] = signer_is


@dataclass
class Checked:
    scan: Scan
    package: Package
    signature: EnvelopeSignature | None
    pdf_reports: list[dict[str, Any]] = field(default_factory=list)
    parts: list[AttachmentInfo] = field(default_factory=list)  # named as the manifest names them


@dataclass
class CheckedStatus:
    scan: Scan
    status: StatusMessage
    signature: EnvelopeSignature | None


async def _envelope(
    scan: Scan, sender: str, trust: Any, policy: CheckPolicy
) -> EnvelopeSignature | None:
    if not policy.require_signature:
        return None
    sig = await verify_envelope(scan, trust)
    if policy.bind_signer and not policy.signer_matches(sig.certificate, sender):
        raise ForgedSender(
            f"the envelope is signed by {sig.signer}, not by {sender}", signer=sig.signer
        )
    return sig


async def check_package(
    path: Path,
    blobs: BlobStore,
    *,
    sender: str,
    known_agencies: Collection[str],
    trust: Any,
    policy: CheckPolicy = CheckPolicy(),
    parts: Sequence[AttachmentInfo] = (),
) -> Checked:
    """Check the package stored at ``path`` sent by the authenticated agency ``sender``.

    ``parts`` are attachments that came as MIME parts beside the envelope (multipart/related),
    already in ``blobs``; they join the ones embedded in the package, a part sent without a file
    name named as the manifest names it (``Checked.parts``).

    Raises PayloadTooLarge, DoctypeForbidden, InvalidEdxml/SchemaInvalid, ForgedSender,
    UnknownRecipient, SignatureInvalid, BlobError.
    """
    scan = await asyncio.to_thread(scan_file, path, blobs, max_bytes=policy.max_bytes)
    await asyncio.to_thread(schema.validate, scan.root)
    if is_status_message(scan.root):
        raise InvalidEdxml("this is a status message: POST it to /v1/documents/{id}/status")
    pkg = read_package(scan.root, scan.attachments)
    parts = named_parts(pkg, parts)
    pkg = dataclasses.replace(pkg, attachments=(*pkg.attachments, *parts))
    if pkg.header.from_.organ_id != sender:
        raise ForgedSender(
            f"From/OrganId {pkg.header.from_.organ_id} is not the authenticated sender {sender}",
            claimed=pkg.header.from_.organ_id,
        )
    _document_id_fits(pkg.header, sender)
    _subject_fits(pkg.header)
    if all(t.organ_id != sender for t in pkg.trace.trace_headers):
        # Every system that handles a package appends its TraceHeader, the sender's first; the
        # hub appends its own to the list, and one without was forwarded with no trace of it.
        raise InvalidEdxml(
            f"the package has no TraceHeader of its sender {sender}: the sender appends one to "
            "the TraceHeaderList (the hub appends its own after it)",
            field="TraceHeaderList",
        )
    if any(t.organ_id == sender for t in pkg.header.to):
        # Its sender has it already; a delivery to itself could never be marked delivered.
        raise InvalidEdxml(
            f"To names the sender {sender}: a package goes to other agencies",
            field="MessageHeader/To",
        )
    unknown = sorted({t.organ_id for t in pkg.header.to} - set(known_agencies))
    if unknown:
        raise UnknownRecipient(f"unknown recipient(s): {', '.join(unknown)}", recipients=unknown)
    check_manifest(pkg, parts)
    _parts_carry_signatures(parts)
    sig = await _envelope(scan, sender, trust, policy)
    reports: list[dict[str, Any]] = []
    if policy.verify_pdfs:
        sources = pdf_sources(
            pkg,
            blobs,
            policy.max_pdf_bytes,
            max_total=policy.max_pdf_total_bytes,
            max_pdfs=policy.max_pdfs,
        )
        reports = await verify_pdfs(sources, trust, _signer_ok(parts, sender, policy))
    return Checked(scan, pkg, sig, reports, list(parts))


def _signer_ok(
    parts: Sequence[AttachmentInfo], sender: str, policy: CheckPolicy
) -> SignerOk | None:
    """Who may sign an attached PDF. One embedded in the package is covered by the envelope's
    signature, already bound to the sender. A MIME part travels outside it, and the manifest
    carries no digest of it: its own PDF signature is all that ties it to the sender, so one of
    its signatures must be the sender's, by the rule the envelope's signer is held to (any
    trusted signer would let anyone on the way put another agency's signed PDF in its place)."""
    if not policy.bind_signer:
        return None
    return lambda a, cert: a not in parts or policy.signer_matches(cert, sender)


def _document_id_fits(header: MessageHeader, sender: str) -> None:
    """A DocumentId is ``{OrganId},{yyyy/MM/dd},{CodeNumber}/{CodeNotation}`` (spec/edxml.md):
    its OrganId the issuing agency's (a sender may not number a document as another agency's),
    its date and number those the header gives in ``PromulgationInfo`` and ``Code``, where it
    gives them. Recipients file and answer the document by this id, so one that says something
    else than the header would be registered under the wrong number; one over MAX_DOCUMENT_ID
    characters is refused whole, and one that holds a control character (_NOT_TEXT). Raises
    InvalidEdxml."""
    document_id = header.document_id
    form = "{OrganId},{yyyy/MM/dd},{CodeNumber}/{CodeNotation}"

    def refuse(why: str) -> InvalidEdxml:
        return InvalidEdxml(
            f"DocumentId {document_id} {why} ({form})", field="MessageHeader/DocumentId"
        )

    if len(document_id) > MAX_DOCUMENT_ID:  # said, not quoted: it may be megabytes
        raise InvalidEdxml(
            f"DocumentId is {len(document_id)} characters, longer than {MAX_DOCUMENT_ID} "
            "characters: shorten its CodeNumber/CodeNotation",
            field="MessageHeader/DocumentId",
        )
    if (control := _NOT_TEXT.search(document_id)) is not None:
        raise InvalidEdxml(
            f"DocumentId {document_id!r} holds the control character "
            f"U+{ord(control.group()):04X}: a DocumentId is one line of text",
            field="MessageHeader/DocumentId",
        )
    parts = document_id.split(",")
    if parts[0].strip() != sender:
        raise refuse(f"must begin with the sender's OrganId {sender}")
    if len(parts) != 3 or any(p != p.strip() or not p for p in parts):
        raise refuse("is not three parts separated by commas")
    _, day, code = parts
    number, slash, notation = code.partition("/")
    if not (number and slash and notation):
        raise refuse(f"has no {{CodeNumber}}/{{CodeNotation}} (found {code!r})")
    try:
        issued = parse_date(day)
    except InvalidEdxml:
        raise refuse(f"has no date (found {day!r})") from None
    if header.code is not None and code != f"{header.code.code_number}/{header.code.code_notation}":
        raise refuse(
            f"says number {code}, the header's Code says "
            f"{header.code.code_number}/{header.code.code_notation}"
        )
    info = header.promulgation_info
    if info is not None and issued != info.promulgation_date:
        raise refuse(
            f"says {issued:%Y/%m/%d}, the header's PromulgationDate says "
            f"{info.promulgation_date:%Y/%m/%d}"
        )


def _subject_fits(header: MessageHeader) -> None:
    """A Subject of at most MAX_SUBJECT characters (recipients list it in their inbox). Raises
    InvalidEdxml."""
    if len(header.subject) > MAX_SUBJECT:  # said, not quoted: it may be megabytes
        raise InvalidEdxml(
            f"Subject is {len(header.subject)} characters, longer than {MAX_SUBJECT}: a Subject "
            "(trích yếu) sums the document up in a sentence; its text goes in Content or an "
            "attachment",
            field="MessageHeader/Subject",
        )


def _parts_carry_signatures(parts: Sequence[AttachmentInfo]) -> None:
    """A MIME part travels outside the signed envelope, and the edXML manifest carries no digest
    of it: only a part that is signed itself (a PDF, verified below, by its sender: _signer_ok)
    can be trusted not to have been altered or replaced on the way. Raises SignatureInvalid for
    any other."""
    for part in parts:
        if media_type(part.content_type) != "application/pdf":
            raise SignatureInvalid(
                f"attachment {part.name!r} ({part.content_type}) came outside the signed envelope "
                "and carries no signature of its own: send it inside the package, or as a signed PDF"
            )


async def check_status(
    path: Path,
    *,
    sender: str,
    trust: Any,
    policy: CheckPolicy = CheckPolicy(),
) -> CheckedStatus:
    """Check an edXML status message sent by ``sender``. Raises as check_package."""
    scan = await asyncio.to_thread(scan_file, path, None, max_bytes=min(policy.max_bytes, 8 << 20))
    await asyncio.to_thread(schema.validate, scan.root)
    if not is_status_message(scan.root):
        raise InvalidEdxml("not a status message (MessageHeader/StatusCode is missing)")
    status = read_status(scan.root)
    if status.status_code not in MEANINGS:
        # The XSD lets any two digits through; edXML means only these: a malformed message,
        # not a move the recipient's chain refuses.
        raise InvalidEdxml(
            f"StatusCode {status.status_code} is not an edXML status ({', '.join(MEANINGS)})",
            field="StatusCode",
        )
    if status.from_.organ_id != sender:
        raise ForgedSender(
            f"From/OrganId {status.from_.organ_id} is not the authenticated sender {sender}",
            claimed=status.from_.organ_id,
        )
    sig = await _envelope(scan, sender, trust, policy)
    return CheckedStatus(scan, status, sig)
