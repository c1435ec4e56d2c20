from __future__ import annotations

import asyncio

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
    connection must; each call is still counted."""
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
    calls = metrics.registry_calls.labels(
        registry="population", operation="lookup", outcome="error"
    )
    assert calls._value.get() == 3

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
    assert await state(ids[2]) == ("pending", 0, clock() + 30.0)  # deferred, attempt refunded
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
