"""Push delivery through the real outbox worker to an agency endpoint on a real socket: one
agency gets a document's messages in the order they were queued, even when one of them has to be
retried, and an agency endpoint that is down makes its pushes wait rather than die.

The worker runs batch by batch (``run_once``) on a clock moved by hand, so what is due when is
the test's to say; the store (SQLite) and the HTTP exchange are real.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.audit import EventFilter, query_events
from gateway.exchange import delivery
from gateway.exchange.hub import AgencyRoute, DocumentHub
from gateway.exchange.model import VN_TZ
from gateway.outbox import Breakers, Job, RetryPolicy, Worker, list_jobs, replay
from gateway.outbox.testing import ManualClock

from .factories import NGHE_AN, TAY_NINH_STC, chunks, signed_status


@dataclass
class Endpoint:
    """An agency's system: answers 503 while ``failing`` is above 0 (counting each one down),
    or while ``down``; records what it took (headers and body) in ``received``."""

    failing: int = 0
    down: bool = False
    calls: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls += 1
        if self.down or self.failing > 0:
            self.failing -= 1
            return web.Response(status=503)
        self.received.append((dict(request.headers), body))
        return web.Response(status=200)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/edoc", ep.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield ep, str(server.make_url("/edoc"))
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _pushing(hub: DocumentHub, agency: str, url: str) -> DocumentHub:
    """The same hub (store, blobs, keys) with ``agency`` taking pushes at ``url``."""
    agencies = {**hub.agencies, agency: AgencyRoute(agency, url)}
    return DocumentHub(
        hub.store,
        hub.blobs,
        organ_id=hub.organ_id,
        agencies=agencies,
        trust=hub.trust,
        signer=hub.signer,
    )


def _worker(
    hub: DocumentHub,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    *,
    concurrency: int,
    max_attempts: int = 8,
    breakers: Breakers | None = None,
) -> Worker:
    handlers = delivery.handlers(
        hub.store, hub.blobs, hub.agencies, lambda: session, breakers=breakers
    )
    return Worker(
        hub.store,
        handlers,
        policy=RetryPolicy(max_attempts=max_attempts, base_delay=10, max_delay=10, jitter=0),
        concurrency=concurrency,
        clock=clock,
    )


async def _jobs(hub_or_worker: DocumentHub | Worker, state: str | None = None) -> list[Job]:
    return await hub_or_worker.store.read(lambda tx: list_jobs(tx, state=state))


async def _drain(worker: Worker, clock: ManualClock, step: float, rounds: int = 50) -> None:
    """Run batches, moving the clock ``step`` on between them, until no job is left to run."""
    for _ in range(rounds):
        await worker.run_once()
        if not await _jobs(worker, "pending"):
            return
        clock.advance(step)
    raise AssertionError("jobs still pending after every round")


async def test_statuses_reach_the_sender_in_order_after_a_retry(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    ep, url = endpoint
    hub = _pushing(hub, TAY_NINH_STC, url)  # the sender's system takes its statuses pushed
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8)
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    at = datetime.now(VN_TZ)
    codes: dict[str, str] = {}

    async def status(code: str, n: int) -> None:
        message = signed_status(key, NGHE_AN, code, at=at + timedelta(seconds=n))
        codes[hashlib.sha256(message).hexdigest()] = code
        await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")

    ep.failing = 1  # a moment's 503: the 01 is put back for 10 s
    await status("01", 0)
    await worker.run_once()
    await status("03", 1)
    await status("06", 2)
    await worker.run_once()  # the 03 and the 06 are due now; the 01 is not
    await _drain(worker, clock, step=1.0)
    order = [codes[hashlib.sha256(body).hexdigest()] for _, body in ep.received]
    assert order == ["01", "03", "06"]
    assert ep.calls == 4  # waiting cost no call


async def test_a_revoke_does_not_overtake_the_document_it_revokes(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8)
    ep.failing = 1
    new = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    await worker.run_once()  # 503: the document is put back for 10 s
    revoke = await hub.receive(chunks(make_package(doc_type=1)), sender=TAY_NINH_STC, subsystem="s")
    await worker.run_once()
    await _drain(worker, clock, step=1.0)
    got = [(h["X-Lienthong-Kind"], h["X-Lienthong-Document"]) for h, _ in ep.received]
    assert got == [("edoc", new.id), ("revocation", revoke.id)]


async def test_pushes_to_an_agency_that_is_down_wait_without_using_attempts(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    # Four documents for an agency whose system is being redeployed; each push may be tried
    # twice. Once its endpoint has failed twice, the others wait for it instead of failing.
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    breakers = Breakers(failure_threshold=2, reset_after=30, clock=clock)
    worker = _worker(hub, session, clock, concurrency=1, max_attempts=2, breakers=breakers)
    for n in range(4):
        await hub.receive(
            chunks(make_package(number=f"{2600 + n}")), sender=TAY_NINH_STC, subsystem="s"
        )
    ep.down = True
    for _ in range(3):  # one round of each job at least, then past every retry's delay
        while await worker.run_once():
            pass
        clock.advance(10)
    assert ep.calls == 2
    assert await _jobs(hub, "dead") == []
    ep.down = False  # back: what waited goes out
    clock.advance(30)
    await _drain(worker, clock, step=30.0)
    assert len(ep.received) == 4
    assert await _jobs(hub, "dead") == []
    assert all(j.state == "done" for j in await _jobs(hub))


async def test_pushes_wait_out_an_outage_longer_than_their_attempts(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    """Found by probing: every 30 s the half-open circuit let one push through as its trial, and
    that try used one of the push's attempts, so an agency down for a couple of minutes got its
    pushes dead-lettered one trial at a time. A failed trial uses no attempt now."""
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    breakers = Breakers(failure_threshold=2, reset_after=30, clock=clock)
    worker = _worker(hub, session, clock, concurrency=1, max_attempts=2, breakers=breakers)
    for n in range(4):
        await hub.receive(
            chunks(make_package(number=f"{2700 + n}")), sender=TAY_NINH_STC, subsystem="s"
        )
    ep.down = True
    for _ in range(60):  # ten minutes down: a trial every 30 s
        while await worker.run_once():
            pass
        clock.advance(10)
    assert ep.calls >= 2 + 8  # two that opened the circuit, then the trials, each a real call
    assert await _jobs(hub, "dead") == []
    ep.down = False
    await _drain(worker, clock, step=30.0)
    assert len(ep.received) == 4
    assert all(j.state == "done" for j in await _jobs(hub))


async def test_a_push_waiting_behind_a_retried_one_comes_back_when_that_one_is_due(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    """Found by probing: a push held behind an earlier one looked again every half second for as
    long as that one was put back (a claim, a write and a log line each time, claimed ahead of
    new work), as callbacks did. It now waits until that one is due, and is made due as soon as
    that one is sent."""
    ep, url = endpoint
    hub = _pushing(hub, TAY_NINH_STC, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8)
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    at = datetime.now(VN_TZ)
    ep.failing = 1  # the 01 is put back for 10 s
    for n, code in enumerate(("01", "03")):
        message = signed_status(key, NGHE_AN, code, at=at + timedelta(seconds=n))
        await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")
        await worker.run_once()
    first, second = sorted(await _jobs(hub, "pending"), key=lambda j: j.id)
    assert first.run_after == clock.now + 10
    assert second.run_after == first.run_after + 0.5  # not clock.now + 0.5
    assert second.attempts == 0  # a wait uses no attempt
    clock.advance(10)
    await worker.run_once()  # the 01 goes, and makes the 03 due at once
    assert (await _jobs(hub, "pending"))[0].run_after == clock.now
    await worker.run_once()
    assert len(ep.received) == 2 and await _jobs(hub, "pending") == []


async def _replay(hub: DocumentHub, job: Job) -> None:
    """What an operator's ``lienthong outbox replay`` does to a dead letter."""
    await hub.store.transact(lambda tx: replay(tx, job.id))


async def _delivered(hub: DocumentHub, document: str, job: Job) -> dict[str, Any]:
    page = await query_events(hub.store, EventFilter(document=document), limit=1000)
    [event] = [e for e in page.items if e["action"] == "step.delivered" and e["job"] == job.id]
    return event


async def test_a_replayed_dead_status_is_not_sent_after_the_later_ones(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    """Found by probing: the 01 died (a 503 with its last attempt), the 03 and the 06 went, and
    the operator's replay of the 01 sent it last: the sender's system was told "received" of a
    document the recipient had finished. It is now done unsent, "superseded by push N", as a
    replayed callback is."""
    ep, url = endpoint
    hub = _pushing(hub, TAY_NINH_STC, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8, max_attempts=1)
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    at = datetime.now(VN_TZ)
    codes: dict[str, str] = {}

    async def status(code: str, n: int) -> None:
        message = signed_status(key, NGHE_AN, code, at=at + timedelta(seconds=n))
        codes[hashlib.sha256(message).hexdigest()] = code
        await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")

    ep.failing = 1
    await status("01", 0)
    await worker.run_once()
    [dead] = await _jobs(hub, "dead")
    await status("03", 1)
    await status("06", 2)
    await _drain(worker, clock, step=1.0)
    await _replay(hub, dead)
    await _drain(worker, clock, step=1.0)
    order = [codes[hashlib.sha256(body).hexdigest()] for _, body in ep.received]
    assert order == ["03", "06"]
    assert ep.calls == 3  # the 01's 503, the 03, the 06: the replay called nobody
    assert all(j.state == "done" for j in await _jobs(hub))
    last = max(j.id for j in await _jobs(hub))
    event = await _delivered(hub, doc, dead)
    assert event["detail"] == f"attempt 1: not sent, superseded by push {last}"
    assert event["service"] == "documents/status"


async def test_a_replayed_dead_document_is_not_sent_after_its_revoke(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8, max_attempts=1)
    ep.failing = 1
    new = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    await worker.run_once()  # 503 with its only attempt: dead
    [dead] = await _jobs(hub, "dead")
    revoke = await hub.receive(chunks(make_package(doc_type=1)), sender=TAY_NINH_STC, subsystem="s")
    await _drain(worker, clock, step=1.0)
    await _replay(hub, dead)
    update = await hub.receive(chunks(make_package(doc_type=2)), sender=TAY_NINH_STC, subsystem="s")
    await _drain(worker, clock, step=1.0)  # the update queued behind it goes
    got = [(h["X-Lienthong-Kind"], h["X-Lienthong-Document"]) for h, _ in ep.received]
    assert got == [("revocation", revoke.id), ("update", update.id)]
    assert all(j.state == "done" for j in await _jobs(hub))
    [pushed] = [j for j in await _jobs(hub) if j.document == revoke.id]
    event = await _delivered(hub, new.id, dead)
    assert event["detail"] == f"attempt 1: not sent, superseded by push {pushed.id}"


async def test_a_replayed_dead_push_with_nothing_sent_after_it_is_sent(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    # A later push of another document sent, or one about it still to be sent, does not
    # supersede it: the replayed document goes, then the revoke queued behind it.
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=8, max_attempts=1)
    ep.failing = 1
    new = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    await worker.run_once()
    [dead] = await _jobs(hub, "dead")
    other = await hub.receive(
        chunks(make_package(number="2800")), sender=TAY_NINH_STC, subsystem="s"
    )
    await _drain(worker, clock, step=1.0)  # another document of the agency's went
    await _replay(hub, dead)
    revoke = await hub.receive(chunks(make_package(doc_type=1)), sender=TAY_NINH_STC, subsystem="s")
    await _drain(worker, clock, step=1.0)
    got = [h["X-Lienthong-Document"] for h, _ in ep.received]
    assert got == [other.id, new.id, revoke.id]
    assert all(j.state == "done" for j in await _jobs(hub))


async def test_a_delivery_once_acked_shows_no_earlier_error(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    """Found by probing: a push that failed (503) and then went, or that the agency pulled and
    acknowledged meanwhile, showed its sender ``delivery: acked`` beside ``last_error: …
    answered 503``, which reads as a failure. The error is shown while it is current (the
    delivery not acked); ``attempts`` still counts the failed pushes."""
    ep, url = endpoint
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    worker = _worker(hub, session, clock, concurrency=1)

    async def line(doc: str) -> dict[str, Any]:
        (shown,) = (await hub.statuses(doc, TAY_NINH_STC))["recipients"]
        return {k: shown[k] for k in ("delivery", "attempts", "last_error")}

    pushed = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    ep.failing = 1
    await worker.run_once()
    failed = await line(pushed)
    assert (failed["delivery"], failed["attempts"]) == ("pending", 1)
    assert "answered 503" in failed["last_error"]
    clock.advance(10)
    await worker.run_once()  # the retry goes
    assert await line(pushed) == {"delivery": "acked", "attempts": 1, "last_error": None}

    ep.down = True
    pulled = (
        await hub.receive(chunks(make_package(number="2492")), sender=TAY_NINH_STC, subsystem="s")
    ).id
    await worker.run_once()
    assert "answered 503" in (await line(pulled))["last_error"]
    await hub.fetch(pulled, NGHE_AN, subsystem="s")
    assert "answered 503" in (await line(pulled))["last_error"]  # delivered: not yet confirmed
    await hub.ack(pulled, NGHE_AN, subsystem="s")
    assert await line(pulled) == {"delivery": "acked", "attempts": 1, "last_error": None}


async def test_a_push_given_up_for_its_time_of_failing_says_so_to_the_sender(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
) -> None:
    """Found with the dossiers' give-up fix: a push given up after ``[outbox] give_up_after_s``
    of failing showed its sender (``last_error``) only the agency's last 503, as if it had
    failed a few times, not for that long."""
    ep, url = endpoint
    ep.down = True
    hub = _pushing(hub, NGHE_AN, url)
    clock = ManualClock()
    handlers = delivery.handlers(
        hub.store,
        hub.blobs,
        hub.agencies,
        lambda: session,
        breakers=Breakers(failure_threshold=10_000, clock=clock),
    )
    worker = Worker(
        hub.store,
        handlers,
        policy=RetryPolicy(max_attempts=100, base_delay=10, max_delay=10, jitter=0),
        concurrency=1,
        clock=clock,
        give_up_after=60,
    )
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await _drain(worker, clock, 10)
    (job,) = await _jobs(hub, "dead")
    (shown,) = (await hub.statuses(doc, TAY_NINH_STC))["recipients"]
    assert shown["last_error"].startswith("given up: failing for 1 min 0 s since its first"), shown
    assert "[outbox] give_up_after_s = 60); last error: " in shown["last_error"], shown
    assert shown["last_error"].endswith("answered 503"), shown
    assert job.last_error is not None and job.last_error.startswith("given up: failing for")
