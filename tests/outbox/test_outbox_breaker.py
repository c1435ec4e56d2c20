from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.api import PermanentError, TransientError
from gateway.metrics import Metrics
from gateway.outbox import (
    Breakers,
    CircuitBreaker,
    CircuitOpen,
    Job,
    RetryPolicy,
    Worker,
    enqueue,
    get_job,
)
from gateway.outbox.breaker import call_registry
from gateway.outbox.testing import ManualClock, ScriptedHandler, audit_entries
from gateway.outbox.worker import _PARKED_S
from gateway.store import SQLiteStore


def test_opens_after_consecutive_failures_and_refuses_with_retry_after() -> None:
    clock = ManualClock()
    b = CircuitBreaker("population", failure_threshold=3, reset_after=30.0, clock=clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # not consecutive any more
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"
    b.before_call()
    b.record_failure()
    assert b.state == "open"
    clock.advance(10)
    with pytest.raises(CircuitOpen) as refused:
        b.before_call()
    assert refused.value.retry_after == pytest.approx(20.0)
    assert isinstance(refused.value, TransientError)
    assert refused.value.endpoint == "population"


def test_half_open_lets_one_trial_through_and_success_closes() -> None:
    clock = ManualClock()
    b = CircuitBreaker("p", failure_threshold=1, reset_after=30.0, clock=clock)
    b.record_failure()
    clock.advance(30)
    assert b.state == "half-open"
    b.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        b.before_call()  # only one at a time
    b.record_success()
    assert b.state == "closed"
    b.before_call()
    b.before_call()


def test_a_failed_trial_reopens_for_a_full_period() -> None:
    clock = ManualClock()
    b = CircuitBreaker("p", failure_threshold=1, reset_after=30.0, clock=clock)
    b.record_failure()
    clock.advance(31)
    b.before_call()
    b.record_failure()
    assert b.state == "open"
    clock.advance(29)
    with pytest.raises(CircuitOpen):
        b.before_call()
    clock.advance(1)
    assert b.state == "half-open"


def test_an_abandoned_trial_stops_blocking_after_the_reset_period() -> None:
    clock = ManualClock()
    b = CircuitBreaker("p", failure_threshold=1, reset_after=30.0, clock=clock)
    b.record_failure()
    clock.advance(30)
    b.before_call()  # the caller never reports back
    clock.advance(30)
    b.before_call()  # a new trial is allowed


async def test_call_counts_transient_failures_but_not_permanent_ones() -> None:
    clock = ManualClock()
    b = CircuitBreaker("p", failure_threshold=2, reset_after=5.0, clock=clock)

    async def refused() -> None:
        raise PermanentError("p", "no such citizen")

    async def down() -> None:
        raise TransientError("p", "connection refused")

    async def fine() -> str:
        return "ok"

    for _ in range(3):
        with pytest.raises(PermanentError):
            await b.call(refused)
    assert b.state == "closed"
    for _ in range(2):
        with pytest.raises(TransientError):
            await b.call(down)
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        await b.call(fine)
    clock.advance(5)
    assert await b.call(fine) == "ok"
    assert b.state == "closed"


async def test_call_releases_the_trial_on_a_bug() -> None:
    clock = ManualClock()
    b = CircuitBreaker("p", failure_threshold=1, reset_after=5.0, clock=clock)
    b.record_failure()
    clock.advance(5)

    async def bug() -> None:
        raise KeyError("mapping")

    with pytest.raises(KeyError):
        await b.call(bug)
    assert b.state == "half-open"
    b.before_call()  # the slot is free again


async def test_call_registry_judges_as_the_breaker_does() -> None:
    """Lookups and flow steps call through call_registry: a cancelled caller or a bug of ours
    must not open the registry's circuit (it said nothing about the registry), a dropped
    connection must; each call is still counted, a cancelled one as ``cancelled``."""
    clock = ManualClock()
    metrics = Metrics()
    b = CircuitBreaker("population", failure_threshold=1, reset_after=5.0, clock=clock)
    hanging = asyncio.Event()

    async def hang() -> None:
        await hanging.wait()

    async def bug() -> None:
        raise KeyError("mapping")

    async def down() -> None:
        raise OSError("connection reset")

    call = asyncio.create_task(call_registry(b, "lookup", hang, metrics))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    with pytest.raises(KeyError):
        await call_registry(b, "lookup", bug, metrics)
    assert b.state == "closed"
    with pytest.raises(OSError):
        await call_registry(b, "lookup", down, metrics)
    assert b.state == "open"

    def calls(outcome: str) -> float:
        counted = metrics.registry_calls.labels(
            registry="population", operation="lookup", outcome=outcome
        )
        return float(counted._value.get())

    # The cancelled caller's call is its own outcome: nothing is known of the registry.
    assert (calls("cancelled"), calls("error")) == (1, 2)

    clock.advance(5)  # half-open: a cancelled trial frees the slot for the next caller
    call = asyncio.create_task(call_registry(b, "lookup", hang, metrics))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert b.state == "half-open"
    b.before_call()


def test_breakers_are_per_endpoint_and_publish_their_state() -> None:
    metrics = Metrics()
    clock = ManualClock()
    breakers = Breakers(failure_threshold=1, reset_after=10.0, clock=clock, metrics=metrics)
    pop = breakers.get("population")
    assert breakers.get("population") is pop
    ins = breakers.get("insurance")

    def gauge(name: str) -> float:
        value: float = metrics.circuit.labels(endpoint=name)._value.get()
        return value

    assert gauge("population") == 0
    pop.record_failure()
    assert (pop.state, ins.state) == ("open", "closed")
    assert gauge("population") == 2 and gauge("insurance") == 0
    clock.advance(10)
    assert pop.state == "half-open"
    assert gauge("population") == 1
    pop.record_success()
    assert gauge("population") == 0
    assert breakers.states() == {"population": "closed", "insurance": "closed"}


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("p", failure_threshold=0)


async def test_open_circuit_defers_jobs_without_using_attempts(
    store: SQLiteStore, clock: ManualClock
) -> None:
    breakers = Breakers(failure_threshold=2, reset_after=30.0, clock=clock)
    registry_up = False
    calls: list[int] = []

    async def deliver(job: Job) -> None:
        async def send() -> None:
            calls.append(job.id)
            if not registry_up:
                raise TransientError("population", "connection refused")

        await breakers.get("population").call(send)

    handler = ScriptedHandler(call=deliver)
    metrics = Metrics()
    policy = RetryPolicy(max_attempts=3, base_delay=100.0, max_delay=100.0, rng=lambda: 0.0)
    w = Worker(
        store, {"registry": handler}, policy=policy, clock=clock, concurrency=1, metrics=metrics
    )
    ids = []
    for i in range(3):
        ids.append(
            await store.transact(
                lambda tx, i=i: enqueue(tx, kind="registry", key=f"k{i}", payload={}, now=clock())
            )
        )

    async def state(job_id: int) -> tuple[str, int, float]:
        j = await store.read(lambda tx: get_job(tx, job_id))
        assert j is not None
        return (j.state, j.attempts, j.run_after)

    for _ in range(3):
        await w.run_once()
    assert calls == ids[:2]  # the third never reached the registry
    assert breakers.get("population").state == "open"
    assert await state(ids[0]) == ("pending", 1, clock() + 100.0)
    # Deferred, attempt refunded: parked on the circuit (its due time only a fallback), it is
    # taken as the trial when the circuit lets one through.
    assert await state(ids[2]) == ("pending", 0, clock() + _PARKED_S)
    assert [f.job for f in handler.failures] == ids[:2]  # a deferral is no failed attempt
    assert len(await audit_entries(store)) == 2  # and not audited
    assert metrics.waits.labels(kind="registry")._value.get() == 1  # a wait, not an attempt
    assert metrics.attempts.labels(kind="registry", outcome="deferred")._value.get() == 0

    clock.advance(29)
    assert await w.run_once() == 0  # nothing is due while the circuit is open
    clock.advance(1)
    registry_up = True
    assert await w.run_once() == 1  # the half-open trial: job 3 goes through
    assert await state(ids[2]) == ("done", 1, clock())
    assert breakers.get("population").state == "closed"
    clock.advance(100)
    assert await w.run_once() == 1
    assert await w.run_once() == 1
    assert [(await state(i))[:2] for i in ids] == [("done", 2), ("done", 2), ("done", 1)]


async def _run_for(w: Worker, clock: ManualClock, seconds: int) -> None:
    """Move the clock one second at a time, running every job due at each."""
    for _ in range(seconds):
        clock.advance(1)
        for _ in range(50):  # bounded: a job deferred by 0 s would otherwise come back at once
            if not await w.run_once():
                break


async def test_a_failed_trial_uses_no_attempt_so_an_outage_does_not_kill_the_job(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """Found by probing: the half-open circuit's trial is a real job's call, and its failure
    spent one of the job's attempts; with the defaults a dossier went failed (a callback, a push
    dead) after about a minute of an outage, although its circuit was open. Now only calls made
    while the circuit is closed use attempts."""
    breakers = Breakers(failure_threshold=2, reset_after=30.0, clock=clock)
    registry_up = False
    calls = 0

    async def deliver(job: Job) -> None:
        async def send() -> None:
            nonlocal calls
            calls += 1
            if not registry_up:
                raise TransientError("civil_status", "HTTP 503: Service Unavailable")

        await call_registry(breakers.get("civil_status"), "death.register", send, None)

    handler = ScriptedHandler(call=deliver)
    metrics = Metrics()
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=60.0, rng=lambda: 0.0)
    w = Worker(
        store, {"registry": handler}, policy=policy, clock=clock, concurrency=1, metrics=metrics
    )
    job_id = await store.transact(
        lambda tx: enqueue(tx, kind="registry", key="k", payload={}, now=clock())
    )
    assert job_id is not None
    assert await w.run_once() == 1
    await _run_for(w, clock, 400)  # two closed attempts open the circuit, then trials every 60 s
    j = await store.read(lambda tx: get_job(tx, job_id))
    assert j is not None and (j.state, j.attempts) == ("pending", 2), j
    trials = handler.failures[2:]
    assert calls == 2 + len(trials) and len(trials) >= 5
    # Each failed trial was a real call: told to the handler (a flow step's history keeps it) and
    # audited, with its attempt number unchanged, back for the trial after the next.
    assert {(f.attempt, f.dead, f.retry_in) for f in trials} == {(3, False, 60.0)}
    events = await audit_entries(store)
    assert len(events) == calls
    assert all(
        "(the trial of circuit civil_status: not counted)" in e["detail"] for e in events[2:]
    )
    assert metrics.attempts.labels(kind="registry", outcome="retry")._value.get() == calls
    assert breakers.get("civil_status").state in ("open", "half-open")

    registry_up = True
    await _run_for(w, clock, 60)
    j = await store.read(lambda tx: get_job(tx, job_id))
    assert j is not None and (j.state, j.attempts) == ("done", 3), j
    assert breakers.get("civil_status").state == "closed"


async def test_a_job_that_fails_alone_still_goes_dead_once_others_close_the_circuit(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """The liveness side: a job the registry fails for its own reasons opens the circuit; it is
    not the next trial (a failed trial comes back one reset period after the next), so another
    waiting job's trial finds the registry up and closes the circuit, and the failing job's
    attempts, made while it is closed, count again: it ends dead."""
    breakers = Breakers(failure_threshold=2, reset_after=30.0, clock=clock)
    happened: list[tuple[str, str]] = []

    async def deliver(job: Job) -> None:
        async def send() -> None:
            if job.key == "poison":
                happened.append(("poison", "failed"))
                raise TransientError("civil_status", "HTTP 503: Service Unavailable")
            happened.append((job.key, "delivered"))

        await call_registry(breakers.get("civil_status"), "death.register", send, None)

    handler = ScriptedHandler(call=deliver)
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=60.0, rng=lambda: 0.0)
    w = Worker(store, {"registry": handler}, policy=policy, clock=clock, concurrency=1)

    async def add(key: str) -> int:
        job_id = await store.transact(
            lambda tx: enqueue(tx, kind="registry", key=key, payload={}, now=clock())
        )
        assert job_id is not None
        return job_id

    poison = await add("poison")
    await w.run_once()
    clock.advance(1)
    await w.run_once()  # its second failure opens the circuit
    assert breakers.get("civil_status").state == "open"
    healthy = await add("healthy")
    await _run_for(w, clock, 200)

    def state(job_id: int) -> Any:
        return store.read(lambda tx: get_job(tx, job_id))

    assert ((await state(healthy)).state, (await state(poison)).state) == ("done", "dead")
    assert (await state(poison)).attempts == 3
    # The poison job's trial failed and was not counted; the healthy job's closed the circuit,
    # and only then did the poison job use its last attempt.
    assert happened == [("poison", "failed")] * 3 + [("healthy", "delivered"), ("poison", "failed")]
    assert [f.dead for f in handler.failures] == [False, False, False, True]
