"""One callback receiver that is down does not hold back the rest of the outbox.

Found by probing: 3,000 dossiers whose callback receiver was down left ~12,000 callbacks pending,
and each time the circuit's trial failed they all came due together (the open circuit gave every
refused callback the same due time, and the versions behind each dossier's first woke with it).
Claimed ``ORDER BY run_after`` ahead of everything newer, they made ~1,060 claims and deferrals a
second, and a new dossier of any client took 13-120 s instead of 0.2 s. Now a callback the circuit
holds back is parked on it: one is taken as the trial when the circuit lets one through, and the
receiver's answers wake the rest.

Counted in claims over a clock moved by hand, against a real receiver over a real socket: no
timing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.metrics import Metrics
from gateway.outbox import Breakers, Worker, endpoint_of, enqueue, list_jobs
from gateway.outbox.testing import ManualClock, ScriptedHandler
from gateway.store import SQLiteStore
from tests.outbox.callbacks import (
    POLICY,
    Counting,
    Receiver,
    callback_handler,
    code,
    poll,
    queue_callbacks,
    serve_receiver,
)

DOSSIERS = 100
VERSIONS = 4
RESET = 10.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver(down_status=503) as served:
        yield served


async def test_callbacks_for_a_receiver_down_cost_a_claim_per_reset_not_one_each(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    clock = ManualClock()
    breakers = Breakers(failure_threshold=5, reset_after=RESET, clock=clock)
    metrics = Metrics()
    waits = metrics.waits.labels(kind="callback")
    async with SQLiteStore(tmp_path / "gw.db") as store, aiohttp.ClientSession() as session:
        callbacks = Counting(callback_handler(store, session, url, breakers, max_in_flight=4))
        steps = ScriptedHandler()  # a registry's flow step: it succeeds
        worker = Worker(
            store,
            {"callback": callbacks, "flow.step": steps},
            policy=POLICY,
            clock=clock,
            concurrency=8,
            metrics=metrics,
        )
        await store.transact(queue_callbacks(url, clock(), dossiers=DOSSIERS, versions=VERSIONS))
        await poll(worker, clock, 2 * RESET)  # the circuit opens; the callbacks wait
        assert breakers.get(f"callback {endpoint_of(url)}").state == "open"
        claims, waited = callbacks.runs.total(), waits._value.get()

        # Six resets of the circuit with the receiver down, and at every poll a flow step queued
        # as it comes (what is due then is due before it): each is claimed in the first batch.
        late = []
        for n in range(round(6 * RESET / 0.25)):
            key = f"{code(0)}/step/{n}"
            clock.advance(0.25)
            await store.transact(
                lambda tx, key=key: enqueue(
                    tx, kind="flow.step", key=key, payload={}, dossier=code(0), now=clock()
                )
            )
            before = len(steps.runs)
            await worker.run_once()
            if key not in {j.key for j in steps.runs[before:]}:
                late.append(key)
            for _ in range(200):
                if not await worker.run_once():
                    break
        assert late == []
        assert len(steps.runs) == round(6 * RESET / 0.25)  # every step, once

        # The trial, once per reset, and the versions of its dossier behind it: not 400 a reset.
        assert callbacks.runs.total() - claims <= 6 * 3, callbacks.runs.most_common(5)
        assert waits._value.get() - waited <= 6 * 3
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
        callback_jobs = [j for j in jobs if j.kind == "callback"]
        assert len(callback_jobs) == DOSSIERS * VERSIONS
        assert {j.state for j in callback_jobs} == {"pending"}  # none dead, none lost
        assert got.got == []


async def test_a_receiver_back_gets_every_callback_in_order_within_a_few_resets(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    clock = ManualClock()
    breakers = Breakers(failure_threshold=5, reset_after=RESET, clock=clock)
    async with SQLiteStore(tmp_path / "gw.db") as store, aiohttp.ClientSession() as session:
        callbacks = Counting(callback_handler(store, session, url, breakers, max_in_flight=4))
        worker = Worker(store, {"callback": callbacks}, policy=POLICY, clock=clock, concurrency=8)
        await store.transact(queue_callbacks(url, clock(), dossiers=DOSSIERS, versions=VERSIONS))
        await poll(worker, clock, 5 * RESET)  # down for five resets
        assert got.got == []

        got.down = False
        claims = callbacks.runs.total()
        # Back: the next trial finds it up, and its answers wake the rest. At most two resets
        # until that trial (the last failed one may have just been made), then the backlog.
        waited = 0.0
        while True:
            await poll(worker, clock, 1.0)
            waited += 1.0
            jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
            if {j.state for j in jobs} == {"done"} or waited > 3 * RESET:
                break
    assert {j.state for j in jobs} == {"done"}, Counter(j.state for j in jobs)
    assert waited <= 3 * RESET
    assert len(got.got) == DOSSIERS * VERSIONS  # each once
    for n in range(DOSSIERS):
        assert [v for c, v in got.got if c == code(n)] == list(range(1, VERSIONS + 1))
    # A few claims per callback (one sent, one put back while four to the receiver were in
    # flight), not a claim each second for each one waiting.
    assert callbacks.runs.total() - claims <= 3 * DOSSIERS * VERSIONS
