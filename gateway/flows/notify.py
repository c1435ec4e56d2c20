"""Telling others a dossier changed: the provincial system's callback and the national portal.

Both are outbox jobs queued in the same transaction as the change (``gateway.dossiers._changed``),
so a notification is never lost and is retried like any delivery. Each carries the dossier's
*current* status document and its ``version``, so a receiver can drop one that arrives late.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import aiohttp
import msgspec

from connectors.api import Connector, PermanentError, TransientError, transient_status
from gateway import dossiers
from gateway.metrics import Metrics
from gateway.outbox import endpoint_of, wait_behind
from gateway.outbox.breaker import Breakers, NotYet, call_registry
from gateway.outbox.jobs import Job
from gateway.outbox.worker import Delivery
from gateway.procedures import flow_of
from gateway.settings import Subsystem, shown_url
from gateway.store import Store, Tx

__all__ = ["CallbackHandler", "PortalSyncHandler", "sign_callback", "verify_callback"]

SIGNATURE_HEADER = "X-Lienthong-Signature"


def sign_callback(secret: bytes, body: bytes, *, at: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` — the timestamp stops replays."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_callback(secret: bytes, body: bytes, header: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver runs: check the MAC and that the timestamp is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(int(time.time()) - t) > tolerance_s:  # in ints: a 400-digit t cannot overflow a float
        return False
    # Compared as bytes: compare_digest refuses a str with non-ASCII characters (TypeError), and a
    # header is whatever the sender put there. surrogatepass: any str encodes.
    expected = sign_callback(secret, body, at=t).encode("ascii")
    return hmac.compare_digest(expected, header.encode("utf-8", "surrogatepass"))


def _noop(tx: Tx) -> None:
    return None


class _Other(NamedTuple):
    """Another job of a dossier, of one kind: the number its key ends with (a callback's or a
    sync's version, a progress record's step index), its state and when it is due."""

    number: int
    state: str
    run_after: float


def _others_of(tx: Tx, job: Job, kind: str) -> list[_Other]:
    return [
        _Other(_number(o["key"]), str(o["state"]), float(o["run_after"]))
        for o in tx.all("outbox.of_dossier", dossier=job.dossier, kind=kind, id=job.id)
    ]


_NO_SYNC_S = (
    5.0  # a progress record with no sync queued yet: one comes with the dossier's next change
)


def _first_unfinished(others: Iterable[_Other], below: int) -> _Other | None:
    """The earliest of ``others`` numbered below ``below`` still to be sent or retried (a dead
    one holds nothing back), or None."""
    waiting = [o for o in others if o.number < below and o.state in ("pending", "running")]
    return min(waiting, default=None)


def _wait_for(other: _Other, job: Job) -> float:
    """How long ``job`` waits for ``other`` (made due at once when ``other`` is done or dead:
    outbox.due_now); ``job.updated_at`` is when it was claimed, on the jobs' clock."""
    return wait_behind(other.state, other.run_after, job.updated_at)


def _then_wake(job: Job, unit: Callable[[Tx], Any]) -> Callable[[Tx], Any]:
    """``unit``, then the next of the dossier's jobs of ``job``'s kind (the first still pending),
    which waits for it, made due now: each wakes the one after it in turn."""

    def run(tx: Tx) -> Any:
        _wake(tx, job)
        _forget(tx, job)
        return unit(tx)

    return run


def _wake(tx: Tx, job: Job) -> None:
    # "Now" is when this attempt was claimed, on the clock of the jobs' times.
    tx.execute("outbox.due_now", dossier=job.dossier, kind=job.kind, now=job.updated_at)


def _forget(tx: Tx, job: Job) -> None:
    """A notification done (sent, or superseded) keeps no copy of the dossier's personal data:
    its payload froze the status document (the child's personal id, the card number) or the
    applicant's id, name and phone, and nothing reads a done job's payload again (superseding
    compares versions and states; only a dead job is replayed). What ``outbox list`` shows of it
    (a progress record's step) is kept. Run in the transaction that marks the job done, after
    it: a job that is not done (its recording failed, its lease was lost) keeps its payload."""
    kept = {"step": job.payload["step"]} if "step" in job.payload else {}
    tx.execute("outbox.forget_payload", id=job.id, payload=msgspec.json.encode(kept).decode())


class CallbackHandler:
    """POSTs the status document to the dossier's ``callback_url``, HMAC-signed with the
    subsystem's ``callback_secret``, if the URL is still under its ``callback_urls`` (checked
    again here: the operator may have narrowed them since the dossier was accepted). Redirects are
    not followed: they could lead anywhere.

    A receiver is another province's system, which the gateway does not control, and its
    callbacks share the outbox's workers with every registry call. So each receiver (scheme, host
    and port) has its own circuit breaker (while it is open, callbacks wait without using
    attempts: a receiver being redeployed does not run them dead) and at most
    ``max_in_flight`` of its callbacks are sent at once (a receiver that hangs holds that many
    workers, not all of them). Either way a callback held back is parked on the receiver's
    circuit (gateway.outbox.worker, "Parking"): it comes back as the receiver answers, not in a
    herd at each reset of the circuit, nor each second. A dossier's callbacks arrive in order:
    one waits while an earlier version is still to be sent (until that one is due again; its
    being done or dead makes the next one due at once), and one sent after a later version was
    (a dead callback an operator replays) is done unsent, "superseded by version N", so a
    receiver never hears an older status after a newer one.
    """

    def __init__(
        self,
        store: Store,
        session: Callable[[], aiohttp.ClientSession],
        subsystems: Mapping[str, Subsystem],
        *,
        timeout_s: float = 10.0,
        breakers: Breakers | None = None,
        max_in_flight: int = 4,
    ) -> None:
        self.store, self._session, self.timeout_s = store, session, timeout_s
        self.subsystems = subsystems
        self.breakers = breakers or Breakers()
        self.max_in_flight = max_in_flight
        self._in_flight: dict[str, int] = {}  # receiver → callbacks being sent (one loop)

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        code = str(job.payload["code"])
        mine = int(job.payload["version"])

        def load(tx: Tx) -> tuple[str | None, str, bytes, list[_Other]]:
            row = tx.one("dossiers.get", code=code)
            if row is None:
                raise PermanentError("callback", f"dossier {code} does not exist")
            doc = job.payload.get("document")  # frozen when the status changed
            if doc is None:  # a job queued before documents were frozen in its payload
                doc = msgspec.to_builtins(dossiers.view(tx, code))
                doc["version"] = job.payload["version"]
            others = _others_of(tx, job, "callback")
            return row["callback_url"], row["client"], msgspec.json.encode(doc), others

        url, client, body, others = await self.store.read(load)
        if not url:
            return _then_wake(job, _noop)
        # A later version the receiver has already heard: this one, sent now (a dead callback an
        # operator replayed), would arrive after it and tell an older status last.
        sent_later = max(
            (o.number for o in others if o.number > mine and o.state == "done"), default=None
        )
        if sent_later is not None:
            return _then_wake(job, _superseded(job, sent_later))
        subsystem = self.subsystems.get(client)
        if subsystem is None or not subsystem.allows_callback(url):
            raise PermanentError(
                "callback", f"{shown_url(url)} is not under the callback_urls of subsystem {client}"
            )
        if (earlier := _first_unfinished(others, mine)) is not None:
            raise NotYet(
                "callback",
                _wait_for(earlier, job),
                f"an earlier callback of this dossier (version {earlier.number}) is not sent yet",
            )
        receiver = endpoint_of(url)
        breaker = self.breakers.get(f"callback {receiver}")
        if self._in_flight.get(receiver, 0) >= self.max_in_flight:
            # Parked on the receiver (woken by its answers), not looking again every second.
            raise NotYet(
                "callback",
                1.0,
                f"{self.max_in_flight} callbacks to {receiver} in flight",
                circuit=breaker,
            )
        self._in_flight[receiver] = self._in_flight.get(receiver, 0) + 1
        try:  # CircuitOpen (a NotYet) while the receiver is failing
            await breaker.call(lambda: self._post(url, code, body, subsystem))
        finally:
            self._in_flight[receiver] -= 1
        return _then_wake(job, _noop)

    async def _post(self, url: str, code: str, body: bytes, subsystem: Subsystem) -> None:
        """POST the callback. Its errors name the URL as :func:`~gateway.settings.shown_url`
        shows it (its query values ``***``): they are logged, kept in the job's ``last_error`` and
        in audit events for good, and a receiver may take its token in the query."""
        shown = shown_url(url)
        headers = {"Content-Type": "application/json", "X-Lienthong-Dossier": code}
        if subsystem.callback_secret:
            headers[SIGNATURE_HEADER] = sign_callback(subsystem.callback_secret.encode(), body)
        try:
            async with self._session().post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            said = str(exc).replace(url, shown)  # an invalid URL's error is the URL
            raise TransientError("callback", f"{shown}: {type(exc).__name__}: {said}") from None
        if transient_status(status):
            raise TransientError("callback", f"{shown} answered {status}")
        if status >= 400:
            raise PermanentError("callback", f"{shown} refused the callback with {status}")
        if status >= 300:
            raise PermanentError(
                "callback", f"{shown} answered {status}: redirects are not followed"
            )

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
        """The worker's job row and audit event say it all; the dossier is not changed by this.
        A dead callback no longer holds the later ones back: they are due now."""
        if dead:
            _wake(tx, job)


# Gateway status → the portal's TrangThaiHoSo (shared/spec/identifiers.md).
PORTAL_STATUS = {
    "accepted": 2,
    "in_progress": 4,
    "needs_attention": 8,
    "failed": 8,
    "completed": 10,
}


class _PortalJob:
    """What the portal's job handlers share: the portal is a registry like the others (its own
    circuit, its calls counted and timed), and an outage of it does not change the dossier (the
    dead letter is replayable)."""

    def __init__(
        self,
        portal: Connector,
        store: Store,
        breakers: Breakers | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.portal, self.store, self.metrics = portal, store, metrics
        self.breaker = (breakers or Breakers()).get("portal")

    async def _others(self, job: Job, *kinds: str) -> list[list[_Other]]:
        """For each of ``kinds``, the dossier's other jobs of that kind."""

        def read(tx: Tx) -> list[list[_Other]]:
            return [_others_of(tx, job, kind) for kind in kinds]

        found: list[list[_Other]] = await self.store.read(read)
        return found

    async def _send(self, operation: str, params: dict[str, Any], job: Job) -> Callable[[Tx], Any]:
        result = await call_registry(
            self.breaker,
            operation,
            lambda: self.portal.call(operation, params, idempotency_key=job.key),
            self.metrics,
        )
        return lambda tx: result.reference

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
        """Nothing to record beside the job's own row and audit event."""


class PortalSyncHandler(_PortalJob):
    """Synchronises the dossier with the national public-service portal (``dossier.sync``).

    Everything sent comes from the job's payload, frozen when the change was recorded, so every
    attempt under the job's idempotency key sends the same request.

    The portal keeps whichever sync reached it last, and its record carries no version, so the
    syncs of one dossier must reach it in order: a sync that a later change has superseded is
    not sent at all (a retry of an older state, sent after the newer one, left the portal saying
    "in progress" of a completed dossier), and one waits while an earlier one is in flight.

    So a done sync is not always a sent one; the newest of a dossier's syncs is never superseded,
    and is done only once the portal has it (what :class:`PortalProgressHandler` waits for).
    """

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        p = job.payload
        mine = int(p["version"])
        [versions] = await self._others(job, "portal.sync")
        newest = max((o.number for o in versions), default=mine)
        if newest > mine:  # its own sync, queued, retried or sent, carries the newer state
            return _superseded(job, newest)
        if any(o.number < mine and o.state == "running" for o in versions):
            # A wait, not a failed attempt: counted as one, a slow portal ran the newest sync
            # out of attempts before it was ever sent, and the portal kept an older status.
            raise NotYet("portal", 1.0, "an earlier sync of this dossier is still in flight")
        known = flow_of(p["procedure"])
        params = {
            "code": p["code"],
            "procedure": p["procedure"],
            "procedure_name": known[1] if known else p["procedure"],
            "applicant": p["applicant"],
            "status": p["status"],
            "portal_status": PORTAL_STATUS[p["status"]],
            "received_at": p["received_at"],
            "finished_at": p["at"] if p["status"] == "completed" else None,
            "agency": str(p["code"]).split("-", 1)[0],
            "version": p["version"],
        }
        sent = await self._send("dossier.sync", params, job)

        def delivered(tx: Tx) -> Any:
            # The dossier's progress records wait for this (once a minute if a dead sync held
            # them): the first goes now, and wakes the next when it is sent. "Now" is when this
            # attempt was claimed, on the clock of the jobs' times (the worker's; PostgreSQL's,
            # its server's).
            tx.execute(
                "outbox.due_now", dossier=p["code"], kind="portal.progress", now=job.updated_at
            )
            _forget(tx, job)
            return sent(tx)

        return delivered


class PortalProgressHandler(_PortalJob):
    """Sends a step's progress record to the portal (``dossier.progress``, CapNhatTienDoHoSoMC).

    The portal takes progress only for a dossier it has, so the record waits (without using an
    attempt) until the dossier's newest sync is done: being the newest, it was sent, not
    superseded. A done older sync proves nothing: superseded syncs are done unsent, and through
    a portal outage every sync but the newest is superseded and the newest dies — the records
    then went out, died ("dossier not synced"), and replaying the sync did not bring them back.
    While the newest sync is dead they wait for it to be replayed (or for the dossier's next
    change, whose sync supersedes it); its delivery makes the first due at once.

    And they reach the portal in the order of their steps: one waits while an earlier one is
    still to be sent or retried (a dead one no longer holds the rest back).

    A record waits until what it waits for is due again (the sync, the earlier record), not
    looking every second: the sync's delivery (for the first), the earlier record's being done or
    dead, makes it due at once."""

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        syncs, progress = await self._others(job, "portal.sync", "portal.progress")
        newest = max(syncs, default=None)
        if newest is not None and newest.state == "dead":
            # Only an operator's replay or a new change helps: no need to look every second.
            raise NotYet(
                "portal",
                60.0,
                f"the dossier's newest portal sync (version {newest.number}) is dead",
            )
        if newest is None or newest.state != "done":
            raise NotYet(
                "portal",
                _NO_SYNC_S if newest is None else _wait_for(newest, job),
                "the portal does not have the dossier yet (syncing)",
            )
        if (earlier := _first_unfinished(progress, _number(job.key))) is not None:
            raise NotYet(
                "portal",
                _wait_for(earlier, job),
                f"an earlier progress record of this dossier (step {earlier.number}) is not sent",
            )
        return _then_wake(job, await self._send("dossier.progress", dict(job.payload), job))

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
        """A dead record no longer holds the later ones back: they are due now."""
        if dead:
            _wake(tx, job)


def _superseded(job: Job, version: int) -> Callable[[Tx], Delivery]:
    """The recording of a notification done without being sent: a newer one carries the news."""
    not_sent = Delivery(
        detail=f"attempt {job.attempts}: not sent, superseded by version {version}", superseded=True
    )

    def done(tx: Tx) -> Delivery:
        _forget(tx, job)
        return not_sent

    return done


def _number(key: str) -> int:
    """The number a dossier's job key ends with: ``<code>/portal/<version>``,
    ``<code>/progress/<step index>``."""
    return int(key.rsplit("/", 1)[1])
