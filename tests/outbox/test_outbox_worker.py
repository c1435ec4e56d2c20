from __future__ import annotations

import asyncio
import logging

import pytest

from connectors.api import PermanentError, TransientError
from gateway.audit import Actor, verify_chain
from gateway.metrics import Metrics
from gateway.outbox import Job, RetryPolicy, Worker, enqueue, get_job, replay
from gateway.outbox.testing import ManualClock, ScriptedHandler, audit_entries
from gateway.store import QueryError, SQLiteStore

NO_JITTER = RetryPolicy(max_attempts=4, base_delay=2.0, max_delay=60.0, rng=lambda: 0.0)


async def add(
    store: SQLiteStore, clock: ManualClock, key: str = "k1", kind: str = "registry"
) -> int:
    job_id = await store.transact(
        lambda tx: enqueue(
            tx,
            kind=kind,
            key=key,
            payload={"step": "birth.register", "service": "civil_status/birth.register/v1"},
            dossier="000.00.00.H41-261122-0001",
            now=clock(),
        )
    )
    assert job_id is not None
    return job_id


async def job(store: SQLiteStore, job_id: int) -> Job:
    found = await store.read(lambda tx: get_job(tx, job_id))
    assert found is not None
    return found


def worker(
    store: SQLiteStore, clock: ManualClock, handler: ScriptedHandler, **kw: object
) -> Worker:
    kw.setdefault("policy", NO_JITTER)
    return Worker(store, {"registry": handler}, clock=clock, **kw)  # type: ignore[arg-type]


async def test_retry_then_success(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler(TransientError("civil_status", "503 busy"), None)
    w = worker(store, clock, handler)
    job_id = await add(store, clock)

    assert await w.run_once() == 1
    j = await job(store, job_id)
    assert (j.state, j.attempts, j.run_after) == ("pending", 1, clock() + 2.0)
    assert j.last_error == "TransientError: civil_status: 503 busy"
    assert j.owner is None and j.lease_until is None

    assert await w.run_once() == 0  # not due yet
    clock.advance(2.0)
    assert await w.run_once() == 1
    j = await job(store, job_id)
    assert (j.state, j.attempts, j.last_error) == ("done", 2, None)  # not listed as failed
    assert handler.recorded == [(job_id, 2)]
    assert [(f.attempt, f.dead, f.retry_in) for f in handler.failures] == [(1, False, 2.0)]

    events = await audit_entries(store)
    assert [(e["action"], e.get("outcome", "ok")) for e in events] == [
        ("step.failed", "retry"),
        ("step.delivered", "ok"),
    ]
    delivered = events[1]
    assert delivered["job"] == job_id
    assert delivered["step"] == "birth.register"
    assert delivered["service"] == "civil_status/birth.register/v1"
    assert delivered["reference"] == "REF-1"
    assert delivered["dossier"] == "000.00.00.H41-261122-0001"
    assert (await verify_chain(store)).ok


async def test_permanent_error_is_dead_at_once(store: SQLiteStore, clock: ManualClock) -> None:
    metrics = Metrics()
    handler = ScriptedHandler(PermanentError("civil_status", "mother's id unknown", code="E404"))
    w = worker(store, clock, handler, metrics=metrics)
    job_id = await add(store, clock)
    await w.run_once()
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("dead", 1)
    # The registry's code, not its words (they can name a person): the dossier keeps those.
    assert j.last_error == "PermanentError: civil_status refused the request (code E404)"
    assert [f.error for f in handler.failures] == ["civil_status: mother's id unknown"]
    assert [(f.dead, f.retry_in) for f in handler.failures] == [(True, None)]
    assert handler.recorded == []
    [event] = await audit_entries(store)
    assert (event["action"], event["outcome"], event["job"]) == ("job.dead", "dead", job_id)
    assert event["detail"] == f"attempt 1: {j.last_error}"
    assert metrics.dead_letters.labels(kind="registry")._value.get() == 1
    assert metrics.attempts.labels(kind="registry", outcome="dead")._value.get() == 1
    assert metrics.outbox_jobs.labels(state="dead")._value.get() == 1
    clock.advance(10_000)
    assert await w.run_once() == 0  # dead jobs stay dead


async def test_max_attempts_then_dead(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler(*[TransientError("p", "timeout")] * 10)
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    for _ in range(4):
        assert await w.run_once() == 1
        clock.advance(60)
    assert await w.run_once() == 0
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("dead", 4)
    assert [(f.attempt, f.dead) for f in handler.failures] == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]
    assert [f.retry_in for f in handler.failures] == [2.0, 4.0, 8.0, None]
    events = await audit_entries(store)
    assert [e["action"] for e in events] == ["step.failed"] * 3 + ["job.dead"]
    assert (await verify_chain(store)).ok


async def test_replayed_job_is_delivered(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler(PermanentError("p", "rejected"), None)
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    await w.run_once()
    assert (await job(store, job_id)).state == "dead"
    await store.transact(lambda tx: replay(tx, job_id, actor=Actor.cli("operator"), now=clock()))
    assert await w.run_once() == 1
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("done", 1)
    assert handler.recorded == [(job_id, 1)]
    actions = [e["action"] for e in await audit_entries(store)]
    assert actions == ["job.dead", "job.replayed", "step.delivered"]
    assert (await verify_chain(store)).ok


async def test_unknown_kind_is_dead_with_a_reason(store: SQLiteStore, clock: ManualClock) -> None:
    w = worker(store, clock, ScriptedHandler())
    job_id = await add(store, clock, kind="fax")
    await w.run_once()
    j = await job(store, job_id)
    assert j.state == "dead"
    assert j.last_error == "LookupError: no handler for job kind 'fax'"
    [event] = await audit_entries(store)
    assert event["action"] == "job.dead"


async def test_an_unexpected_exception_is_retried_and_logged(
    store: SQLiteStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    handler = ScriptedHandler(KeyError("a bug in the mapping"))
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    with caplog.at_level(logging.ERROR, logger="lienthong.outbox"):
        await w.run_once()
    j = await job(store, job_id)
    assert j.state == "pending"
    assert j.last_error is not None and "KeyError" in j.last_error
    crash = [r for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert crash and crash[0].exc_info is not None
    assert crash[0].__dict__["job_id"] == job_id


async def test_a_failing_recording_unit_is_a_failed_attempt(
    store: SQLiteStore, clock: ManualClock
) -> None:
    handler = ScriptedHandler(record_error=RuntimeError("constraint failed"))
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    await w.run_once()
    j = await job(store, job_id)
    assert j.state == "pending"  # not done: the result was never recorded
    assert j.last_error == "RuntimeError: constraint failed"
    assert len(handler.recorded) == 1  # it ran, and was rolled back
    assert [f.dead for f in handler.failures] == [False]
    assert [e["action"] for e in await audit_entries(store)] == ["step.failed"]


async def test_a_recording_unit_refused_by_the_store_is_a_failed_attempt(
    store: SQLiteStore, clock: ManualClock
) -> None:
    # A failed query is not an outage: left to its lease, the job would be sent again after every
    # lease, for ever, never dead and with no reason kept.
    handler = ScriptedHandler(record_error=QueryError("deliveries.insert: value too long"))
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    await w.run_once()
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert j.last_error == "QueryError: deliveries.insert: value too long"
    assert [e["action"] for e in await audit_entries(store)] == ["step.failed"]


async def test_a_broken_failed_hook_does_not_stall_the_job(
    store: SQLiteStore, clock: ManualClock
) -> None:
    handler = ScriptedHandler(
        TransientError("p", "busy"), failed_error=RuntimeError("bug in failed()")
    )
    w = worker(store, clock, handler)
    job_id = await add(store, clock)
    await w.run_once()
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert [e["action"] for e in await audit_entries(store)] == ["step.failed"]


async def test_expired_lease_is_reclaimed_and_the_late_result_discarded(
    store: SQLiteStore, clock: ManualClock
) -> None:
    gate = asyncio.Event()
    slow = ScriptedHandler(gate=gate)  # worker A: will "hang" mid-delivery
    fast = ScriptedHandler()
    metrics_a = Metrics()
    a = worker(store, clock, slow, lease=30.0, owner="gw-a", metrics=metrics_a)
    b = worker(store, clock, fast, lease=30.0, owner="gw-b")
    job_id = await add(store, clock)

    running_a = asyncio.create_task(a.run_once())
    await asyncio.wait_for(slow.started.wait(), 5)
    held = await job(store, job_id)
    assert (held.state, held.attempts) == ("running", 1)
    assert held.owner is not None and held.owner.startswith("gw-a/")

    clock.advance(29)
    assert await b.run_once() == 0  # the lease still holds
    clock.advance(2)
    # A's lease ran out: B takes the job over and records A's attempt, its outcome unknown, as
    # a failed one, retried by the policy (in 2 s) …
    assert await b.run_once() == 0
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert j.last_error is not None and "stopped during attempt 1" in j.last_error
    clock.advance(2)
    assert await b.run_once() == 1  # … then delivers it
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("done", 2)

    gate.set()  # A comes back with its result, too late
    await asyncio.wait_for(running_a, 5)
    assert slow.recorded == []  # A's recording never ran
    assert fast.recorded == [(job_id, 2)]
    assert (await job(store, job_id)).state == "done"
    events = await audit_entries(store)
    assert [e["action"] for e in events] == ["step.failed", "step.delivered"]  # one each
    assert metrics_a.attempts.labels(kind="registry", outcome="discarded")._value.get() == 1


async def test_a_late_failure_from_a_lost_lease_changes_nothing(
    store: SQLiteStore, clock: ManualClock
) -> None:
    gate = asyncio.Event()
    slow = ScriptedHandler(PermanentError("p", "late refusal"), gate=gate)
    a = worker(store, clock, slow, owner="gw-a")
    b = worker(store, clock, ScriptedHandler(), owner="gw-b")
    job_id = await add(store, clock)
    running_a = asyncio.create_task(a.run_once())
    await asyncio.wait_for(slow.started.wait(), 5)
    clock.advance(31)
    await b.run_once()  # A's attempt recorded as lost; retried in 2 s
    clock.advance(2)
    assert await b.run_once() == 1
    gate.set()
    await asyncio.wait_for(running_a, 5)
    j = await job(store, job_id)
    assert (j.state, j.last_error) == ("done", None)
    assert slow.failures == []
    assert [e["action"] for e in await audit_entries(store)] == ["step.failed", "step.delivered"]


async def test_a_worker_of_the_same_name_taking_over_is_fenced_too(
    store: SQLiteStore, clock: ManualClock
) -> None:
    gate = asyncio.Event()
    handler = ScriptedHandler(gate=gate)
    a = worker(store, clock, handler, owner="gw-a", concurrency=1)
    again = worker(store, clock, handler, owner="gw-a", concurrency=1)  # restarted, same name
    job_id = await add(store, clock)
    first = asyncio.create_task(a.run_once())
    await asyncio.wait_for(handler.started.wait(), 5)
    clock.advance(31)
    assert await again.run_once() == 0  # a new claim: attempt 1 recorded as lost
    clock.advance(2)
    second = asyncio.create_task(again.run_once())
    gate.set()
    assert await asyncio.wait_for(first, 5) == 1
    await asyncio.wait_for(second, 5)
    assert handler.recorded == [(job_id, 2)]
    actions = [e["action"] for e in await audit_entries(store)]
    assert actions == ["step.failed", "step.delivered"]


async def test_lease_is_renewed_while_a_call_is_slow(store: SQLiteStore) -> None:
    # Real time here, in tenths of a second: renewal runs on asyncio.sleep.
    release = asyncio.Event()
    slow = ScriptedHandler(gate=release)
    a = Worker(store, {"registry": slow}, lease=0.3, owner="gw-a")
    b = Worker(store, {"registry": ScriptedHandler()}, lease=0.3, owner="gw-b")
    job_id = await store.transact(lambda tx: enqueue(tx, kind="registry", key="k", payload={}))
    running = asyncio.create_task(a.run_once())
    await asyncio.wait_for(slow.started.wait(), 5)
    for _ in range(5):  # 0.75 s in all: well past two leases
        await asyncio.sleep(0.15)
        assert await b.run_once() == 0
    release.set()
    await asyncio.wait_for(running, 5)
    assert slow.recorded == [(job_id, 1)]


async def test_all_attempts_are_audited_and_the_chain_verifies(
    store: SQLiteStore, clock: ManualClock
) -> None:
    handlers = {
        "registry": ScriptedHandler(TransientError("p", "busy"), None),
        "webhook": ScriptedHandler(PermanentError("portal", "410 gone")),
    }
    w = Worker(store, handlers, policy=NO_JITTER, clock=clock)
    r = await add(store, clock, key="r")
    h = await add(store, clock, key="h", kind="webhook")
    await w.run_once()
    clock.advance(5)
    await w.run_once()
    events = await audit_entries(store)
    per_job = {jid: [e["action"] for e in events if e["job"] == jid] for jid in (r, h)}
    assert per_job == {r: ["step.failed", "step.delivered"], h: ["job.dead"]}
    report = await verify_chain(store)
    assert report.ok and report.entries == 3


async def test_policy_may_depend_on_the_job(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler(TransientError("p", "busy"))
    once = RetryPolicy(max_attempts=1)
    w = Worker(store, {"registry": handler}, policy=lambda j: once, clock=clock)
    job_id = await add(store, clock)
    await w.run_once()
    assert (await job(store, job_id)).state == "dead"


async def test_background_loop_starts_a_woken_job_at_once(store: SQLiteStore) -> None:
    delivered = asyncio.Event()

    async def call(job: Job) -> None:
        delivered.set()

    handler = ScriptedHandler(call=call)
    async with Worker(store, {"registry": handler}, poll_interval=30.0) as w:
        await asyncio.sleep(0.05)  # the loop has polled once and is now waiting
        job_id = await store.transact(lambda tx: enqueue(tx, kind="registry", key="k", payload={}))
        w.wake()
        await asyncio.wait_for(delivered.wait(), 5)  # far sooner than the 30 s poll
        for _ in range(100):
            if (await job(store, job_id)).state == "done":
                break
            await asyncio.sleep(0.01)
    assert (await job(store, job_id)).state == "done"


async def test_stop_lets_in_flight_jobs_finish(store: SQLiteStore) -> None:
    async def call(job: Job) -> None:
        await asyncio.sleep(0.05)

    handler = ScriptedHandler(call=call)
    job_id = await store.transact(lambda tx: enqueue(tx, kind="registry", key="k", payload={}))
    w = Worker(store, {"registry": handler}, poll_interval=0.01)
    await w.start()
    await asyncio.wait_for(handler.started.wait(), 5)
    await w.stop()
    assert (await job(store, job_id)).state == "done"


async def test_stop_interrupts_a_hung_job_and_puts_it_back(store: SQLiteStore) -> None:
    handler = ScriptedHandler(gate=asyncio.Event())  # never released
    job_id = await store.transact(lambda tx: enqueue(tx, kind="registry", key="k", payload={}))
    w = Worker(store, {"registry": handler}, poll_interval=0.01, drain_timeout=0.05)
    await w.start()
    await asyncio.wait_for(handler.started.wait(), 5)
    await asyncio.wait_for(w.stop(), 5)  # a deadline, so a stop that hangs fails the test
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert j.last_error == "RuntimeError: interrupted: the worker stopped"
    [event] = await audit_entries(store)
    assert (event["action"], event["outcome"]) == ("step.failed", "retry")


async def test_a_hung_call_times_out_as_transient(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler(gate=asyncio.Event())
    w = worker(store, clock, handler, run_timeout=0.05)
    job_id = await add(store, clock)
    await asyncio.wait_for(w.run_once(), 5)
    j = await job(store, job_id)
    assert j.state == "pending"
    assert j.last_error is not None and j.last_error.startswith("TimeoutError")
    # What timed out is said, to the handler (a flow step's error) as in the job: it was empty.
    [failure] = handler.failures
    assert "0.05 s" in failure.error and "outbox worker" in failure.error, failure
    assert failure.error in j.last_error


async def test_a_timeout_of_the_handlers_own_is_not_called_the_workers(
    store: SQLiteStore, clock: ManualClock
) -> None:
    handler = ScriptedHandler(TimeoutError("the registry's token request timed out"))
    w = worker(store, clock, handler, run_timeout=30)
    await add(store, clock)
    await asyncio.wait_for(w.run_once(), 5)
    [failure] = handler.failures
    assert failure.error == "the registry's token request timed out"


async def test_concurrency_bounds_one_batch(store: SQLiteStore, clock: ManualClock) -> None:
    handler = ScriptedHandler()
    w = worker(store, clock, handler, concurrency=3)
    for i in range(5):
        await add(store, clock, key=f"k{i}")
    assert await w.run_once() == 3
    assert await w.run_once() == 2
    assert await w.run_once() == 0
    assert len(handler.recorded) == 5


async def test_an_error_is_kept_without_what_a_terminal_would_act_on(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """The job's last_error and the audit detail quote the registry's words with their control
    characters escaped: every reader (a terminal, a log viewer) sees text, not commands."""
    trap = "\x1b[2J\x1b[32mOK: no dead letters\a\u202e\nsecond line"
    w = worker(store, clock, ScriptedHandler(PermanentError("portal", f"E42: {trap}")))
    job_id = await add(store, clock)
    await w.run_once()
    j = await job(store, job_id)
    kept = r"E42: \x1b[2J\x1b[32mOK: no dead letters\x07\u202e" + "\nsecond line"
    assert j.last_error == f"PermanentError: portal: {kept}"
    [event] = await audit_entries(store)
    assert "\x1b" not in event["detail"] and r"\x1b[2J" in event["detail"]
