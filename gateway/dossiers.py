"""Dossiers: the units of work that change them, each run inside one store transaction.

Every function here takes a ``tx`` and is called from ``store.transact`` (or ``store.read``), so the
dossier row, its steps, the next outbox job, the notifications and the audit event commit together.
Nothing here does I/O beyond the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.audit import Actor, AuditEvent, append, citizen_hash
from gateway.flows.definitions import FLOWS, Context, Flow, Step
from gateway.models import DossierSummary, DossierView, StepAttempt, StepView
from gateway.outbox.jobs import Job, enqueue, get_job, replay
from gateway.outbox.worker import storable
from gateway.store import Tx

__all__ = [
    "Acceptance",
    "Conflict",
    "NotCorrectable",
    "UnknownDossier",
    "accept",
    "canonical",
    "correct",
    "issued",
    "list_dossiers",
    "resume",
    "step_delivered",
    "step_failed",
    "step_outputs",
    "step_refused",
    "view",
]

_encode = msgspec.json.Encoder(order="sorted").encode
RESUMABLE = ("needs_attention", "failed")
# A step that ended for good: answered, or refused by its registry's verdict (step_refused).
# Neither is run again; only a done step's result is an output later steps build on.
FINISHED = ("done", "refused")


class DossierError(Exception):
    """Base of the dossier-level refusals the API turns into problems."""


class Conflict(DossierError):
    """The same code was accepted before with another body, or from another subsystem."""


class UnknownDossier(DossierError, LookupError):
    pass


class NotCorrectable(DossierError):
    """Only a stopped flow (needs_attention or failed) may be corrected or resumed."""


@dataclass(frozen=True)
class Acceptance:
    code: str
    status: str
    replayed: bool  # True: this exact dossier was already accepted; nothing new was stored


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def canonical(document: Any) -> bytes:
    """Sorted-key JSON: the same dossier always gives the same bytes, whatever key order it came in."""
    return _encode(document)


def step_outputs(steps: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results of a dossier's finished steps (rows of ``dossiers.steps``) by step name: what
    later steps build their requests from."""
    return {
        s["name"]: msgspec.json.decode(s["result"])
        for s in steps
        if s["status"] == "done" and s["result"]
    }


def _keep_request(tx: Tx, code: str, step: Step, idx: int) -> None:
    """Build a write step's request now, from the dossier and the earlier results, and keep it:
    every attempt of the step sends exactly this (see ``step_requests`` in dossiers.sql). A
    request kept already stays. A dossier the request cannot be built from keeps none: the
    attempt builds it again and stops the flow with the reason."""
    if not step.writes or tx.one("dossiers.request", dossier=code, idx=idx) is not None:
        return
    row = tx.one("dossiers.get", code=code)
    assert row is not None
    outputs = step_outputs(tx.all("dossiers.steps", dossier=code))
    try:
        params = step.params(Context(msgspec.json.decode(row["body"]), outputs))
    except Exception:  # reported by the attempt, not by the step before it
        return
    tx.execute("dossiers.keep_request", dossier=code, idx=idx, body=canonical(params))


def _step_job(tx: Tx, code: str, step: Step, idx: int, *, now: str) -> None:
    job_id = enqueue(
        tx,
        kind="flow.step",
        key=f"{code}/{step.name}",
        payload={"index": idx, "step": step.name, "service": f"{step.registry}/{step.operation}"},
        dossier=code,
    )
    if job_id is None:  # the step ran before (a resume): give its job a fresh start instead
        row = tx.one("dossiers.step", dossier=code, idx=idx)
        job_id = row["job_id"] if row else None
    tx.execute("dossiers.step_scheduled", dossier=code, idx=idx, job_id=job_id, now=now)
    _keep_request(tx, code, step, idx)


def _changed(tx: Tx, code: str, status: str, *, now: str) -> None:
    """Record a status change and queue its notifications (callback, portal) through the outbox."""
    tx.execute("dossiers.set_status", code=code, status=status, now=now)
    row = tx.one("dossiers.get", code=code)
    assert row is not None
    version = row["version"]
    if row["callback_url"]:
        # The status document as of this change, frozen: a callback retried after the dossier has
        # moved on must still tell this state (needs_attention, say), under this version.
        document = msgspec.to_builtins(view(tx, code))
        document["version"] = version
        callback = {"code": code, "version": version, "document": document}
        enqueue(
            tx, kind="callback", key=f"{code}/callback/{version}", payload=callback, dossier=code
        )
    # The portal sync is frozen now too: a retry under the same idempotency key must send the
    # same content, however the dossier moves on meanwhile (the portal refuses a key reused).
    filed = msgspec.json.decode(row["body"])
    applicant = filed["applicant"]
    snapshot = {
        "code": code,
        "version": version,
        "procedure": row["procedure"],
        "status": status,
        "at": now,
        # NgayTiepNhan: when the one-stop system received the dossier, not when it reached the
        # gateway (days later after an outage): the portal counts processing times from it.
        "received_at": filed["submitted_at"],
        "applicant": {k: applicant.get(k) for k in ("full_name", "personal_id", "phone")},
    }
    enqueue(tx, kind="portal.sync", key=f"{code}/portal/{version}", payload=snapshot, dossier=code)


def accept(
    tx: Tx,
    *,
    document: dict[str, Any],
    client: str,
    member: str,
    request_id: str,
    citizen_key: bytes,
) -> Acceptance:
    """Store a new dossier with its steps, its first job and an audit event — or recognise a repeat.

    Raises :class:`Conflict` when the code exists with another body or from another subsystem.
    """
    code, flow = document["code"], FLOWS[document["flow"]]
    body = canonical(document)
    digest = hashlib.sha256(body).hexdigest()
    existing = tx.one("dossiers.get", code=code)
    if existing is not None:
        if existing["client"] != client:
            # Said without more: whose it is, and what it holds, are that subsystem's business.
            raise Conflict(f"the dossier code {code} is taken")
        if existing["body_digest"] != digest:
            raise Conflict(f"dossier {code} was already accepted with different content")
        return Acceptance(code, existing["status"], replayed=True)
    now = now_iso()
    tx.execute(
        "dossiers.insert",
        code=code,
        client=client,
        procedure=document["procedure"],
        flow=flow.name,
        body=body,
        digest=digest,
        callback_url=document.get("callback_url"),
        request_id=request_id,
        now=now,
    )
    for idx, step in enumerate(flow.steps):
        tx.execute(
            "dossiers.insert_step",
            dossier=code,
            idx=idx,
            name=step.name,
            registry=step.registry,
            operation=step.operation,
            now=now,
        )
    _step_job(tx, code, flow.steps[0], 0, now=now)
    # Announced like every later state: the portal hears of the dossier when it is received
    # (spec/registries.md §5: every dossier and its progress), and its system gets a callback.
    _changed(tx, code, "accepted", now=now)
    append(
        tx,
        AuditEvent(
            action="dossier.accepted",
            member=member,
            subsystem=client,
            service="dossiers.submit",
            dossier=code,
            citizen=citizen_hash(citizen_key, document["applicant"]["personal_id"]),
            request_id=request_id,
            digests={"body": digest},
            detail=f"flow {flow.name}, procedure {document['procedure']}",
        ),
    )
    others = _named(document)
    others.pop(document["applicant"]["personal_id"], None)  # dossier.accepted names the applicant
    _concerns(
        tx,
        others,
        citizen_key,
        member=member,
        subsystem=client,
        dossier=code,
        request_id=request_id,
    )
    return Acceptance(code, "accepted", replayed=False)


# Who a dossier is about, besides its applicant: each is found by an auditor's search of their id.
_PEOPLE = ("mother", "father", "deceased", "beneficiary")


def _named(document: dict[str, Any]) -> dict[str, list[str]]:
    """Every personal id the dossier names, with the roles it is named in."""
    named: dict[str, list[str]] = {document["applicant"]["personal_id"]: ["applicant"]}
    data = document.get("data") or {}
    for role in _PEOPLE:
        person = data.get(role)
        if isinstance(person, dict) and person.get("personal_id"):
            named.setdefault(str(person["personal_id"]), []).append(role)
    residence = data.get("residence")
    if isinstance(residence, dict) and residence.get("household_head_id"):
        # A birth's child joins their household: the registry's record of it will name them.
        named.setdefault(str(residence["household_head_id"]), []).append("household head")
    return named


def _concerns(
    tx: Tx,
    named: dict[str, list[str]],
    citizen_key: bytes,
    *,
    service: str = "dossiers.submit",
    **who: Any,
) -> None:
    """One ``dossier.concerns`` event per person in ``named``: an event holds one citizen hash,
    and a search by citizen then finds the dossier, and through it each step (audit.query)."""
    for personal_id, roles in named.items():
        append(
            tx,
            AuditEvent(
                action="dossier.concerns",
                service=service,
                citizen=citizen_hash(citizen_key, personal_id),
                detail="names the " + " and the ".join(roles),
                **who,
            ),
        )


def issued(tx: Tx, code: str, personal_id: str, role: str, citizen_key: bytes) -> None:
    """A step's answer issued ``personal_id`` to someone the dossier is about (a newborn): the
    dossier names them from now on, for an auditor's search by that id, as it names its filer's."""
    row = tx.one("dossiers.get", code=code)
    if row is None:
        raise UnknownDossier(code)
    client = row["client"]
    _concerns(
        tx,
        {personal_id: [role]},
        citizen_key,
        member=client.rsplit(":", 1)[0],
        subsystem=client,
        dossier=code,
    )


def _history(tx: Tx, code: str, idx: int, attempt: int, outcome: str, **kw: Any) -> None:
    tx.execute(
        "dossiers.add_history",
        dossier=code,
        idx=idx,
        at=now_iso(),
        attempt=attempt,
        outcome=outcome,
        error=kw.get("error"),
        reference=kw.get("reference"),
    )


def step_delivered(
    tx: Tx, code: str, idx: int, *, attempts: int, data: dict[str, Any], reference: str | None
) -> None:
    """Record a step's result, then schedule the next step or complete the dossier."""
    _step_ended(tx, code, idx, "done", attempts, canonical(data), reference, None)
    _history(tx, code, idx, attempts, "delivered", reference=reference)
    _advance(tx, code, idx, said=reference or "")


def step_refused(
    tx: Tx, code: str, idx: int, *, attempts: int, verdict: dict[str, Any], error: str
) -> None:
    """Record the registry's verdict as a step's outcome (status ``refused``: its code and
    words in ``result`` and ``error``, and in its history), then go on as after an answer: what
    the earlier steps registered stands, and no correction would change a verdict on the merits
    (see ``Step.final_refusal``). The citizen's system is told with the rest of the dossier."""
    error = storable(error, limit=1000)
    _step_ended(tx, code, idx, "refused", attempts, canonical(verdict), None, error)
    _history(tx, code, idx, attempts, "refused", error=error)
    _advance(tx, code, idx, said=f"refused: {error}")


def _step_ended(
    tx: Tx,
    code: str,
    idx: int,
    status: str,
    attempts: int,
    result: Any,
    reference: str | None,
    error: str | None,
) -> None:
    """A step's outcome (``done``, or ``refused`` by a verdict) in its row."""
    tx.execute(
        "dossiers.step_done",
        dossier=code,
        idx=idx,
        status=status,
        attempts=attempts,
        result=result,
        reference=reference,
        error=error,
        now=now_iso(),
    )


def _advance(tx: Tx, code: str, idx: int, *, said: str) -> None:
    """After step ``idx`` ended (done, or refused for good): schedule the next step or complete
    the dossier, and queue the portal's progress record of the step (``said``: its outcome)."""
    row = tx.one("dossiers.get", code=code)
    if row is None:
        raise UnknownDossier(code)
    flow, now = FLOWS[row["flow"]], now_iso()
    steps = tx.all("dossiers.steps", dossier=code)  # the dossier's own list
    names = [s["name"] for s in steps]
    done = idx + 1 == len(names)
    if not done:
        _step_job(tx, code, flow.step(names[idx + 1]), idx + 1, now=now)
        _changed(tx, code, "in_progress", now=now)
    else:
        _changed(tx, code, "completed", now=now)
        refused = [s["name"] for s in steps if s["status"] == "refused"]
        append(
            tx,
            AuditEvent(
                action="dossier.completed",
                dossier=code,
                service="dossiers.submit",
                detail=f"refused by its registry: {', '.join(refused)}" if refused else None,
            ),
        )
    # The portal's progress log (CapNhatTienDoHoSoMC): one record per step ended, frozen now.
    step = flow.step(names[idx])
    progress = {
        "code": code,
        "step": step.name,
        "content": f"{step.name}: {step.registry}/{step.operation}" + (f", {said}" if said else ""),
        "status": "completed" if done else "in_progress",
        "at": now,
    }
    enqueue(
        tx, kind="portal.progress", key=f"{code}/progress/{idx}", payload=progress, dossier=code
    )


def step_failed(
    tx: Tx,
    code: str,
    idx: int,
    *,
    attempts: int,
    error: str,
    dead: bool,
    permanent: bool,
    reference: str | None = None,
) -> None:
    """Record a failed attempt; when it was the last, stop the flow where an operator sees it.

    A permanent refusal (the registry understood and said no) needs a correction: status
    ``needs_attention``. Attempts used up on transient faults: ``failed``. Both can be resumed.
    ``reference``: the registry recorded the step's write before the attempt failed (a birth
    registered, its certificate then refused): shown with the step, and what the step sent is
    corrected no more (see :func:`_registered`).
    ``error`` is kept as the job's own error is (:func:`~gateway.outbox.storable`): a registry's
    page with a NUL in it, which PostgreSQL refuses, left the dossier running for ever.
    """
    now = now_iso()
    error = storable(error, limit=1000)
    status = "failed" if dead else "pending"
    tx.execute(
        "dossiers.step_failed",
        dossier=code,
        idx=idx,
        status=status,
        attempts=attempts,
        error=error,
        reference=reference,
        now=now,
    )
    _history(tx, code, idx, attempts, "dead" if dead else "retry", error=error, reference=reference)
    if dead:
        _changed(tx, code, "needs_attention" if permanent else "failed", now=now)


_RESTARTS = ("resumed", "replayed")


def view(tx: Tx, code: str, *, client: str | None = None) -> DossierView:
    """The status document. ``client`` limits it to that subsystem's own dossiers.

    Raises :class:`UnknownDossier` (also for another subsystem's dossier: its existence is not told).
    """
    row = tx.one("dossiers.get", code=code)
    if row is None or (client is not None and row["client"] != client):
        raise UnknownDossier(code)
    # A step's job counts its attempts from 1 again after each resume (its retry budget starts
    # over); the view counts them across resumes: a resumed entry holds the attempts before it.
    history: dict[int, list[StepAttempt]] = {}
    before: dict[int, int] = {}  # step → attempts made before its last resume
    for h in tx.all("dossiers.history", dossier=code):
        idx, base = h["idx"], before.get(h["idx"], 0)
        if h["outcome"] in _RESTARTS:
            before[idx] = base = base + h["attempt"]
        history.setdefault(idx, []).append(
            StepAttempt(
                at=h["at"],
                attempt=base if h["outcome"] in _RESTARTS else base + h["attempt"],
                outcome=h["outcome"],
                error=h["error"],
                reference=h["reference"],
            )
        )
    steps = []
    for s in tx.all("dossiers.steps", dossier=code):
        entries = history.get(s["idx"], [])
        # Since its last resume, none of the step's attempts has an outcome yet: the count in
        # its row is the one before.
        waiting = bool(entries) and entries[-1].outcome in _RESTARTS
        steps.append(
            StepView(
                name=s["name"],
                registry=s["registry"],
                operation=s["operation"],
                # Pending in its table until an outcome is recorded: running while its job is.
                status="running"
                if s["status"] == "pending" and s["job_state"] == "running"
                else s["status"],
                attempts=before.get(s["idx"], 0) + (0 if waiting else s["attempts"]),
                result=msgspec.json.decode(s["result"]) if s["result"] else None,
                reference=s["reference"],
                error=s["error"],
                history=entries,
            )
        )
    return DossierView(
        code=code,
        procedure=row["procedure"],
        flow=row["flow"],
        status=row["status"],
        steps=steps,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def list_dossiers(
    tx: Tx, *, status: str | None, client: str | None, after: str = "", limit: int = 100
) -> list[DossierSummary]:
    rows = tx.all("dossiers.list_by_status", status=status, client=client, after=after, limit=limit)
    return [DossierSummary(r["code"], r["flow"], r["status"], r["updated_at"]) for r in rows]


def document_of(tx: Tx, code: str) -> dict[str, Any]:
    row = tx.one("dossiers.get", code=code)
    if row is None:
        raise UnknownDossier(code)
    result: dict[str, Any] = msgspec.json.decode(row["body"])
    return result


def _take_turn(tx: Tx) -> None:
    """Wait until every other transaction that appends to the audit log has ended, and make them
    wait for this one: a read after this sees the dossier as the last of them left it, and no
    other correction or resume can change it before this transaction ends.

    The audit head is read under that lock on a store shared by several writers (PostgreSQL's
    READ COMMITTED: see ``lienthong_audit_head`` in its audit.sql); SQLite has one writer, whose
    units never interleave. Corrections and resumes append an event anyway: taking the turn at
    their start only holds it a few reads longer. Without it, two of them read the same row and
    the second to commit overwrote the first (a correction lost, a flow resumed twice).
    """
    tx.one("audit.head")


def correct(
    tx: Tx,
    code: str,
    *,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    actor: Actor,
    reason: str,
    request_id: str,
    citizen_key: bytes,
) -> None:
    """Replace the dossier's document with ``change(document)``: an operator's correction, merged
    onto the document as it stands in this transaction and checked by ``change``, which raises
    what it refuses. Two corrections at once are applied one after the other, neither lost.

    Raises :class:`UnknownDossier`, :class:`NotCorrectable`, or what ``change`` raised.
    """
    _take_turn(tx)
    row = tx.one("dossiers.get", code=code)
    if row is None:
        raise UnknownDossier(code)
    if row["status"] not in RESUMABLE:
        raise NotCorrectable(f"dossier {code} is {row['status']}; only a stopped flow is corrected")
    before = msgspec.json.decode(row["body"])
    after = change(before)
    unanswered = _unanswered(tx, code, stopped_on_a_fault=row["status"] == "failed")
    registered = _registered(tx, code)
    _finished_steps_unchanged(
        tx,
        code,
        FLOWS[row["flow"]],
        before,
        after,
        unanswered=unanswered,
        registered=registered,
    )
    body = canonical(after)
    tx.execute("dossiers.set_body", code=code, body=body, now=now_iso())
    # A kept request the registry has had no chance to hold (its step never ran, or was
    # answered with a refusal) is built again from the corrected dossier when the flow resumes.
    for s in tx.all("dossiers.steps", dossier=code):
        if (
            s["status"] not in FINISHED
            and s["idx"] not in unanswered
            and s["idx"] not in registered
        ):
            tx.execute("dossiers.forget_request", dossier=code, idx=s["idx"])
    append(
        tx,
        AuditEvent(
            action="dossier.corrected",
            member=actor.member,
            subsystem=actor.subsystem,
            service="admin",
            dossier=code,
            request_id=request_id,
            digests={
                "before": hashlib.sha256(row["body"]).hexdigest(),
                "after": hashlib.sha256(body).hexdigest(),
            },
            detail=reason,
        ),
    )
    before_ids = _named(before)
    added = {pid: roles for pid, roles in _named(after).items() if pid not in before_ids}
    _concerns(
        tx,
        added,
        citizen_key,
        service="admin",
        member=actor.member,
        subsystem=actor.subsystem,
        dossier=code,
        request_id=request_id,
    )


def _unanswered(tx: Tx, code: str, *, stopped_on_a_fault: bool) -> set[int]:
    """The steps of a stopped dossier an attempt of which, since the step was last resumed, may
    have reached the registry without its answer reaching the gateway: one that ended in a
    transient fault (a timeout, a reset, a lost reply, a 5xx — every failed attempt that was
    retried: a refusal never is), or the last one, when the flow stopped on such a fault
    (``failed``). Judged by the step's attempts, not by how the flow ended: a refusal after such
    an attempt (a proxy's 403, which the registry never saw) stopped it ``needs_attention``
    while the registry may hold the first request.

    Only since the last resume: the resumed attempts send the same request again, and their
    answer is what the operator corrects by. Counting older attempts would refuse every
    correction for ever once a write had met one fault, however clearly refused since."""
    since_resume: dict[int, list[str]] = {}
    for h in tx.all("dossiers.history", dossier=code):
        entries = since_resume.setdefault(h["idx"], [])
        if h["outcome"] in _RESTARTS:
            entries.clear()
        else:
            entries.append(h["outcome"])
    return {
        idx
        for idx, outcomes in since_resume.items()
        if "retry" in outcomes or (stopped_on_a_fault and outcomes[-1:] == ["dead"])
    }


def _registered(tx: Tx, code: str) -> dict[int, str]:
    """The steps whose write the registry recorded although the attempt failed after it (the
    gateway refused the birth certificate's signature), with the registry's reference: done at
    the registry for ever, whatever resumes came since."""
    return {
        h["idx"]: h["reference"]
        for h in tx.all("dossiers.history", dossier=code)
        if h["outcome"] in ("retry", "dead") and h["reference"]
    }


def _finished_steps_unchanged(
    tx: Tx,
    code: str,
    flow: Flow,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    unanswered: set[int],
    registered: Mapping[int, str],
) -> None:
    """Raise NotCorrectable if a correction changes what a finished step sent: finished steps
    are not repeated, so the registry keeps the old data while the later steps would send the new
    (a child renamed after its birth was registered got its health card under the new name), and
    a verified applicant could be swapped for one never verified.

    ``unanswered``: the steps whose writes may have been registered without the gateway hearing
    it (see :func:`_unanswered`). Their requests are kept too: changed, they went under the same
    idempotency key, which the registry refused for ever as another request, while it held the
    first. Resumed as it was, the step learns the outcome.

    ``registered``: the steps whose writes the registry recorded before the attempt failed (see
    :func:`_registered`): as finished as a done step, at the registry.
    """
    steps = tx.all("dossiers.steps", dossier=code)
    outputs = step_outputs(steps)
    for s in steps:
        step = flow.step(s["name"])
        done = s["status"] in FINISHED
        recorded = registered.get(s["idx"]) if step.writes and not done else None
        unknown = step.writes and s["idx"] in unanswered and not done
        if not (done or recorded or unknown):
            continue
        sent = [_params_or_none(step.params, Context(doc, outputs)) for doc in (before, after)]
        if sent[0] == sent[1]:
            continue
        what = f"dossier {code}: the correction changes what step {step.name}"
        if done:
            why = f", already done, sent to {step.registry}; a finished step is not repeated"
        elif recorded:
            why = (
                f" sent to {step.registry}, which registered it ({recorded}) before the gateway "
                "refused its answer; a registered write is not repeated"
            )
        else:
            why = (
                f" sent to {step.registry}, whose answer was lost (it may have registered it): "
                "resume the dossier first to learn the outcome"
            )
        raise NotCorrectable(what + why)


def _params_or_none(params: Callable[[Context], dict[str, Any]], ctx: Context) -> Any:
    try:
        return params(ctx)
    except KeyError:  # the document lacks what the step needs: it cannot have sent this
        return None


def resume(tx: Tx, code: str, *, actor: Actor, request_id: str | None = None) -> str:
    """Restart a stopped flow at its first unfinished step; finished steps are not repeated.

    Returns the name of the step resumed. Raises :class:`UnknownDossier`, :class:`NotCorrectable`.
    Of several resumes at once, one restarts the flow; the others find it running.
    """
    _take_turn(tx)
    row = tx.one("dossiers.get", code=code)
    if row is None:
        raise UnknownDossier(code)
    if row["status"] not in RESUMABLE:
        raise NotCorrectable(f"dossier {code} is {row['status']}; only a stopped flow is resumed")
    flow, now = FLOWS[row["flow"]], now_iso()
    pending = next(s for s in tx.all("dossiers.steps", dossier=code) if s["status"] not in FINISHED)
    idx = pending["idx"]
    step = flow.step(pending["name"])
    job = get_job(tx, pending["job_id"]) if pending["job_id"] is not None else None
    if job is not None and job.state == "dead":
        replay(tx, job.id, actor=actor, request_id=request_id)
        tx.execute("dossiers.step_scheduled", dossier=code, idx=idx, job_id=job.id, now=now)
        # A request a correction forgot is built now, from the corrected dossier, and kept: the
        # attempts from here on send it, whatever an upgrade would build.
        _keep_request(tx, code, step, idx)
    else:
        _step_job(tx, code, step, idx, now=now)
    _history(tx, code, idx, pending["attempts"], "resumed")
    _changed(tx, code, "in_progress", now=now)
    append(
        tx,
        AuditEvent(
            action="dossier.resumed",
            member=actor.member,
            subsystem=actor.subsystem,
            service="admin",
            dossier=code,
            step=pending["name"],
            request_id=request_id,
        ),
    )
    return str(pending["name"])


def replay_job(tx: Tx, job_id: int, *, actor: Actor, request_id: str | None = None) -> Job:
    """An operator's replay of a dead outbox job (the admin API, ``lienthong outbox replay``).

    The dead step of a stopped flow is resumed with its dossier, as :func:`resume` does: replayed
    alone, the step ran while the dossier still said failed, and corrections and resumes were
    taken meanwhile (a correction the registry's write never saw). Any other job is replayed
    alone. Raises JobNotFound or NotDead.
    """
    # Read the job and its dossier as the last replay or resume left them: without the turn,
    # on PostgreSQL, of several replays at once the losers read a dead job, then found its
    # dossier resumed by the winner (NotCorrectable: a 500).
    _take_turn(tx)
    job = get_job(tx, job_id)
    if job is not None and job.kind == "flow.step" and job.state == "dead" and job.dossier:
        row = tx.one("dossiers.get", code=job.dossier)
        if row is not None and row["status"] in RESUMABLE:
            resume(tx, job.dossier, actor=actor, request_id=request_id)
            job = get_job(tx, job_id)
            if job is not None and job.state != "dead":
                return job
    return replay(tx, job_id, actor=actor, request_id=request_id)
