"""Outbox jobs: enqueued inside the caller's transaction, read and replayed by operators.

Every function here takes a :class:`~gateway.store.Tx`, so it joins the caller's unit of work: a
dossier, its first job and its audit event commit together or not at all.
"""

from __future__ import annotations

import time
from typing import Any, Final, Literal

import msgspec

from gateway.audit import Actor, AuditEvent, append
from gateway.store import Row, Tx

from .errors import JobNotFound, NotDead

__all__ = [
    "STATES",
    "UNFINISHED",
    "Job",
    "JobState",
    "counts",
    "depth",
    "enqueue",
    "get_job",
    "list_jobs",
    "replay",
]

JobState = Literal["pending", "running", "done", "dead"]
STATES: Final = ("pending", "running", "done", "dead")


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One durable unit of delivery. ``attempts`` counts claims, including the one in progress."""

    id: int
    kind: str
    key: str  # unique; the idempotency key sent to the registry
    payload: dict[str, Any]
    dossier: str | None
    document: str | None
    state: str  # one of STATES
    attempts: int
    run_after: float
    last_error: str | None
    created_at: float
    updated_at: float
    owner: str | None = None  # "<worker>/<claim token>" while running
    lease_until: float | None = None


_encode = msgspec.json.Encoder(order="sorted").encode
_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def job_from_row(row: Row) -> Job:
    """Build a :class:`Job` from an ``outbox.*`` row (payload stored as JSON text)."""
    raw = row["payload"]
    payload = raw if isinstance(raw, dict) else _decode_payload(raw)
    return Job(
        id=row["id"],
        kind=row["kind"],
        key=row["key"],
        payload=payload,
        dossier=row["dossier"],
        document=row["document"],
        state=row["state"],
        attempts=row["attempts"],
        run_after=row["run_after"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        owner=row["owner"],
        lease_until=row["lease_until"],
    )


def enqueue(
    tx: Tx,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any],
    dossier: str | None = None,
    document: str | None = None,
    run_after: float | None = None,
    now: float | None = None,
) -> int | None:
    """Add a pending job inside the caller's transaction; return its id.

    Returns None when a job with ``key`` already exists (a repeated submission): the existing job is
    left as it is. Call :meth:`gateway.outbox.Worker.wake` after the transaction commits so the job
    starts at once. Raises :class:`msgspec.EncodeError` if ``payload`` is not JSON-serialisable and
    :class:`~gateway.store.QueryError` on a store failure.

    ``now`` (default: this host's clock) and ``run_after`` (default: ``now``) are read on one
    clock: the job is due ``run_after - now`` seconds after it is queued. SQLite stores them as
    given; PostgreSQL counts from its own clock (see :mod:`gateway.outbox.worker`, Clocks).
    """
    at = time.time() if now is None else now
    rows = tx.all(
        "outbox.enqueue",
        kind=kind,
        key=key,
        payload=_encode(payload).decode(),
        dossier=dossier,
        document=document,
        delay=0.0 if run_after is None else run_after - at,
        now=at,
    )
    return int(rows[0]["id"]) if rows else None


def get_job(tx: Tx, job_id: int) -> Job | None:
    row = tx.one("outbox.get", id=job_id)
    return job_from_row(row) if row is not None else None


def list_jobs(
    tx: Tx, *, state: str | None = None, limit: int = 100, after_id: int = 0
) -> list[Job]:
    """Jobs in id order after ``after_id`` (a cursor: pass the last id you saw), optionally in one
    state. Raises ValueError for an unknown state."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown job state {state!r} (expected one of {', '.join(STATES)})")
    rows = tx.all("outbox.list", state=state, limit=limit, after_id=after_id)
    return [job_from_row(r) for r in rows]


UNFINISHED: Final = ("pending", "running", "dead")


def counts(tx: Tx) -> dict[str, int]:
    """Number of jobs in each state; every state is present, zero when empty. Reads the whole
    table (done jobs are kept): for reports, not for polls (see :func:`depth`)."""
    found = {r["state"]: int(r["n"]) for r in tx.all("outbox.counts")}
    return {s: found.get(s, 0) for s in STATES}


def depth(tx: Tx) -> dict[str, int]:
    """Number of jobs in each state but done, every one present: read from an index, at a cost
    that follows what is queued, not the history."""
    found = {r["state"]: int(r["n"]) for r in tx.all("outbox.unfinished")}
    return {s: found.get(s, 0) for s in UNFINISHED}


def replay(
    tx: Tx,
    job_id: int,
    *,
    actor: Actor | None = None,
    request_id: str | None = None,
    now: float | None = None,
) -> Job:
    """Give a dead job a fresh set of attempts and a fresh time to fail in (``[outbox]
    give_up_after_s`` counts from its next failure): dead → pending, due now (``now`` on SQLite,
    the server's clock on PostgreSQL), attempts 0.

    ``last_error`` is kept until the next attempt so an operator still sees why it died. Appends the
    audit event ``job.replayed`` (by ``actor``, service ``admin``, as the operator's other actions
    are) in the same transaction. Raises
    :class:`JobNotFound` or :class:`NotDead`.
    """
    at = time.time() if now is None else now
    before = get_job(tx, job_id)
    if before is None:
        raise JobNotFound(job_id)
    if before.state != "dead":
        raise NotDead(job_id, before.state)
    if not tx.execute("outbox.replay", id=job_id, now=at):
        # Dead when read, not when updated: another replay or resume took it meanwhile
        # (PostgreSQL, READ COMMITTED). Say the state it is in now.
        now_job = get_job(tx, job_id)
        raise NotDead(job_id, now_job.state if now_job is not None else "gone")
    # Its failing clock starts again at its next failure. (The worker clears it as the job dies;
    # cleared here too, a replay says so itself.)
    tx.execute("outbox.recovered", job=job_id)
    append(
        tx,
        AuditEvent(
            action="job.replayed",
            member=None if actor is None else actor.member,
            subsystem=None if actor is None else actor.subsystem,
            service="admin",
            request_id=request_id,
            dossier=before.dossier,
            document=before.document,
            job=job_id,
            step=step_of(before),
            detail=f"after {before.attempts} attempts; last error: {before.last_error}",
        ),
    )
    after = get_job(tx, job_id)
    assert after is not None  # updated in this very transaction
    return after


def step_of(job: Job) -> str:
    """The step audit events carry: ``payload["step"]`` when the flow set one, else the kind."""
    step = job.payload.get("step")
    return step if isinstance(step, str) else job.kind
