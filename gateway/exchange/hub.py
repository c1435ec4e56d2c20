"""The hub: accept packages, route them per recipient, carry statuses back — over the store.

Framework-free (the aiohttp handlers in ``gateway.api.documents`` are thin): every operation takes
the authenticated agency and raises ``ExchangeError`` subclasses that map to problem+json.

Acceptance is durable before it is acknowledged: the package and its attachments are streamed
into a private staging area and checked there; only an accepted package's blobs are moved into the
blob store, and then ONE ``store.transact`` writes the document row, a delivery row per recipient,
an outbox job per push recipient and the audit event. A refused package leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit import AuditEvent
from gateway.audit import append as audit_append
from gateway.exchange.attachments import DEFAULT_MAX_PDFS
from gateway.exchange.blobs import BlobStore
from gateway.exchange.check import (
    MAX_SUBJECT,
    Checked,
    CheckPolicy,
    check_package,
    check_status,
)
from gateway.exchange.errors import (
    BlobError,
    DuplicateConflict,
    InvalidEdxml,
    NotDelivered,
    PayloadTooLarge,
    StatusTransitionError,
    UnknownDocument,
)
from gateway.exchange.model import (
    AttachmentInfo,
    Package,
    StatusMessage,
    TraceHeader,
    normal_document_id,
)
from gateway.exchange.receipt import Receipt, build_receipt, sign_receipt
from gateway.exchange.status import MEANINGS, advance, replay
from gateway.exchange.trace import forward_copy
from gateway.outbox import enqueue
from gateway.store import Store, Tx

__all__ = [
    "MAX_PARTS",
    "PUSH_KIND",
    "STATUS_PUSH_KIND",
    "Accepted",
    "AgencyRoute",
    "DocumentHub",
    "IncomingPart",
    "hub_document_id",
]

log = logging.getLogger("lienthong.documents")

# Attachment parts beside the envelope in one multipart/related package. Each must be a signed
# PDF (check.py), and a package carries at most attachments.DEFAULT_MAX_PDFS PDFs; each part is a
# blob written and synced before any check can run.
MAX_PARTS = DEFAULT_MAX_PDFS
PUSH_KIND = "document.push"
STATUS_PUSH_KIND = "document.status.push"
SERVICE = "documents"
_SPOOL_BATCH = 1 << 20


# A blob no row names is swept once it is this old: far beyond any intake's adopt-to-commit.
ORPHAN_AGE_S = 24 * 3600


def _part_key(part: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (part["content_id"], part["name"], part["content_type"], part["sha256"])


def _unnamed(tx: Tx, digests: list[str]) -> list[str]:
    return [d for d in digests if tx.one("documents.blob_named", sha256=d) is None]


def _conflict(row: Mapping[str, Any]) -> DuplicateConflict:
    return DuplicateConflict(
        f"DocumentId {row['document_id']} was already received with other content",
        id=row["id"],
        document_id=row["document_id"],
    )


def _namesakes(tx: Tx, pkg: Package, sender: str) -> list[dict[str, Any]]:
    """The sender's documents that hold ``pkg``'s DocumentId for its kind (documents.by_key)."""
    return tx.all(
        "documents.by_key",
        sender=sender,
        document_id=normal_document_id(pkg.header.document_id),
        doc_type=pkg.doc_type,
    )


async def hub_document_id(store: Store, document: str | None) -> str | None:
    """The hub's id an auditor's ``document`` filter names. A DocumentId (``{OrganId},
    {yyyy/MM/dd},{number}``: what an auditor holding the letter has, its date in any spelling the
    hub accepts) names the letter the hub filed under it from that OrganId, a new or replacing
    document (one per DocumentId; a revoke or update of it is a package with a hub id of its
    own); found through the sender's index of its documents. Any other text is a hub id, as
    given (a hub id holds no comma)."""
    if not document or "," not in document:
        return document
    filed = normal_document_id(document.strip())
    sender = filed.partition(",")[0]
    row = await store.read(
        lambda tx: tx.one("documents.originals", sender=sender, document_id=filed)
    )
    return document if row is None else str(row["id"])


@dataclass(frozen=True, slots=True)
class AgencyRoute:
    id: str
    endpoint: str | None = None  # push URL; None: the agency pulls its inbox
    token: str | None = field(default=None, repr=False)  # bearer token for its endpoint


@dataclass(frozen=True, slots=True)
class IncomingPart:
    """An attachment sent as a MIME part beside the envelope (multipart/related)."""

    content_id: str
    name: str  # its file name as sent; "" for none (it takes its manifest Reference's)
    content_type: str
    chunks: AsyncIterator[bytes]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    receipt: bytes
    duplicate: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


CLOCK_SKEW = timedelta(minutes=5)  # how far a sender's clock may run from the hub's


def _in_time(
    at: datetime, received: datetime, before: list[datetime], recall: datetime | None
) -> None:
    """A status says when it happened: not ahead of the hub's clock, nor before the hub received
    the document, nor, answering a recall (15, 16), before the hub recorded the 13 it answers
    (``recall``) — each give or take CLOCK_SKEW, as the recipient's clock may run from the
    hub's (and a status has whole seconds, where the hub's times have microseconds) —, nor
    before the recipient's earlier statuses (``before``): the sender reads the times back as the
    document's course. Raises InvalidEdxml."""
    if at > _now() + CLOCK_SKEW:
        raise InvalidEdxml(f"Timestamp {_iso(at)} is in the future", field="Timestamp")
    if at < received - CLOCK_SKEW:
        raise InvalidEdxml(
            f"Timestamp {_iso(at)} is before the hub received the document ({_iso(received)})",
            field="Timestamp",
        )
    if before and at < (last := max(before)):
        raise InvalidEdxml(
            f"Timestamp {_iso(at)} is before this recipient's previous status ({_iso(last)})",
            field="Timestamp",
        )
    if recall is not None and at < recall - CLOCK_SKEW:
        raise InvalidEdxml(
            f"Timestamp {_iso(at)} is before the recall (13) it answers ({_iso(recall)})",
            field="Timestamp",
        )


def _member(agency: str) -> str:
    return f"VN:GOV:{agency}"


def _event(
    action: str, agency: str, subsystem: str, document: str, request_id: str | None, **more: Any
) -> AuditEvent:
    """The audit event of something ``agency`` (its ``subsystem``) did to ``document``."""
    return AuditEvent(
        action=action,
        member=_member(agency),
        subsystem=subsystem,
        service=SERVICE,
        document=document,
        request_id=request_id,
        **more,
    )


class DocumentHub:
    """One per gateway. ``signer`` is the gateway's ``signing.SigningKey``; ``trust`` its
    ``signing.TrustStore``; ``agencies`` the directory of known agencies (routing)."""

    def __init__(
        self,
        store: Any,
        blobs: BlobStore,
        *,
        organ_id: str,
        agencies: Mapping[str, AgencyRoute],
        trust: Any,
        signer: Any,
        policy: CheckPolicy = CheckPolicy(),  # noqa: B008 - frozen
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.blobs, self.organ_id = store, blobs, organ_id
        self.agencies = dict(agencies)
        self.trust, self.signer, self.policy = trust, signer, policy
        self.on_commit = on_commit  # e.g. wake the outbox worker

    # -- intake ----------------------------------------------------------------------------

    async def _spool(
        self, staging: BlobStore, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[Path, int]:
        """Write the body to a staged blob, hashing as it goes. Raises PayloadTooLarge."""
        writer = await asyncio.to_thread(staging.writer, max_bytes)  # creates a temp file
        try:
            batch: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                batch.append(chunk)
                pending += len(chunk)
                if pending >= _SPOOL_BATCH:
                    # Hashing and writing a megabyte is work: keep it off the event loop.
                    await asyncio.to_thread(writer.write, b"".join(batch))
                    batch, pending = [], 0
            if batch:
                await asyncio.to_thread(writer.write, b"".join(batch))
            ref = await asyncio.to_thread(writer.commit)
        except BaseException:
            # Shielded: a cancelled request still removes its temp file.
            await asyncio.shield(asyncio.to_thread(writer.abort))
            raise
        return ref.path, ref.size

    async def _spool_parts(
        self, staging: BlobStore, parts: AsyncIterator[IncomingPart], budget: int
    ) -> list[AttachmentInfo]:
        out: list[AttachmentInfo] = []
        async for part in parts:
            if len(out) == MAX_PARTS:
                raise PayloadTooLarge(
                    f"more than {MAX_PARTS} attachment parts beside the envelope",
                    max_parts=MAX_PARTS,
                )
            if budget <= 0:
                raise PayloadTooLarge(
                    f"the package is over {self.policy.max_bytes} bytes",
                    max_bytes=self.policy.max_bytes,
                )
            path, size = await self._spool(staging, part.chunks, budget)
            budget -= size
            out.append(
                AttachmentInfo(
                    part.content_id, part.name, part.content_type, part.description, path.name, size
                )
            )
        return out

    async def receive(
        self,
        chunks: AsyncIterator[bytes],
        *,
        sender: str,
        subsystem: str,
        request_id: str | None = None,
        parts: AsyncIterator[IncomingPart] | None = None,
    ) -> Accepted:
        """Accept an edXML package from ``sender`` (the authenticated agency); ``parts`` are the
        attachments of a multipart/related package (the envelope is then ``chunks``).

        Raises PayloadTooLarge, DoctypeForbidden, InvalidEdxml, SignatureInvalid, ForgedSender,
        UnknownRecipient, UnknownDocument (revoke/update/replace of an unknown document),
        DuplicateConflict, BlobError, ReceiptUnsigned.
        """
        staging = await asyncio.to_thread(self.blobs.staging)
        try:
            path, size = await self._spool(staging, chunks, self.policy.max_bytes)
            mime_parts = []
            if parts is not None:
                mime_parts = await self._spool_parts(staging, parts, self.policy.max_bytes - size)
            checked = await check_package(
                path,
                staging,
                sender=sender,
                known_agencies=self.agencies.keys(),
                trust=self.trust,
                policy=self.policy,
                parts=mime_parts,
            )
            pkg = checked.package
            mime_parts = checked.parts  # named as the manifest names them
            existing = await self.store.read(lambda tx: _namesakes(tx, pkg, sender))
            if existing:
                return self._duplicate(existing, checked.scan.sha256, mime_parts)
            # Refuse a revoke/update/replace of an unknown document before any blob is kept
            # (the transaction checks again: a concurrent change cannot slip through).
            await self.store.read(lambda tx: self._targets(tx, checked, sender))
            received = _now()
            doc_id = "d" + uuid.uuid4().hex
            receipt = Receipt(
                id=doc_id,
                document_id=pkg.header.document_id,
                sender=sender,
                recipients=tuple(dict.fromkeys(t.organ_id for t in pkg.header.to)),
                received_at=received,
                package_sha256=checked.scan.sha256,
                package_size=checked.scan.size,
                attachments=pkg.attachments,
                trace=TraceHeader(self.organ_id, received),
            )
            signed = await sign_receipt(build_receipt(receipt), self.signer)
            forwarded = await asyncio.to_thread(forward_copy, checked.scan, receipt.trace, staging)
            await asyncio.to_thread(self.blobs.adopt, staging)
            outcome: Accepted = await self.store.transact(
                lambda tx: self._accept(
                    tx,
                    checked,
                    receipt,
                    signed,
                    subsystem,
                    request_id,
                    mime_parts,
                    forwarded.sha256 if forwarded else None,
                )
            )
        finally:
            await asyncio.to_thread(staging.discard)
        if self.on_commit is not None and not outcome.duplicate:
            self.on_commit()
        return outcome

    async def sweep(self, older_than_s: float = ORPHAN_AGE_S) -> list[str]:
        """Delete the blobs no row names that nothing has written or adopted for
        ``older_than_s`` (those of intakes whose transaction failed); return their digests.

        Between listing and deleting, the store is asked twice: before the blobs go to the
        trash and once they are there, so that a row committed meanwhile gets its blob back.
        Raises BlobError, StoreError.
        """
        stale = await asyncio.to_thread(self.blobs.stale, older_than_s)
        orphans = await self.store.read(lambda tx: _unnamed(tx, stale))
        held = await asyncio.to_thread(self.blobs.quarantine, orphans, older_than_s)
        still = set(await self.store.read(lambda tx: _unnamed(tx, held)))
        keep = [d for d in held if d not in still]
        return await asyncio.to_thread(self.blobs.purge, held, keep=keep)

    async def refile_document_ids(self) -> int:
        """Put the rows an earlier version filed under the sender's spelling of a DocumentId
        (``…,30/10/2020,…``, ``…,2020/1/5,…``) under its normal form, which this version files
        and looks up by; return how many moved. Run once the store is open, before packages are
        taken. A row whose normal form another document of its kind holds already (one document
        accepted twice under two spellings, as earlier versions allowed) keeps its spelling: the
        DocumentId then names the other, and this one is still answered by its hub id.
        Raises StoreError."""

        def unit(tx: Tx) -> tuple[int, list[dict[str, Any]]]:
            moved, kept = 0, []
            for row in tx.all("documents.unfiled"):
                normal = normal_document_id(row["document_id"])
                if normal == row["document_id"]:
                    continue  # no date where the form puts it: from before DocumentIds were checked
                if tx.all(
                    "documents.by_key",
                    sender=row["sender"],
                    document_id=normal,
                    doc_type=row["doc_type"],
                ):
                    kept.append(row)
                    continue
                moved += tx.execute(
                    "documents.refile", id=row["id"], document_id=normal, was=row["document_id"]
                )
            return moved, kept

        moved: int
        kept: list[dict[str, Any]]
        moved, kept = await self.store.transact(unit)
        for row in kept:
            log.warning(
                "document %s keeps DocumentId %s as sent: another document holds %s",
                row["id"],
                row["document_id"],
                normal_document_id(row["document_id"]),
            )
        return moved

    def _duplicate(
        self, rows: list[dict[str, Any]], sha256: str, parts: list[AttachmentInfo]
    ) -> Accepted:
        """The original receipt for the same package sent again; DuplicateConflict if the
        DocumentId came before (``rows``, see _namesakes) with other content. A multipart/related
        package is the same only if its envelope and every part are (what the recipient gets of
        each part: its Content-ID, name, type and bytes, in order): the envelope's signature
        covers no part."""
        wanted = [_part_key(msgspec.to_builtins(p)) for p in parts]
        for row in rows:
            stored = msgspec.json.decode(row["meta"]).get("parts") or []
            if row["package_sha256"] == sha256 and [_part_key(p) for p in stored] == wanted:
                return Accepted(row["id"], bytes(row["receipt"]), duplicate=True)
        raise _conflict(rows[0])

    def _accept(
        self,
        tx: Tx,
        checked: Checked,
        receipt: Receipt,
        signed: bytes,
        subsystem: str,
        request_id: str | None,
        mime_parts: list[AttachmentInfo],
        forward_sha256: str | None,
    ) -> Accepted:
        pkg = checked.package
        business = pkg.trace.business
        sender = receipt.sender
        target, replaced = self._targets(tx, checked, sender)
        meta = {
            "attachments": [msgspec.to_builtins(a) for a in pkg.attachments],
            "signature": checked.signature.as_dict() if checked.signature else None,
            "pdfs": checked.pdf_reports,
            "recipients": list(receipt.recipients),
            # multipart/related: the stored package is the envelope; these parts go beside it.
            "parts": [msgspec.to_builtins(a) for a in mime_parts],
        }
        inserted = tx.execute(
            "documents.insert",
            id=receipt.id,
            # Filed, looked up and shown in the spec's form; the receipt names it as sent.
            document_id=normal_document_id(pkg.header.document_id),
            sender=sender,
            doc_type=pkg.doc_type,
            package_sha256=receipt.package_sha256,
            forward_sha256=forward_sha256,
            size=receipt.package_size,
            media_type="multipart/related" if mime_parts else "application/xml",
            subject=pkg.header.subject,
            target=target,
            received_at=_iso(receipt.received_at),
            receipt=signed,
            meta=msgspec.json.encode(meta, enc_hook=str).decode(),  # pyHanko strings
        )
        if inserted == 0:  # the same package raced in on another request
            return self._duplicate(_namesakes(tx, pkg, sender), receipt.package_sha256, mime_parts)
        if target is not None:
            self._request_recall(tx, target, business.reason if business else "", receipt)
        for original_id in replaced:
            tx.execute("documents.mark_replaced", id=original_id, by=receipt.id)
        for recipient in receipt.recipients:
            route = self.agencies[recipient]
            mode = "push" if route.endpoint else "pull"
            tx.execute(
                "documents.add_delivery", document=receipt.id, recipient=recipient, mode=mode
            )
            if mode == "push":
                enqueue(
                    tx,
                    kind=PUSH_KIND,
                    key=f"{PUSH_KIND}:{receipt.id}:{recipient}",
                    payload={"document": receipt.id, "recipient": recipient},
                    document=receipt.id,
                )
        audit_append(
            tx,
            _event(
                "document.accepted",
                sender,
                subsystem,
                receipt.id,
                request_id,
                reference=receipt.document_id,
                digests={
                    "package": receipt.package_sha256,
                    **{f"attachment:{a.content_id}": a.sha256 for a in pkg.attachments},
                },
                detail=f"BussinessDocType {pkg.doc_type} to {', '.join(receipt.recipients)}",
            ),
        )
        # The table's key holds the type (a revoke or update names its original's DocumentId),
        # so a new and a replacing document of one DocumentId racing in both pass the insert.
        # Look again now, last: on PostgreSQL this transaction holds the audit turn by now
        # (every accept takes it, until it ends), so the later of the two sees the earlier
        # (SQLite has one writer). Raising undoes the whole transaction.
        others = [r for r in _namesakes(tx, pkg, sender) if r["id"] != receipt.id]
        if others:
            raise _conflict(others[0])
        return Accepted(receipt.id, signed)

    @staticmethod
    def _targets(tx: Tx, checked: Checked, sender: str) -> tuple[str | None, list[str]]:
        """The document a revoke/update acts on and the documents a replacement replaces (hub
        ids), all the sender's own. Raises UnknownDocument; InvalidEdxml for a revoke or update
        addressed to an agency the original did not go to."""
        pkg = checked.package
        business = pkg.trace.business
        target: str | None = None
        if pkg.doc_type in (1, 2):
            acted_on = (business.document_id if business else "") or pkg.header.document_id
            original = tx.one(
                "documents.originals", sender=sender, document_id=normal_document_id(acted_on)
            )
            if original is None:
                raise UnknownDocument(
                    f"no document {acted_on} from {sender} to revoke or update",
                    document_id=acted_on,
                )
            target = original["id"]
            had = {d["recipient"] for d in tx.all("documents.deliveries", document=target)}
            strangers = sorted({t.organ_id for t in pkg.header.to} - had)
            if strangers:
                # A recall goes to those who have the document: one sent elsewhere would ask
                # agencies that never had it, and leave those that have it waiting for it.
                raise InvalidEdxml(
                    f"{acted_on} was not sent to {', '.join(strangers)}: a revoke or update goes "
                    f"to the original's recipients ({', '.join(sorted(had))})",
                    field="MessageHeader/To",
                )
        replaced = []
        if pkg.doc_type == 3 and business is not None:
            for rep in business.replacements:
                original = tx.one(
                    "documents.originals",
                    sender=sender,
                    document_id=normal_document_id(rep.document_id),
                )
                if original is None:
                    raise UnknownDocument(
                        f"no document {rep.document_id} from {sender} to replace",
                        document_id=rep.document_id,
                    )
                replaced.append(str(original["id"]))
        return target, replaced

    def _request_recall(self, tx: Tx, target: str, reason: str, receipt: Receipt) -> None:
        """Revoke/update: record 13 for each recipient of the original that the revoke or update
        is addressed to (and so receives) and whose chain allows it."""
        for d in tx.all("documents.deliveries", document=target):
            if d["recipient"] not in receipt.recipients:
                continue  # not asked: it keeps the document as it was
            # The recipient's own statuses wait meanwhile (see record_status).
            tx.one("documents.lock_delivery", document=target, recipient=d["recipient"])
            history = [
                r["code"]
                for r in tx.all(
                    "documents.recipient_history", document=target, recipient=d["recipient"]
                )
            ]
            try:
                advance(history, "13")
            except StatusTransitionError:
                continue  # refused, already recalled, or a recall pending: nothing to ask
            tx.execute(
                "documents.add_status",
                document=target,
                recipient=d["recipient"],
                code="13",
                description=reason or f"requested by {receipt.document_id}",
                staff="",
                at=_iso(receipt.received_at),
                recorded_at=_iso(receipt.received_at),
                message_sha256=receipt.package_sha256,
            )

    # -- statuses --------------------------------------------------------------------------

    async def record_status(
        self,
        doc_id: str,
        chunks: AsyncIterator[bytes],
        *,
        sender: str,
        subsystem: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """A recipient's edXML status message for document ``doc_id``; returns its history.

        Raises UnknownDocument (no such document, or ``sender`` is not a recipient),
        NotDelivered (the recipient never received it), StatusTransitionError, InvalidEdxml,
        SignatureInvalid, ForgedSender, PayloadTooLarge, DoctypeForbidden.
        """
        staging = await asyncio.to_thread(self.blobs.staging)
        try:
            path, _ = await self._spool(staging, chunks, min(self.policy.max_bytes, 8 << 20))
            checked = await check_status(path, sender=sender, trust=self.trust, policy=self.policy)
            st = checked.status
            message_sha = path.name
            # Refuse before the message's blob is kept (the transaction checks again: a
            # concurrent status cannot slip through).
            _, history, again = await self.store.read(
                lambda tx: self._answerable(tx, doc_id, st, sender, message_sha)
            )
            if again:
                return {"recipient": sender, "history": history, "repeated": True}
            await asyncio.to_thread(self.blobs.adopt, staging)
            now = _now()

            def unit(tx: Tx) -> dict[str, Any]:
                # Units adding to one recipient's history take turns (the check below, then the
                # insert): two that both read it before either inserted would both record,
                # the same message twice or a step back (PostgreSQL runs units side by side).
                tx.one("documents.lock_delivery", document=doc_id, recipient=sender)
                doc, history, again = self._answerable(tx, doc_id, st, sender, message_sha)
                if again:  # the same message raced in on another request
                    return {"recipient": sender, "history": history, "repeated": True}
                tx.execute(
                    "documents.add_status",
                    document=doc_id,
                    recipient=sender,
                    code=st.status_code,
                    description=st.description,
                    staff=st.staff_info.staff,
                    at=_iso(st.timestamp),
                    recorded_at=_iso(now),
                    message_sha256=message_sha,
                )
                origin = self.agencies.get(doc["sender"])
                if origin is not None and origin.endpoint:
                    enqueue(
                        tx,
                        kind=STATUS_PUSH_KIND,
                        key=f"{STATUS_PUSH_KIND}:{message_sha}",
                        payload={
                            "document": doc_id,
                            "recipient": doc["sender"],
                            "message": message_sha,
                        },
                        document=doc_id,
                    )
                audit_append(
                    tx,
                    _event(
                        "document.status",
                        sender,
                        subsystem,
                        doc_id,
                        request_id,
                        reference=st.status_code,
                        digests={"status": message_sha},
                        detail=f"{st.status_code} {MEANINGS[st.status_code]}",
                    ),
                )
                return {"recipient": sender, "history": [*history, st.status_code]}

            result: dict[str, Any] = await self.store.transact(unit)
        finally:
            await asyncio.to_thread(staging.discard)
        if self.on_commit is not None:
            self.on_commit()
        return result

    @staticmethod
    def _answerable(
        tx: Tx, doc_id: str, st: StatusMessage, sender: str, message_sha: str
    ) -> tuple[dict[str, Any], list[str], bool]:
        """The document row, ``sender``'s status history, and whether this very message
        (``message_sha``) is in it already — a client's retry after a lost reply, answered as
        the first time rather than refused as a step back — if ``st`` may be recorded.

        Raises UnknownDocument (no such document, or ``sender`` is not a recipient: asked first,
        so that nobody else learns the document's DocumentId or sender), InvalidEdxml
        (ResponseFor names another DocumentId or another OrganId than the document's sender),
        NotDelivered, StatusTransitionError."""
        doc = tx.one("documents.get", id=doc_id)
        # One answer whether the document does not exist or is not theirs: nobody else learns
        # that it exists.
        if doc is None:
            raise UnknownDocument(f"no document {doc_id} for {sender}")
        delivery = tx.one("documents.delivery", document=doc_id, recipient=sender)
        if delivery is None:
            raise UnknownDocument(f"no document {doc_id} for {sender}")
        # Both sides normalised: a row an earlier version filed as sent, and refile_document_ids
        # could not move (its normal form was taken), is answered all the same.
        if normal_document_id(st.response_for.document_id) != normal_document_id(
            doc["document_id"]
        ):
            raise InvalidEdxml(
                f"ResponseFor/DocumentId {st.response_for.document_id} is not {doc['document_id']}",
                field="ResponseFor/DocumentId",
            )
        if st.response_for.organ_id != doc["sender"]:
            raise InvalidEdxml(
                f"ResponseFor/OrganId {st.response_for.organ_id or '(empty)'} is not the "
                f"document's sender {doc['sender']}",
                field="ResponseFor/OrganId",
            )
        if delivery["state"] == "pending":
            raise NotDelivered(f"{doc_id} was never delivered to {sender}")
        if st.status_code == "13":
            raise StatusTransitionError(
                "13 (recall requested) comes from the sender's revoke or update package",
                current=None,
                requested="13",
            )
        rows = tx.all("documents.recipient_history", document=doc_id, recipient=sender)
        history = [r["code"] for r in rows]
        if any(r["message_sha256"] == message_sha for r in rows):
            return doc, history, True
        advance(history, st.status_code)
        times = [(r["code"], datetime.fromisoformat(r["at"])) for r in rows]
        _in_time(
            st.timestamp,
            datetime.fromisoformat(doc["received_at"]),
            [at for code, at in times if code != "13"],
            # The 13 a 15 or 16 answers: the last (advance allows them only while one is pending).
            max((at for code, at in times if code == "13"), default=None)
            if st.status_code in ("15", "16")
            else None,
        )
        return doc, history, False

    async def statuses(self, doc_id: str, agency: str) -> dict[str, Any]:
        """Per-recipient delivery and status history. The sender sees every recipient, a
        recipient only itself. Raises UnknownDocument."""

        def unit(tx: Tx) -> dict[str, Any]:
            doc = tx.one("documents.get", id=doc_id)
            if doc is None:  # said as when it is not theirs: nobody else learns it exists
                raise UnknownDocument(f"no document {doc_id} for {agency}")
            deliveries = tx.all("documents.deliveries", document=doc_id)
            if doc["sender"] != agency:
                deliveries = [d for d in deliveries if d["recipient"] == agency]
                if not deliveries:
                    raise UnknownDocument(f"no document {doc_id} for {agency}")
            history = tx.all("documents.history", document=doc_id)
            out = []
            for d in deliveries:
                mine = [h for h in history if h["recipient"] == d["recipient"]]
                state = replay(h["code"] for h in mine)
                out.append(
                    {
                        "recipient": d["recipient"],
                        "delivery": d["state"],
                        "mode": d["mode"],
                        "attempts": d["attempts"],
                        # A failed push's error while it is current: not once the delivery
                        # is acked (a later push went, or the agency pulled and acked).
                        "last_error": d["last_error"] if d["state"] != "acked" else None,
                        "delivered_at": d["delivered_at"],
                        "acked_at": d["acked_at"],
                        "status": state.last,
                        "history": [
                            {
                                "code": h["code"],
                                "meaning": MEANINGS.get(h["code"], ""),
                                "description": h["description"],
                                "staff": h["staff"],
                                "at": h["at"],
                                "recorded_at": h["recorded_at"],
                            }
                            for h in mine
                        ],
                    }
                )
            signature = msgspec.json.decode(doc["meta"]).get("signature") or {}
            return {
                "id": doc_id,
                "document_id": doc["document_id"],
                "from": doc["sender"],
                "doc_type": doc["doc_type"],
                "replaced_by": doc["replaced_by"],
                # Who signed the envelope, and what in it is weak (RSA-SHA1, SHA-1 digests,
                # C14N 1.0: verified, as older packages need, but flagged, per spec/edxml.md).
                "signature": {
                    "signer": signature.get("signer"),
                    "weaknesses": signature.get("weaknesses") or [],
                },
                "recipients": out,
            }

        result: dict[str, Any] = await self.store.read(unit)
        return result

    # -- pull delivery ---------------------------------------------------------------------

    async def inbox(self, agency: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """``agency``'s documents not acked yet, after the cursor ``after``, ``limit`` at most.
        Each Subject is at most MAX_SUBJECT characters (intake refuses longer ones; one an
        earlier version took is cut, ending "…"): a page stays small."""
        rows = await self.store.read(  # one more than the page tells whether more follow
            lambda tx: tx.all(
                "documents.inbox",
                recipient=agency,
                after=after,
                limit=limit + 1,
                subject_chars=MAX_SUBJECT + 1,
            )
        )
        more, rows = len(rows) > limit, rows[:limit]
        items = [
            {
                "id": r["id"],
                "document_id": r["document_id"],
                "from": r["sender"],
                "received_at": r["received_at"],
                "size": r["size"],
                "doc_type": r["doc_type"],
                "subject": _listed(r["subject"]),
                "cursor": str(r["seq"]),
            }
            for r in rows
        ]
        return {
            "items": items,
            "next": str(rows[-1]["seq"]) if more else None,
        }

    async def fetch(
        self, doc_id: str, agency: str, *, subsystem: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """The stored document row (see ``delivery.package_body``) for its sender or a
        recipient; a recipient's pending delivery becomes ``delivered``. Raises UnknownDocument,
        BlobError (a blob of the package is missing: then nothing is marked delivered)."""

        def seen(tx: Tx) -> dict[str, Any]:
            doc = tx.one("documents.get", id=doc_id)
            if doc is None:  # said as when it is not theirs: nobody else learns it exists
                raise UnknownDocument(f"no document {doc_id} for {agency}")
            if doc["sender"] != agency:
                if tx.one("documents.delivery", document=doc_id, recipient=agency) is None:
                    raise UnknownDocument(f"no document {doc_id} for {agency}")
            return doc

        found: dict[str, Any] = await self.store.read(seen)
        await asyncio.to_thread(self._blobs_present, found)
        if found["sender"] == agency:
            return found  # the sender's own copy: nothing is delivered, nothing to write

        def unit(tx: Tx) -> dict[str, Any]:
            doc = seen(tx)
            if tx.execute(
                "documents.mark_delivered", document=doc_id, recipient=agency, at=_iso(_now())
            ):
                audit_append(
                    tx,
                    _event(
                        "document.delivered",
                        agency,
                        subsystem,
                        doc_id,
                        request_id,
                        digests={"package": doc["package_sha256"]},
                        detail="pulled",
                    ),
                )
            return doc

        doc: dict[str, Any] = await self.store.transact(unit)
        return doc

    def _blobs_present(self, doc: Mapping[str, Any]) -> None:
        """Raise BlobError unless every blob of a stored document is there (its package as
        received, its forwarded copy, its MIME parts): a fetch must not mark delivered what it
        cannot send."""
        wanted = [doc["package_sha256"], doc["forward_sha256"]]
        wanted += [p["sha256"] for p in msgspec.json.decode(doc["meta"]).get("parts", [])]
        missing = [sha for sha in wanted if sha and not self.blobs.exists(sha)]
        if missing:
            log.error("document %s: blob(s) missing from the blob store: %s", doc["id"], missing)
            raise BlobError(f"the stored package of {doc['id']} cannot be read")

    async def ack(
        self, doc_id: str, agency: str, *, subsystem: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """The recipient confirms it has the package (idempotent). Raises UnknownDocument,
        NotDelivered (it never fetched it, nor was it pushed: an ack then would stand for a
        delivery that did not happen, and let its statuses through)."""

        def unit(tx: Tx) -> dict[str, Any]:
            d = tx.one("documents.delivery", document=doc_id, recipient=agency)
            if d is None:
                raise UnknownDocument(f"no document {doc_id} for {agency}")
            if d["state"] == "pending":
                raise NotDelivered(f"{doc_id} was never delivered to {agency}: fetch it first")
            if tx.execute(
                "documents.mark_acked", document=doc_id, recipient=agency, at=_iso(_now())
            ):
                audit_append(
                    tx,
                    _event(
                        "document.acked",
                        agency,
                        subsystem,
                        doc_id,
                        request_id,
                    ),
                )
            row = tx.one("documents.delivery", document=doc_id, recipient=agency)
            assert row is not None
            return {"id": doc_id, "recipient": agency, "delivery": row["state"]}

        result: dict[str, Any] = await self.store.transact(unit)
        return result


def _listed(subject: str) -> str:
    """A Subject as the inbox lists it: at most MAX_SUBJECT characters, cut ending "…"."""
    return subject if len(subject) <= MAX_SUBJECT else subject[: MAX_SUBJECT - 1] + "…"
