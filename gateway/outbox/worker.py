"""The outbox worker: claims due jobs under a lease, runs them, records the outcome atomically.

One attempt of one job::

    claim (one UPDATE … RETURNING: state running, owner, lease, attempts + 1)
      → handler.run(job)            external work, OUTSIDE any transaction, lease renewed meanwhile
      → ONE transaction, fenced by owner:
          success: handler's recording unit + job done + audit "step.delivered"
          failure: handler.failed(...) + job pending (run_after = now + delay) + audit "step.failed"
                   or, when the policy gives up, or the job has been failing for give_up_after
                   (see Giving up): handler.failed(...) + job dead + audit "job.dead"

Auditing: every attempt produces exactly one event, and ``step.attempted`` is FOLDED into it — the
event that closes the attempt (``step.delivered`` / ``step.failed`` / ``job.dead``) is the record
that the attempt happened. Not audited, because nothing was attempted: a job deferred (a
:class:`~gateway.outbox.breaker.NotYet`: rescheduled, or parked, its attempt refunded). An attempt whose holder lost the
lease is audited by the worker that takes the job over, as failed, its outcome unknown (see
Leases); the holder's own late result is discarded.

Attempts: only calls made while the endpoint's circuit is closed use them. A job the open circuit
refuses waits (above); one whose call was the half-open circuit's trial, and failed, made a real
call (audited ``step.failed``, told to the handler) but gets its attempt back too: the endpoint is
still down, which is not the job's fault. It waits for the circuit's next trial and one reset
period more, so that the next trial is another waiting job's if there is one: a job that fails
alone, while others' trials find the endpoint up, then runs out of attempts with the circuit
closed and goes dead; a registry down for an hour keeps its work pending, not dead. A job that
fails alone with nothing else calling its endpoint is every time the trial (from its calls alone
it cannot be told from an endpoint that is down): attempts never end it, time does (below).

Giving up: a job that has been failing for ``give_up_after`` seconds (``[outbox]
give_up_after_s``, three days; 0: never) is given up at its next failure, whatever its attempts: dead,
its ``last_error`` and ``job.dead`` event saying so ("given up: failing for 1 d 0 h since its
first failed try (97 failed tries; …); last error: …"), told to its handler as a death with
that reason (``given_up``: a flow step's error and history in its dossier say it too), and
replayable. The clock is the job's first failed try, trials included, not its creation: a job
queued, or parked, behind a circuit that others' failures keep open has failed nothing. Only a
failed try ends it: a job refused by the open circuit, parked on it, or waiting for an earlier one
is never given up while it waits, however long; its first try after the limit decides. A job
done, dead or replayed loses its clock (``outbox_failing``, written on the store's clock as the
job's times are): a replay gives it the full time again. An attempt the worker cuts short as it
stops is no failure of the job's and counts nothing. Every kind of job alike: a flow step (its
dossier then fails, to be resumed), a callback, a portal sync or a document's push.

Parking: a job held back by an endpoint — its circuit is open, or its trial is in flight, or as
many calls to it are in flight as it may take (a :class:`NotYet` that names a ``circuit``) —
waits for the endpoint, not for a time. It is parked: pending, a row in ``outbox_parked`` names
the endpoint, and its ``run_after`` is :data:`_PARKED_S` ahead, only a fallback. It comes back
 - when the endpoint answers a call (any job's, on any gateway sharing the store: the attempt's
   closing transaction makes the :data:`_WAKE_PER_ANSWER` oldest jobs parked on it due), and
 - as a try: at each claim, a worker takes the oldest job parked on an endpoint whose circuit, in
   this process, lets a call through (closed, or half-open with its trial free: the trial), one
   at a time per endpoint, at most once per reset period of its circuit.
Its row stays until the attempt ends: one woken or tried that ends without calling the endpoint
(done unsent, superseded by a newer one; failed before its call) wakes the next parked there in
its place, as nothing answered to do it.
So while a receiver is down its callbacks cost one claim per reset period, not one each (every
refused job used to come back at the circuit's reset, all together, claimed ahead of every newer
job: 12,000 callbacks for a receiver down made 1,000 claims a second and flows 100 times
slower); the trial's success wakes two, whose answers wake two each, so a receiver back gets its
backlog as fast as it takes it. Each gateway has its own breakers but the parked jobs are shared:
a gateway whose circuit is closed (it never called the endpoint, or a lookup's answer closed it)
takes a try at once, and one whose circuit is open its trial at the reset, so a job parked by a
gateway that stopped, or just after the answer that would have woken it, still comes back within
a reset period of the endpoint's first answer. The order of a dossier's (or a document's) jobs is
the handlers' to keep: they check it when a job runs, whenever it was claimed.

Leases: the lease is RENEWED every ``lease / 3`` seconds while a handler runs, so a slow registry
call keeps its job; ``run_timeout`` (300 s; a registry's ``timeout_s`` is less) bounds a call
that hangs, and the attempt's error says it was stopped. A gateway killed mid-delivery stops
renewing; once ``lease_until`` passes, the next worker to claim takes the job over and records
the attempt it was making as failed, its outcome unknown (:class:`~gateway.outbox.AttemptLost`,
told to the handler, audited ``step.failed`` or ``job.dead``), then the job is retried by its
policy like any attempt whose answer was lost: attempts lost to crashes count, so a job that
crashes every gateway running it ends dead. A late result from a holder that lost its lease is
discarded — the fence is ``owner``, unique per claim — so the handler's recording unit runs at
most once per delivered job.

Clocks: the worker gives the store its ``clock()`` as ``now`` and the lease and retry delays as
spans. SQLite writes and compares times on that clock (one host, one clock); PostgreSQL, whose
store several gateways share, on the database server's clock, so that instances whose clocks
differ still agree on whose a job is and when it is due (see ``sql/postgres/outbox.sql``). A
clock set back (it ran ahead until corrected) would leave the leases and due times written on it
in the future, a dead gateway's job held for the size of the error: the worker moves them back to
count from now, as the spans they were written as, at its first claim and every minute after.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from connectors.api import ConnectorError, PermanentError
from gateway.audit import AuditEvent, append, withhold_numbers
from gateway.metrics import Metrics
from gateway.settings import ATTEMPT_TIMEOUT_S, GIVE_UP_AFTER_S
from gateway.store import Store, StoreClosed, StoreError, StoreUnavailable, Tx

from .breaker import CircuitBreaker, NotYet, TrialWatch, watch_trials
from .errors import AttemptLost
from .jobs import Job, depth, job_from_row, step_of
from .retry import RetryDecision, RetryPolicy
from .views import escape_controls

__all__ = ["Delivery", "JobHandler", "Worker", "after_giving_up", "storable"]

log = logging.getLogger("lienthong.outbox")

_MAX_ERROR = 2000  # characters of an error kept in last_error and audit details


class JobHandler(Protocol):
    """The code around the outbox that knows what a job of one kind means."""

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        """Do the external work (registry call, webhook, document push) and return a unit of work
        that records its result. The worker runs that unit in the same transaction that marks the
        job done and appends ``step.delivered``; it may return a :class:`Delivery` (or a plain
        ``str`` reference) to enrich that audit event. Raise to fail the attempt:
        PermanentError → dead; TransientError and anything else → retry per the policy;
        :class:`~gateway.outbox.breaker.NotYet` (an open circuit, an earlier job still in flight)
        → rescheduled without using an attempt."""
        ...

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
        """Record a failed attempt in the handler's own state, inside the worker's transaction
        (with the job update and the audit event). ``retry_in`` is None when ``dead``.
        ``given_up``: why the job is dead when it is not ``error`` itself — it has been failing
        for ``[outbox] give_up_after_s`` ("given up: failing for 3 d 0 h since its first failed
        try (…)"), else None; what the handler shows of the death should say it, before the
        error's own words (:func:`after_giving_up`)."""
        ...


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """What a recording unit may return to enrich the ``step.delivered`` audit event."""

    reference: str | None = None  # the registry's reference number
    detail: str | None = None
    service: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    # Done without being sent (a newer notification carries the news): counted apart from the
    # deliveries, as lienthong_outbox_attempts_total{outcome="superseded"}.
    superseded: bool = False
    # Done with the registry's refusal as its outcome (a verdict: connectors.api.Verdict):
    # audited ``step.refused``, outcome ``refused``, instead of ``step.delivered``.
    refused: bool = False


class _LeaseLost(Exception):
    """The job is no longer ours: someone re-claimed it after our lease ran out."""


# The store cannot keep everything an error may say: PostgreSQL refuses NUL in text, and neither
# store (nor the audit entry's JSON) takes a lone surrogate. A reason that cannot be written would
# leave its job unrecorded, to be tried again after every lease, for ever.
_UNWRITABLE = str.maketrans({0: "\ufffd"})


def storable(text: str, *, limit: int = _MAX_ERROR) -> str:
    """``text`` — an error's words, a registry's among them — as either store keeps it, and as
    it is shown: the job's ``last_error`` and a flow step's error alike (one text on SQLite and
    on PostgreSQL), at most ``limit`` characters."""
    text = text.encode("utf-8", "replace").decode().translate(_UNWRITABLE)
    # Nor is a terminal's command kept (ESC, BEL, a bidi override): a registry's words, which an
    # operator reads in a terminal (outbox list) or a log viewer.
    text = escape_controls(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    """What the job's ``last_error`` (outbox list, the admin API), its audit event (kept for
    ever) and the log keep of a failure. A registry's words can name a person ("the birth of
    <name> on <date> … is already registered", "death of <id> …"): an error that carries the
    registry's code (a SOAP fault's MaLoi, BHXH's maKetQua, ``http-503``) is kept as that code;
    the words stay in the dossier's step history (``handler.failed``), which its client reads.
    Any other text (the gateway's own words: a timeout, a malformed reply) keeps no long number."""
    if isinstance(exc, ConnectorError) and exc.code:
        done = "refused the request" if isinstance(exc, PermanentError) else "failed"
        said = f"{exc.registry} {done} (code {exc.code})"
    else:
        said = str(exc)
    return storable(withhold_numbers(f"{type(exc).__name__}: {said}"))


# How often the worker looks for jobs written on a clock since set back: they wait at most this
# much longer than they were meant to.
_REBASE_EVERY_S = 60.0

# A parked job's fallback: it is claimed again after this even if nothing woke it (see Parking:
# nothing should have to, unless every worker is kept busy by due jobs). Long: while the
# endpoint stays down, each parked job (and each behind it) costs one claim per this period.
_PARKED_S = 3600.0
# The jobs parked on an endpoint each of its answers makes due.
_WAKE_PER_ANSWER = 2
# How often a worker takes a try of an endpoint whose circuit it does not know (it never parked
# a job on it); else once per reset period of the circuit.
_TRY_S = 1.0

# Store failures after which the lease is left to run out, for the job to be tried again: the
# store is down or closing, not this job's fault. Any other (a failed query) counts an attempt.
_OUTAGE = (StoreUnavailable, StoreClosed)
# While the store is out (a failover, a restart) every job meets it: its reason is logged when it
# starts or changes and again every REPEAT_WARNING_S, as audit checkpoints log theirs.
REPEAT_WARNING_S = 600.0


class _OutageLog:
    """One WARNING per distinct reason of a store outage, none repeated within REPEAT_WARNING_S,
    and one INFO when the store works again: not an ERROR and a traceback per job."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None
        self._said: dict[str, float] = {}  # reason → when it was last logged

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        if self._since is None:
            self._since = now
        reason = f"{type(exc).__name__}: {exc}"
        if now - self._said.get(reason, -float("inf")) >= REPEAT_WARNING_S:
            self._said[reason] = now
            log.warning(
                "outbox: the store is unavailable; jobs wait for it (logged again when the "
                "reason changes, or in %.0f min): %s",
                REPEAT_WARNING_S / 60,
                reason,
                extra={"failing_s": round(now - self._since, 1)},
            )

    def recovered(self) -> None:
        if self._since is not None:
            log.info(
                "outbox: the store is available again after %.1f s",
                self._clock() - self._since,
            )
        self._since = None
        self._said.clear()


def _extra(job: Job, **more: Any) -> dict[str, Any]:
    # LogRecord attribute names (name, msg, module…) are avoided: logging refuses to overwrite them.
    return {
        "job_id": job.id,
        "job_kind": job.kind,
        "dossier": job.dossier,
        "document": job.document,
        "attempt": job.attempts,
        **more,
    }


class Worker:
    """Runs outbox jobs with up to ``concurrency`` in flight. ``async with Worker(...)`` starts it
    and stops it; :meth:`run_once` runs one batch without the background loop (tests, CLI)."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, JobHandler],
        *,
        policy: Callable[[Job], RetryPolicy] | RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        concurrency: int = 8,
        lease: float = 30.0,
        poll_interval: float = 0.25,
        owner: str | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        run_timeout: float = ATTEMPT_TIMEOUT_S,
        drain_timeout: float = 10.0,
        give_up_after: float = GIVE_UP_AFTER_S,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease <= 0:
            raise ValueError("lease must be positive")
        if not give_up_after >= 0:
            raise ValueError("give_up_after must be 0 (never) or more")
        self.store = store
        self.handlers = dict(handlers)
        # Why the last claim failed, while claims fail (readiness reports it), else None.
        self.claim_failure: str | None = None
        self._policy = policy
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.metrics = metrics
        self.clock = clock
        self._outage = _OutageLog(time.monotonic if clock is time.time else clock)
        self.run_timeout = run_timeout
        self.drain_timeout = drain_timeout
        # Seconds of failing (see Giving up) after which a job's next failure is its last; 0:
        # never (its attempts alone end it).
        self.give_up_after = give_up_after
        self._inflight: set[asyncio.Task[None]] = set()
        # The jobs this worker is running: never taken over by itself, however expired their
        # leases look (a stall, a clock step, the store locked by another process for longer
        # than a lease) — a second run beside the first would call the registry twice and keep
        # whichever result came last.
        self._running: set[int] = set()
        self._next_rebase = -math.inf  # on the event loop's (monotonic) clock
        # Parking (see the module's docstring), by endpoint: the circuits this worker's jobs were
        # parked on, the endpoints that had parked jobs at the last claim (or that it parked a
        # job on since), and the parked job it last took as a try.
        self._circuits: dict[str, CircuitBreaker] = {}
        self._parked: frozenset[str] = frozenset()
        self._tries: dict[str, tuple[int, float]] = {}  # the last try: its job, when (clock())
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background loop. Idempotent."""
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._run_loop(), name="lienthong-outbox")

    async def stop(self) -> None:
        """Stop claiming; let in-flight jobs finish for up to ``drain_timeout`` seconds, then
        cancel the rest (each is put back as pending and audited as an interrupted attempt)."""
        self._stopping = True
        self._wake.set()
        task, self._loop_task = self._loop_task, None
        if task is not None:
            await task
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.drain_timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def wake(self) -> None:
        """Look for due jobs now rather than at the next poll. Call from the event loop's thread,
        after the transaction that enqueued the job has committed."""
        self._wake.set()

    # -- claiming ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim up to ``concurrency`` due jobs, run them all to the end; return how many ran."""
        jobs = await self._claim(self.concurrency)
        self._outage.recovered()
        await asyncio.gather(*(self._process(job) for job in jobs))
        await self._refresh_gauge()
        return len(jobs)

    async def _claim(self, limit: int) -> list[Job]:
        """Count the times written on a clock since set back from now (now and then), record
        the attempts whose holders stopped, then return up to ``limit`` due jobs, claimed."""
        await self._rebase_now_and_then()
        lapsed, jobs = await self._take(limit)
        while lapsed:  # rare (a holder stopped): their retries may be due now, as the rest are
            await self._record_lost(lapsed)
            lapsed, more = await self._take(limit - len(jobs))
            jobs += more
        self._running.update(job.id for job in jobs)
        return jobs

    async def _take(self, limit: int) -> tuple[list[Job], list[Job]]:
        """In one unit: the running jobs whose lease ran out, taken over (never one this worker
        runs itself, whatever its lease says: a stall, a clock step), the due pending jobs,
        claimed for an attempt each, and, in the room the batch has left, a parked job as the
        try of each endpoint whose circuit lets a call through (see Parking)."""
        # A fresh token per claim: the owner fence then tells this claim from any earlier claim
        # of the same job by this same worker.
        owner = f"{self.owner}/{uuid.uuid4().hex[:8]}"
        now = self.clock()
        busy = json.dumps(sorted(self._running))
        params = {"owner": owner, "now": now, "lease": self.lease, "limit": limit}
        circuits = dict(self._circuits)
        # One try at a time per endpoint, and one per reset period of its circuit: a circuit
        # closed here (another gateway's is open, or calls to it are as many as it may take)
        # lets every call through, and its endpoint's answers wake its parked jobs anyway.
        waiting = {
            endpoint
            for endpoint, (job_id, at) in self._tries.items()
            if job_id in self._running
            or 0 <= now - at < (c.reset_after if (c := self._circuits.get(endpoint)) else _TRY_S)
        }

        def work(tx: Tx) -> tuple[list[Job], list[Job], list[str] | None, list[tuple[str, Job]]]:
            lapsed = [job_from_row(r) for r in tx.all("outbox.reclaim", busy=busy, **params)]
            due = [job_from_row(r) for r in tx.all("outbox.claim", **params)]
            if len(due) >= limit:  # no room for a try: not even a look
                return lapsed, due, None, []
            parked = [str(r["endpoint"]) for r in tx.all("outbox.parked_endpoints")]
            tries: list[tuple[str, Job]] = []
            for endpoint in parked:
                if len(due) + len(tries) >= limit:
                    break
                circuit = circuits.get(endpoint)  # none: this process never called it
                if endpoint in waiting or (circuit is not None and not circuit.ready()):
                    continue
                taken = tx.all(
                    "outbox.claim_parked",
                    endpoint=endpoint,
                    owner=owner,
                    now=now,
                    lease=self.lease,
                    limit=1,
                )
                if taken:  # its row stays until the attempt ends (see _release)
                    tries.append((endpoint, job_from_row(taken[0])))
                else:  # what is left of it are jobs taken at their fallback time since
                    tx.execute("outbox.prune_parked", endpoint=endpoint)
            return lapsed, due, parked, tries

        lapsed, due, parked, tries = await self.store.transact(work)
        if parked is not None:
            self._parked = frozenset(parked)
        for endpoint, job in tries:
            self._tries[endpoint] = (job.id, now)
            due.append(job)
        return sorted(lapsed, key=lambda j: j.id), sorted(due, key=lambda j: j.id)

    async def _rebase_now_and_then(self) -> None:
        """At the first claim, then every :data:`_REBASE_EVERY_S`: the leases and due times
        written on a clock since set back count from now (see ``outbox.rebase``). Not at every
        poll: it reads every pending job, where a poll reads only the due ones."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_rebase:
            return
        now = self.clock()
        moved = await self.store.transact(lambda tx: tx.execute("outbox.rebase", now=now))
        self._next_rebase = loop.time() + _REBASE_EVERY_S
        if moved:
            log.warning(
                "outbox: %d job(s) were last written on a clock ahead of this one (it was set "
                "back since): their leases and waits now count from now",
                moved,
            )

    async def _record_lost(self, lapsed: list[Job]) -> None:
        """For each job taken over from a holder whose lease ran out, record the attempt it was
        making as failed, its outcome unknown: retried by the job's policy, or dead when that was
        its last attempt. Recorded before the job is tried again, so the handler (a flow step's
        history) knows a request may have reached the registry unanswered."""
        for job in lapsed:
            lost = AttemptLost(job.attempts)
            decision = self.policy_for(job).decide(lost, job.attempts)
            await self._finish_failure(job, self.handlers.get(job.kind), lost, decision)

    async def _run_loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._inflight)
            claimed: list[Job] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                    self.claim_failure = None
                    self._outage.recovered()
                except Exception as exc:  # the loop must outlive any one bad poll
                    if isinstance(exc, _OUTAGE):
                        self._outage.failed(exc)
                    else:
                        log.exception("outbox: claiming jobs failed; will try again")
                    self.claim_failure = f"claiming jobs fails: {type(exc).__name__}: {exc}"[:300]
                for job in claimed:
                    t = asyncio.create_task(self._process(job), name=f"outbox-job-{job.id}")
                    self._inflight.add(t)
                    t.add_done_callback(self._finished)
            try:
                await self._refresh_gauge()
            except _OUTAGE as exc:
                self._outage.failed(exc)
            except Exception:
                log.warning("outbox: could not read job counts", exc_info=True)
            if claimed and len(claimed) == free:
                continue  # a full batch: more may be due right now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("outbox: job task crashed", exc_info=exc)

    async def _refresh_gauge(self) -> None:
        if self.metrics is None:
            return
        for state, n in (await self.store.read(depth)).items():
            self.metrics.outbox_jobs.labels(state=state).set(n)

    # -- one attempt -------------------------------------------------------------------------

    def policy_for(self, job: Job) -> RetryPolicy:
        return self._policy if isinstance(self._policy, RetryPolicy) else self._policy(job)

    async def _process(self, job: Job) -> None:
        try:
            await self._attempt(job)
        finally:
            self._running.discard(job.id)

    async def _attempt(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            await self._finish_failure(
                job, None, LookupError(f"no handler for job kind {job.kind!r}"), None
            )
            return
        # Set once the attempt is being recorded: a renewal then finding the job no longer
        # running may have met its own closing transaction, which tells a real takeover itself.
        closing = asyncio.Event()
        renewer = asyncio.create_task(self._renew(job, closing), name=f"outbox-lease-{job.id}")
        try:
            try:
                with watch_trials() as trials:
                    try:
                        record = await self._run(handler, job)
                    finally:
                        closing.set()
            except NotYet as exc:
                await self._defer(job, exc, trials)
                return
            except asyncio.CancelledError:
                # Stopping: put the job back now rather than after the lease, then stop for real.
                # Not the job's failure, nor its endpoint's: not one that can give it up.
                await self._finish_failure(
                    job,
                    handler,
                    RuntimeError("interrupted: the worker stopped"),
                    RetryDecision(0),
                    judged=False,
                )
                raise
            except Exception as exc:
                if isinstance(exc, _OUTAGE):
                    self._outage.failed(exc)
                elif not isinstance(exc, (TimeoutError, OSError, ConnectorError)):
                    log.error(
                        "outbox: handler for %s raised unexpectedly; retrying as transient",
                        job.kind,
                        exc_info=exc,
                        extra=_extra(job),
                    )
                # A failed trial of a half-open circuit is refunded (see Attempts); a permanent
                # answer is judged by the policy even then.
                trial = None if isinstance(exc, PermanentError) else trials.failed_trial
                decision: RetryDecision | None
                if trial is not None:
                    decision = _after_trial(trials)
                else:
                    decision = self.policy_for(job).decide(exc, job.attempts)
                await self._finish_failure(job, handler, exc, decision, trial=trial, calls=trials)
                return
            await self._finish_success(job, handler, record, trials)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _run(self, handler: JobHandler, job: Job) -> Callable[[Tx], Any]:
        """``handler.run(job)``, stopped after ``run_timeout`` seconds. Raises what it raised, or
        a TimeoutError that says it was stopped (asyncio's says nothing: the step's error was
        empty)."""
        cut = asyncio.timeout(self.run_timeout)
        try:
            async with cut:
                return await handler.run(job)
        except TimeoutError as exc:
            if not cut.expired():
                raise  # the handler's own
            raise TimeoutError(
                f"the attempt ran for {self.run_timeout:g} s, the outbox worker's limit on one "
                "attempt, and was stopped: its outcome is unknown"
            ) from exc

    async def _renew(self, job: Job, closing: asyncio.Event) -> None:
        def renew(tx: Tx, now: float) -> int:
            return tx.execute("outbox.renew", id=job.id, owner=job.owner, now=now, lease=self.lease)

        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                kept = await self.store.transact(functools.partial(renew, now=self.clock()))
            except _OUTAGE as exc:
                # Renewed again in a third of the lease; one that runs out lets the job be
                # taken over, and the attempt's recording says so (see _lost).
                self._outage.failed(exc)
                continue
            except StoreError:
                log.warning("outbox: lease renewal failed", exc_info=True, extra=_extra(job))
                continue
            if not kept:
                if closing.is_set():
                    # Done, retried or dead by the attempt's own closing transaction, or taken
                    # over: that transaction's fence says which (see _lost), not this renewal.
                    return
                log.warning(
                    "outbox: lost the lease on job %s: it ran out (this process stalled or was cut "
                    "off from the store, or a clock stepped) and another gateway took the job "
                    "over; this attempt's result will be discarded",
                    job.id,
                    extra=_extra(job),
                )
                return

    def _release(self, tx: Tx, job: Job, calls: TrialWatch | None, now: float) -> None:
        """In the transaction that ends an attempt of ``job``: its parked row, if it had one,
        removed, and the jobs parked on the endpoints it reached woken. Each endpoint that
        answered its calls wakes :data:`_WAKE_PER_ANSWER`: those that had parked jobs at the last
        claim (or that this worker parked a job on since; one parked later by another gateway is
        taken as a try at a next claim instead), and the one it was parked on. And a job woken
        from (or tried on) an endpoint it then did not call — done unsent, superseded by a newer
        one; failed before its call; its holder gone — passes its turn on, waking the next one
        parked there: else, nothing answering, the backlog behind an endpoint back from an outage
        went out one try per reset period (about an hour for 300 superseded portal syncs)."""
        called = calls.called if calls is not None else set()
        answered = calls.answered if calls is not None else set()
        wakes = dict.fromkeys(self._parked.intersection(answered), _WAKE_PER_ANSWER)
        row = tx.one("outbox.unpark", job=job.id)
        if row is not None:
            endpoint = str(row["endpoint"])
            if endpoint in answered:
                wakes[endpoint] = _WAKE_PER_ANSWER
            elif endpoint not in called:
                wakes.setdefault(endpoint, 1)
        for endpoint, limit in sorted(wakes.items()):
            tx.all("outbox.wake_parked", endpoint=endpoint, now=now, limit=limit)

    async def _finish_success(
        self,
        job: Job,
        handler: JobHandler,
        record: Callable[[Tx], Any],
        calls: TrialWatch | None = None,
    ) -> None:
        now = self.clock()
        recorded: list[Delivery] = []

        def work(tx: Tx) -> None:
            recorded.clear()  # a unit the store runs again starts afresh
            # Fence FIRST: if the job is no longer ours, raising rolls back everything below, so
            # the handler's recording never runs for a result that is being discarded.
            if not tx.execute("outbox.complete", id=job.id, owner=job.owner, now=now):
                raise _LeaseLost
            if job.last_error is not None:  # only a job that failed has a failing clock
                tx.execute("outbox.recovered", job=job.id)
            self._release(tx, job, calls, now)
            outcome = record(tx)
            d = outcome if isinstance(outcome, Delivery) else Delivery()
            recorded.append(d)
            append(
                tx,
                AuditEvent(
                    action="step.refused" if d.refused else "step.delivered",
                    outcome="refused" if d.refused else "ok",
                    dossier=job.dossier,
                    document=job.document,
                    job=job.id,
                    step=step_of(job),
                    service=d.service or _service_of(job),
                    reference=outcome if isinstance(outcome, str) else d.reference,
                    request_id=_str(job.payload.get("request_id")),
                    digests=d.digests,
                    detail=d.detail or f"attempt {job.attempts}",
                ),
            )

        try:
            await self.store.transact(work)
        except _LeaseLost:
            self._lost(job, "delivered")
            return
        except _OUTAGE as exc:
            # Nothing was recorded; the lease runs out and the job is tried again.
            self._outage.failed(exc)
            return
        except Exception as exc:
            # The external work happened but its recording failed (a bug, a constraint, a value
            # the store refuses): do not drop the job, nor leave it to be sent again for ever —
            # count a failed attempt; the idempotency key makes resending safe.
            log.error("outbox: recording a delivery failed", exc_info=exc, extra=_extra(job))
            await self._finish_failure(
                job, handler, exc, self.policy_for(job).decide(exc, job.attempts), calls=calls
            )
            return
        outcome = "superseded" if recorded and recorded[-1].superseded else "delivered"
        self._count(job, outcome)
        log.info(
            "outbox: job %s %s",
            job.id,
            "done unsent (superseded)" if outcome == "superseded" else "delivered",
            extra=_extra(job, outcome=outcome),
        )

    async def _finish_failure(
        self,
        job: Job,
        handler: JobHandler | None,
        error: BaseException,
        decision: RetryDecision | None,
        *,
        trial: str | None = None,
        calls: TrialWatch | None = None,
        judged: bool = True,
    ) -> None:
        """Record a failed attempt: retried after ``decision``'s delay, or dead when it is None,
        or when the job has now been failing for :attr:`give_up_after` (see Giving up).
        ``trial``: the endpoint whose half-open circuit's trial this attempt's call was; it failed,
        so the attempt is refunded (see the module's Attempts). ``calls``: what the attempt's
        calls told (the endpoints it called, and those that answered: a refusal is an answer),
        for the parked jobs it wakes (see :meth:`_release`). ``judged``: False for an attempt cut
        short by the worker (stopping), which counts as no failure of the job's."""
        now = self.clock()
        text = _describe(error)

        def work(tx: Tx, *, with_handler: bool) -> tuple[bool, str]:
            dead = decision is None
            reason = text
            given_up: str | None = None
            if not dead and judged and (given_up := self._failing(tx, job, now)) is not None:
                dead, reason = True, _clip(after_giving_up(given_up, text))
            if dead:
                changed = tx.execute(
                    "outbox.bury", id=job.id, owner=job.owner, error=reason, now=now
                )
            else:
                assert decision is not None
                changed = tx.execute(
                    "outbox.retry",
                    id=job.id,
                    owner=job.owner,
                    error=text,
                    delay=decision.delay,
                    refund=0 if trial is None else 1,
                    now=now,
                )
            if not changed:
                raise _LeaseLost
            if dead:
                tx.execute("outbox.recovered", job=job.id)  # a replay starts its clock afresh
            self._release(tx, job, calls, now)
            retry_in = None if dead or decision is None else decision.delay
            if with_handler and handler is not None:
                handler.failed(tx, job, error, dead=dead, retry_in=retry_in, given_up=given_up)
            append(
                tx,
                AuditEvent(
                    action="job.dead" if dead else "step.failed",
                    outcome="dead" if dead else "retry",
                    dossier=job.dossier,
                    document=job.document,
                    job=job.id,
                    step=step_of(job),
                    service=_service_of(job),
                    request_id=_str(job.payload.get("request_id")),
                    detail=f"attempt {job.attempts}{_counted(trial, dead)}: {reason}"
                    + ("" if retry_in is None else f"; retry in {retry_in:.1f}s"),
                ),
            )
            return dead, reason

        try:
            try:
                dead, reason = await self.store.transact(lambda tx: work(tx, with_handler=True))
            except (_LeaseLost, *_OUTAGE):
                raise
            except Exception:
                # handler.failed is the handler's code and may be broken, or write what the store
                # refuses; the job must still move on (retried or dead-lettered), or it would come
                # back after every lease for ever.
                log.exception(
                    "outbox: handler.failed raised; recording without it", extra=_extra(job)
                )
                dead, reason = await self.store.transact(lambda tx: work(tx, with_handler=False))
        except _LeaseLost:
            self._lost(job, "failed")
            return
        except _OUTAGE as exc:
            self._outage.failed(exc)
            return
        except StoreError:
            log.exception("outbox: could not record a failed attempt", extra=_extra(job))
            return
        retry_in = None if dead or decision is None else decision.delay
        self._count(job, "dead" if dead else "retry")
        if dead and self.metrics is not None:
            self.metrics.dead_letters.labels(kind=job.kind).inc()
        # The registry's words may quote a personal id ("death of 0400… already registered"):
        # the log keeps of them what the audit event does. The dossier's view keeps them whole.
        log.log(
            logging.ERROR if dead else logging.WARNING,
            "outbox: job %s %s%s: %s",
            job.id,
            "is dead" if retry_in is None else f"will retry in {retry_in:.1f}s",
            _counted(trial, dead),
            withhold_numbers(reason),
            extra=_extra(job, outcome="dead" if dead else "retry", retry_in=retry_in),
        )

    def _failing(self, tx: Tx, job: Job, now: float) -> str | None:
        """In the transaction that records a failed try of ``job``: the try counted on its
        failing clock (started by its first failed try), and why it is given up if it has now
        been failing for :attr:`give_up_after`, else None."""
        row = tx.one("outbox.failed", job=job.id, now=now)
        assert row is not None  # an upsert returns its row
        failing_for, tries = float(row["failing_for"]), int(row["tries"])
        if not self.give_up_after or failing_for < self.give_up_after:
            return None
        return (
            f"given up: failing for {_span(failing_for)} since its first failed try ({tries} "
            f"failed tries; [outbox] give_up_after_s = {self.give_up_after:g})"
        )

    async def _defer(self, job: Job, exc: NotYet, calls: TrialWatch | None = None) -> None:
        now = self.clock()
        circuit = exc.circuit  # what it waits for is an endpoint: parked on it (see Parking)
        delay = _PARKED_S if circuit is not None else max(exc.retry_after, 0.0)

        def work(tx: Tx) -> int:
            changed = tx.execute(
                "outbox.retry",
                id=job.id,
                owner=job.owner,
                error=None,  # keep the last real error: a wait is not about this job
                delay=delay,
                refund=1,
                now=now,
            )
            if not changed:
                return changed
            if circuit is not None:  # parked again: it keeps its place, and no turn is passed
                tx.execute("outbox.park", job=job.id, endpoint=circuit.name)
            else:
                self._release(tx, job, calls, now)
            return changed

        try:
            changed = await self.store.transact(work)
        except _OUTAGE as outage:
            self._outage.failed(outage)
            return
        except StoreError:
            log.exception("outbox: could not defer job", extra=_extra(job))
            return
        if not changed:
            self._lost(job, "deferred")
            return
        if circuit is not None:
            self._circuits[circuit.name] = circuit
            self._parked |= {circuit.name}
        # A wait, not an attempt (it is refunded): lienthong_outbox_attempts_total counts what
        # reached, or was meant to reach, the other side.
        if self.metrics is not None:
            self.metrics.waits.labels(kind=job.kind).inc()
        # Routine (an open circuit, an earlier job of the dossier unsent): DEBUG. The circuit's
        # opening and closing, and each failed attempt, are logged where they happen.
        log.debug(
            "outbox: job %s deferred %s: %s",
            job.id,
            f"{delay:.1f}s" if circuit is None else f"until {circuit.name} answers (parked)",
            withhold_numbers(str(exc)),
            extra=_extra(job, outcome="deferred", endpoint=exc.endpoint),
        )

    def _lost(self, job: Job, what: str) -> None:
        log.warning(
            "outbox: job %s: another gateway took the job over after its lease ran out; "
            "this attempt's %s result is discarded",
            job.id,
            what,
            extra=_extra(job, outcome="discarded"),
        )
        self._count(job, "discarded")

    def _count(self, job: Job, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(kind=job.kind, outcome=outcome).inc()


def _counted(trial: str | None, dead: bool) -> str:
    """What a failed attempt's log and audit event say of its circuit's trial: refunded, unless
    it was the job's last (given up)."""
    if trial is None:
        return ""
    return f" (the trial of circuit {trial}{'' if dead else ': not counted'})"


def _span(seconds: float) -> str:
    """``seconds`` as an operator reads a long time: 2 d 1 h, 1 h 0 min, 5 min 3 s, 42 s."""
    whole = int(max(seconds, 0.0))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def after_giving_up(given_up: str, last_error: str) -> str:
    """What a job given up for its time of failing (``given_up``: why, from the worker) says of
    its death: why first, then its last error — its ``last_error`` and ``job.dead`` event (the
    error's code), and a flow step's error and history (the registry's words) alike."""
    return f"{given_up}; last error: {last_error}"


def _clip(text: str) -> str:
    """``text`` cut to what a job's ``last_error`` keeps (its parts are storable already)."""
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _after_trial(trials: TrialWatch) -> RetryDecision:
    """When a job whose call was a circuit's failed trial comes back: at the circuit's next trial
    and one reset period later, so that trial is another waiting job's (a parked one is taken
    when the circuit lets one through), and a job that alone fails does not keep the circuit open
    for all of them."""
    return RetryDecision(trials.reopened_for + trials.reset_after)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _service_of(job: Job) -> str | None:
    return _str(job.payload.get("service"))
