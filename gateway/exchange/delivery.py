"""Push delivery through the outbox: packages to recipients, status messages back to senders.

One handler per job kind (``document.push``, ``document.status.push``). The package is streamed
from its blob file (aiohttp reads file bodies off the loop). A 2xx answer marks the delivery
``acked`` in the same transaction that closes the job; 408/425/429/5xx and network errors are
retried by the outbox's policy; any other 4xx is permanent (dead letter, an operator replays it).

As for dossier callbacks: one agency gets one document's messages in the order they were queued
(a push waits, without using an attempt, while an earlier one to the same agency about the same
document is still to be sent or retried; a dead one, replayed after a later one was sent, is
done unsent), and each agency endpoint has its own circuit breaker, under which its pushes wait
without using attempts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp.payload import BufferedReaderPayload

from connectors.api import PermanentError, TransientError, transient_status
from gateway.exchange.blobs import BlobStore
from gateway.exchange.hub import PUSH_KIND, STATUS_PUSH_KIND, AgencyRoute
from gateway.outbox import (
    Breakers,
    Delivery,
    Job,
    NotYet,
    after_giving_up,
    endpoint_of,
    wait_behind,
)
from gateway.settings import shown_url
from gateway.store import Row, Tx

__all__ = [
    "MESSAGE_KINDS",
    "PushHandler",
    "attachment_disposition",
    "envelope_sha256",
    "handlers",
    "package_body",
]

# The national axis's message kinds (spec/edxml.md, "Transport"), by the package's
# BussinessDocType (0 new, 1 revoke, 2 update, 3 replace); a status message is ``status``.
MESSAGE_KINDS = {0: "edoc", 1: "revocation", 2: "update", 3: "replacement"}


def envelope_sha256(doc: Mapping[str, Any], *, original: bool = False) -> str:
    """The forwarded copy (with the hub's TraceHeader) unless ``original`` is asked for."""
    forwarded = doc.get("forward_sha256")
    return str(doc["package_sha256"] if original or not forwarded else forwarded)


def package_body(
    doc: Mapping[str, Any], blobs: BlobStore, *, original: bool = False
) -> tuple[Any, str]:
    """What to send for a stored document: ``(body, content type)``. An application/xml package
    is its blob file (opened; aiohttp streams and closes it); a multipart/related one is rebuilt
    from the envelope and its parts, each streamed from its blob. Raises FileNotFoundError."""
    envelope = blobs.path(envelope_sha256(doc, original=original)).open("rb")
    if doc["media_type"] != "multipart/related":
        return envelope, "application/xml"
    parts = msgspec.json.decode(doc["meta"])["parts"]
    writer = aiohttp.MultipartWriter("related")
    # filename=None: aiohttp would otherwise name each part after its file, here the blob's
    # digest, and call the envelope an attachment.
    writer.append_payload(
        BufferedReaderPayload(
            envelope,
            filename=None,
            headers={"Content-Type": "application/xml", "Content-ID": "<edxml>"},
        )
    )
    for p in parts:
        writer.append_payload(
            BufferedReaderPayload(
                blobs.path(p["sha256"]).open("rb"),
                filename=None,
                headers={
                    "Content-Type": p["content_type"],
                    "Content-ID": f"<{p['content_id'].removeprefix('cid:')}>",
                    "Content-Disposition": attachment_disposition(p["name"]),
                },
            )
        )
    content_type = (
        f'multipart/related; type="application/xml"; start="<edxml>"; boundary={writer.boundary}'
    )
    return writer, content_type


# What aiohttp refuses in a header (RFC 9110 5.5, RFC 9112 4: a C0 but HTAB, or DEL): it raises
# ValueError as it writes the request. The hub refuses such a DocumentId at intake; one accepted
# before still fails its push, permanently and with a reason, and sends nothing.
_NOT_IN_HEADERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _unsendable(headers: Mapping[str, str]) -> str | None:
    """Why ``headers`` cannot be sent (the first that holds what no header carries), or None."""
    for name, value in headers.items():
        if (found := _NOT_IN_HEADERS.search(value)) is not None:
            return f"{name} would hold the control character U+{ord(found.group()):04X}"
    return None


# RFC 8187's attr-char beside letters and digits (quote() keeps "_.-~" itself).
_ATTR_CHARS = "!#$&+^`|"


def attachment_disposition(name: str) -> str:
    """``Content-Disposition`` of an attachment part named ``name``, as MIME readers decode it: a
    quoted ``filename`` for a printable ASCII name, else ``filename*=UTF-8''…`` (RFC 2231/6266).
    (aiohttp's own percent-encodes into a plain ``filename="C%C3%B4ng…"``, which no reader
    decodes back.) An attachment without a name is ``attachment`` alone."""
    if not name:
        return "attachment"
    if name.isascii() and name.isprintable():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'attachment; filename="{quoted}"'
    return "attachment; filename*=UTF-8''" + quote(name, safe=_ATTR_CHARS)


class PushHandler:
    """Delivers ``document.push`` (package → recipient) or ``document.status.push`` (status
    message → the document's sender) jobs."""

    def __init__(
        self,
        store: Any,
        blobs: BlobStore,
        agencies: Mapping[str, AgencyRoute],
        session: Callable[[], aiohttp.ClientSession],
        *,
        kind: str = PUSH_KIND,
        timeout_s: float = 120.0,
        breakers: Breakers | None = None,
    ) -> None:
        self.store, self.blobs, self.agencies = store, blobs, dict(agencies)
        self._session, self.kind, self.timeout_s = session, kind, timeout_s
        self.breakers = breakers or Breakers()

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        doc_id = str(job.payload["document"])
        recipient = str(job.payload["recipient"])
        route = self.agencies.get(recipient)
        if route is None or not route.endpoint:
            raise PermanentError("documents", f"agency {recipient} has no push endpoint")
        doc, earlier, sent_later = await self.store.read(
            lambda tx: self._load(tx, job, doc_id, recipient)
        )
        if doc is None:
            raise PermanentError("documents", f"document {doc_id} does not exist")
        root = str(doc["target"] or doc_id)
        status = self.kind == STATUS_PUSH_KIND
        if sent_later is not None:
            # A dead push an operator replayed after later ones went out: sent now, it would
            # arrive after them (the sender's system told 01 after 06, a document after its
            # revoke). The later ones carry the news; this one is done unsent, as callbacks are.
            service = "documents/status" if status else "documents/push"
            return _superseded(job, doc_id, root, sent_later, service)
        if earlier is not None:
            # One agency gets one document's messages in the order they were queued: a status
            # retried after a 503 must not arrive after the later ones (06 before 01), nor a
            # revoke before the document it revokes. A dead push no longer holds the rest back.
            raise NotYet(
                "documents",
                wait_behind(str(earlier["state"]), float(earlier["run_after"]), job.updated_at),
                f"an earlier push of {doc_id} to {recipient} is not sent yet",
            )
        sha = str(job.payload["message"]) if status else doc["package_sha256"]
        headers = {
            "X-Lienthong-Document": doc_id,
            "X-Lienthong-Document-Id": doc["document_id"],
            "X-Lienthong-Kind": "status" if status else MESSAGE_KINDS[int(doc["doc_type"])],
        }
        if route.token:
            headers["Authorization"] = f"Bearer {route.token}"
        if (why := _unsendable(headers)) is not None:
            # Before the breaker: nothing is sent, and it says nothing of the endpoint.
            what = "status message" if status else "package"
            raise PermanentError(
                "documents",
                f"{why}, which no HTTP header can carry: the {what} of {doc_id} "
                f"({doc['document_id']!r}) cannot be pushed"
                + ("" if status else f"; {recipient} can fetch it from its inbox"),
            )
        # While the agency's endpoint is failing, its pushes wait without using attempts
        # (CircuitOpen is a NotYet), as callbacks do: an agency down for a redeploy gets them
        # when it is back instead of dead letters.
        breaker = self.breakers.get(f"documents {endpoint_of(route.endpoint)}")
        breaker.before_call()
        try:
            if status:
                body: Any = await asyncio.to_thread(self.blobs.path(sha).open, "rb")
                headers["Content-Type"] = "application/xml"
            else:
                body, headers["Content-Type"] = await asyncio.to_thread(
                    package_body, doc, self.blobs
                )
        except FileNotFoundError:
            breaker.release()  # ours, not the agency's
            raise PermanentError("documents", f"blob {sha} of {doc_id} is missing") from None
        except BaseException:
            breaker.release()
            raise
        try:
            await self._post(route.endpoint, body, headers)
        except ValueError as exc:
            # aiohttp could not write the request (a header it refuses): nothing reached the
            # endpoint, and the same request would fail the same way at every attempt.
            breaker.release()
            await _close(body)
            raise PermanentError(
                "documents",
                f"the push of {doc_id} to {shown_url(route.endpoint)} cannot be sent: {exc}",
            ) from None
        except BaseException as exc:
            breaker.record(exc)
            raise
        breaker.record(None)
        if status:

            def sent(tx: Tx) -> Delivery:
                _wake(tx, job, doc_id, root)
                return Delivery(
                    reference=doc_id, service="documents/status", digests={"status": sha}
                )

            return sent

        def record(tx: Tx) -> Delivery:
            _wake(tx, job, doc_id, root)
            tx.execute(
                "documents.mark_acked",
                document=doc_id,
                recipient=recipient,
                at=datetime.now(UTC).isoformat(timespec="microseconds"),
            )
            return Delivery(reference=doc_id, service="documents/push", digests={"package": sha})

        return record

    @staticmethod
    def _load(
        tx: Tx, job: Job, doc_id: str, recipient: str
    ) -> tuple[dict[str, Any] | None, Row | None, int | None]:
        """The document row; the first push queued before ``job`` to the same agency about the
        same document (or the one it revokes or updates, or another revoke or update of that
        one) still to be sent or retried, if any; and the last push queued after ``job`` to the
        same agency about them that is done, if any."""
        doc = tx.one("documents.get", id=doc_id)
        if doc is None:
            return None, None, None
        root = doc["target"] or doc_id

        def to_recipient(row: Row) -> bool:
            return bool(msgspec.json.decode(row["payload"]).get("recipient") == recipient)

        before = tx.all("documents.pushes_before", id=job.id, document=doc_id, root=root)
        earlier = next(filter(to_recipient, before), None)
        # Done later pushes are looked for only for a push that has failed before (its last
        # error is kept through retries, waits and a replay), not with an index for every push:
        # a later push waits while this one is pending or running, so it is done before this one
        # only if this one was dead when it went — and a dead job has its error. So the common
        # push asks nothing, and a failed one reads the jobs queued since it (done jobs are kept
        # for ever, and neither outbox_jobs.document nor documents.target has an index).
        if job.last_error is None:
            return doc, earlier, None
        after = tx.all("documents.pushes_after", id=job.id, document=doc_id, root=root)
        done = [int(row["id"]) for row in after if row["state"] == "done" and to_recipient(row)]
        return doc, earlier, max(done, default=None)

    async def _post(self, endpoint: str, body: Any, headers: dict[str, str]) -> None:
        """POST one message. Raises TransientError (no answer, 408/425/429/5xx) or
        PermanentError (a redirect, another 4xx).

        The errors name the endpoint as :func:`~gateway.settings.shown_url` shows it (its query
        values ``***``): they are logged, audited for good and shown to the document's sender,
        another agency, and an endpoint may take its key in the query (``?apikey=…``)."""
        shown = shown_url(endpoint)
        try:
            async with self._session().post(
                endpoint,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                # An agency's endpoint is configured: a redirect would send the package (and its
                # bearer token, within the origin) somewhere nobody configured.
                allow_redirects=False,
            ) as resp:
                code = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError("documents", f"{shown}: {type(exc).__name__}") from None
        if transient_status(code):
            raise TransientError("documents", f"{shown} answered {code}")
        if 300 <= code < 400:
            raise PermanentError("documents", f"{shown} redirected the package ({code})")
        if code >= 400:
            raise PermanentError("documents", f"{shown} refused the package with {code}")

    def failed(
        self,
        tx: Tx,
        job: Job,
        error: BaseException,
        *,
        dead: bool,
        retry_in: float | None,
        given_up: str | None = None,
    ) -> None:
        if dead:  # it holds nothing back any more
            doc = tx.one("documents.get", id=str(job.payload["document"]))
            if doc is not None:
                _wake(tx, job, doc["id"], str(doc["target"] or doc["id"]))
        if self.kind == PUSH_KIND:
            # Shown to the sender: a push given up for its time of failing says so first.
            said = f"{type(error).__name__}: {error}"
            tx.execute(
                "documents.delivery_failed",
                document=str(job.payload["document"]),
                recipient=str(job.payload["recipient"]),
                error=(said if given_up is None else after_giving_up(given_up, said))[:500],
            )


async def _close(body: Any) -> None:
    """Close a body that was not sent (a file, or a multipart writer of files)."""
    done = body.close()
    if asyncio.iscoroutine(done):
        await done


def _superseded(
    job: Job, doc_id: str, root: str, push: int, service: str
) -> Callable[[Tx], Delivery]:
    """The recording of a push done without being sent: push ``push``, queued later, went out."""

    def not_sent(tx: Tx) -> Delivery:
        _wake(tx, job, doc_id, root)  # what waits behind it
        return Delivery(
            reference=doc_id,
            service=service,
            detail=f"attempt {job.attempts}: not sent, superseded by push {push}",
            superseded=True,
        )

    return not_sent


def _wake(tx: Tx, job: Job, doc_id: str, root: str) -> None:
    """The pushes waiting behind ``job`` (about ``doc_id`` or ``root``) made due now: it is done
    or dead. "Now" is when it was claimed, on the clock of the jobs' times."""
    tx.execute("documents.pushes_due_now", document=doc_id, root=root, now=job.updated_at)


def handlers(
    store: Any,
    blobs: BlobStore,
    agencies: Mapping[str, AgencyRoute],
    session: Callable[[], aiohttp.ClientSession],
    *,
    breakers: Breakers | None = None,
    timeout_s: float = 120.0,
) -> dict[str, PushHandler]:
    """The job handlers the outbox worker needs for document exchange, by kind. Both share
    ``breakers`` (one breaker per agency endpoint, whichever kind of message goes to it)."""
    breakers = breakers or Breakers()
    return {
        kind: PushHandler(
            store, blobs, agencies, session, kind=kind, timeout_s=timeout_s, breakers=breakers
        )
        for kind in (PUSH_KIND, STATUS_PUSH_KIND)
    }
