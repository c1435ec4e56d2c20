"""Leases and due times, on both stores: attempts whose holder stopped mid-way (killed, hung, cut
off from the store), a holder whose lease only looks expired, times written on a clock since set
back.

A gateway that dies while it waits for a registry's answer leaves its job ``running`` under a
lease that runs out. Whoever takes the job over must record that attempt — failed, its outcome
unknown — before trying again: the step's history then shows a write whose answer was lost (a
correction that changes it is refused), and a job that kills every gateway that runs it ends dead
after its attempts instead of coming back for ever.

The dying gateway is played by its claim (the store's own block, as its worker ran it); its
lease is made to run out by moving the row's times back, so both stores (PostgreSQL compares
the times on its own clock) see the same thing without waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.outbox import Job, RetryPolicy, Worker, enqueue, get_job
from gateway.outbox.testing import ScriptedHandler, audit_entries
from gateway.store import Store, Tx, open_store
from tests.outbox.stores import raw_sql, store_urls

NOW = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, rng=lambda: 0.0)
LATER = RetryPolicy(max_attempts=2, base_delay=600.0, max_delay=600.0, rng=lambda: 0.0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema of the real PostgreSQL server (dropped after)."""
    yield from store_urls(request.param, tmp_path, "lost")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as s:
        yield s


def leases_run_out(url: str) -> None:
    raw_sql(url, "UPDATE outbox_jobs SET lease_until = lease_until - 3600 WHERE state = 'running'")


def due_now(url: str) -> None:
    raw_sql(url, "UPDATE outbox_jobs SET run_after = run_after - 3600 WHERE state = 'pending'")


async def add(store: Store) -> int:
    job_id = await store.transact(
        lambda tx: enqueue(
            tx,
            kind="registry",
            key=f"k-{uuid.uuid4().hex}",
            payload={"step": "birth.register", "service": "civil_status/birth.register/v1"},
            dossier="000.00.00.H41-261122-0001",
        )
    )
    assert job_id is not None
    return job_id


async def dies_holding(store: Store, job_id: int, gateway: str) -> None:
    """A gateway claims the due job, starts its attempt, and is killed: nothing more is written."""

    def claim(tx: Tx) -> list[int]:
        rows = tx.all("outbox.claim", owner=f"{gateway}/1", now=time.time(), lease=30, limit=5)
        return [int(r["id"]) for r in rows]

    assert await store.transact(claim) == [job_id]


async def job(store: Store, job_id: int) -> Job:
    found = await store.read(lambda tx: get_job(tx, job_id))
    assert found is not None
    return found


async def test_an_attempt_whose_gateway_died_is_recorded_before_the_next(
    store: Store, store_url: str
) -> None:
    handler = ScriptedHandler()
    worker = Worker(store, {"registry": handler}, policy=NOW, owner="gw-b")
    job_id = await add(store)
    await dies_holding(store, job_id, "gw-a")
    assert await worker.run_once() == 0  # gw-a's lease still holds
    leases_run_out(store_url)

    assert await worker.run_once() == 1
    lost = "the gateway stopped during attempt 1 (its lease ran out): its outcome is unknown"
    # Told to the handler (a flow step writes it in the step's history) as a retried failure,
    # before attempt 2 ran and delivered.
    assert [(f.attempt, f.error, f.dead) for f in handler.failures] == [(1, lost, False)]
    assert handler.recorded == [(job_id, 2)]
    events = await audit_entries(store)
    assert [(e["action"], e.get("outcome", "ok")) for e in events] == [
        ("step.failed", "retry"),
        ("step.delivered", "ok"),
    ]
    assert events[0]["detail"].startswith(f"attempt 1: AttemptLost: {lost}")
    assert (await job(store, job_id)).state == "done"


async def test_a_job_that_kills_every_gateway_ends_dead_after_its_attempts(
    store: Store, store_url: str
) -> None:
    handler = ScriptedHandler()
    worker = Worker(store, {"registry": handler}, policy=LATER, owner="gw-z")
    job_id = await add(store)

    await dies_holding(store, job_id, "gw-1")  # attempt 1
    leases_run_out(store_url)
    assert await worker.run_once() == 0  # attempt 1 recorded; attempt 2 due in 600 s
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert j.last_error is not None and "stopped during attempt 1" in j.last_error

    due_now(store_url)
    await dies_holding(store, job_id, "gw-2")  # attempt 2, the last the policy allows
    leases_run_out(store_url)
    assert await worker.run_once() == 0

    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("dead", 2)
    assert j.last_error is not None and "stopped during attempt 2" in j.last_error
    assert [(f.attempt, f.dead) for f in handler.failures] == [(1, False), (2, True)]
    assert handler.runs == []  # the job itself never ran here
    events = await audit_entries(store)
    assert [e["action"] for e in events] == ["step.failed", "job.dead"]


async def test_a_worker_never_takes_over_a_job_it_is_still_running(
    store: Store, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its lease looks expired (the process stalled, the clock stepped, another process held the
    SQLite write lock): the worker still running the job must not start it again beside itself,
    nor record it lost, and the one attempt's result is the one kept."""
    gate = asyncio.Event()
    handler = ScriptedHandler(gate=gate)
    worker = Worker(store, {"registry": handler}, policy=NOW, owner="gw-a")
    job_id = await add(store)
    first = asyncio.create_task(worker.run_once())
    await asyncio.wait_for(handler.started.wait(), 5)
    leases_run_out(store_url)

    assert await worker.run_once() == 0
    assert len(handler.runs) == 1 and handler.failures == []
    gate.set()
    assert await asyncio.wait_for(first, 5) == 1
    assert handler.recorded == [(job_id, 1)]
    j = await job(store, job_id)
    assert (j.state, j.attempts) == ("done", 1)
    assert [e["action"] for e in await audit_entries(store)] == ["step.delivered"]
    assert "discarded" not in caplog.text


async def test_another_gateway_takes_over_a_job_whose_holder_stalled(
    store: Store, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process cannot tell a stalled holder from a dead one: it records the attempt as
    lost and tries again; the holder, back, is told the truth and its result is discarded."""
    gate = asyncio.Event()
    stalled = ScriptedHandler(gate=gate)
    a = Worker(store, {"registry": stalled}, policy=NOW, owner="gw-a")
    b = Worker(store, {"registry": ScriptedHandler()}, policy=NOW, owner="gw-b")
    job_id = await add(store)
    running = asyncio.create_task(a.run_once())
    await asyncio.wait_for(stalled.started.wait(), 5)
    leases_run_out(store_url)
    assert await b.run_once() == 1
    gate.set()
    await asyncio.wait_for(running, 5)
    assert stalled.recorded == []
    assert (await job(store, job_id)).state == "done"
    assert "another gateway took the job over after its lease ran out" in caplog.text


async def test_a_renewal_that_meets_the_job_just_done_does_not_say_it_was_taken_over(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is renewed until the attempt's closing transaction has committed; a renewal sent
    while that transaction ran found the job done, not running, and, its answer back first,
    logged that another gateway had taken the job over and this attempt's result would be
    discarded — beside "delivered", on a job that nobody took (seen probing three gateways on one
    PostgreSQL store). Here the renewal is sent while the closing transaction runs (its
    recording waits for it), and its answer reaches the worker first."""
    renewing, renewed = threading.Event(), asyncio.Event()
    closing = False
    units: list[Any] = []
    transact = store.transact

    async def watched(work: Any, **kw: Any) -> Any:
        if not closing:
            return await transact(work, **kw)
        units.append(work)
        if len(units) == 1:  # the closing transaction; its answer reaches the worker last
            result = await transact(work, **kw)
            await asyncio.wait_for(renewed.wait(), 10)
            return result
        renewing.set()  # a renewal, sent while the closing transaction runs
        try:
            return await transact(work, **kw)
        finally:
            renewed.set()

    monkeypatch.setattr(store, "transact", watched)

    class SlowToRecord(ScriptedHandler):
        """Its result's recording, inside the closing transaction, lasts until a renewal is sent."""

        async def run(self, job: Job) -> Callable[[Tx], Any]:
            recorded = await super().run(job)

            def record(tx: Tx) -> Any:
                assert renewing.wait(10), "no renewal was sent while the job was being closed"
                return recorded(tx)

            nonlocal closing
            closing = True
            return record

    handler = SlowToRecord()
    worker = Worker(store, {"registry": handler}, policy=NOW, lease=0.3, owner="gw-a")
    job_id = await add(store)
    assert await asyncio.wait_for(worker.run_once(), 30) == 1
    assert renewing.is_set()
    assert handler.recorded == [(job_id, 1)]
    assert (await job(store, job_id)).state == "done"
    assert "lost the lease" not in caplog.text
    assert "discarded" not in caplog.text


def written_ahead(url: str, seconds: float) -> None:
    """As if every job had last been written on a clock ``seconds`` ahead (since set back)."""
    raw_sql(
        url,
        f"UPDATE outbox_jobs SET run_after = run_after + {seconds}, "
        f"lease_until = lease_until + {seconds}, updated_at = updated_at + {seconds}, "
        f"created_at = created_at + {seconds}",
    )


def an_hour_passes(url: str) -> None:
    raw_sql(
        url, "UPDATE outbox_jobs SET run_after = run_after - 3600, lease_until = lease_until - 3600"
    )


async def test_times_written_on_a_clock_since_set_back_count_from_now(
    store: Store, store_url: str
) -> None:
    """The host ran 30 days ahead, then its clock was corrected: a dead gateway's lease and a
    retry's due time written on that clock are kept as spans from now (a lease of 30 s, a wait of
    600 s), not waited for 30 days."""
    handler = ScriptedHandler()
    worker = Worker(store, {"registry": handler}, policy=LATER, owner="gw-b")
    held = await add(store)
    await dies_holding(store, held, "gw-ahead")  # lease: 30 s
    waiting = await store.transact(
        lambda tx: enqueue(tx, kind="registry", key="w", payload={}, run_after=time.time() + 600)
    )
    written_ahead(store_url, 30 * 86_400)

    assert await worker.run_once() == 0  # the lease holds 30 s, the wait 600 s: from now
    an_hour_passes(store_url)
    assert await worker.run_once() == 1
    assert handler.recorded == [(waiting, 1)]
    assert [(f.job, f.attempt) for f in handler.failures] == [(held, 1)]  # taken over
    assert (await job(store, held)).state == "pending"
