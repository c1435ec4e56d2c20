"""A job waiting for an earlier one of its dossier comes back when that one can have moved, not
every half second.

Found by probing: with a callback receiver down and 400 dossiers, each dossier's later callbacks
looked every 0.5 s whether the first was sent yet (its retries were minutes apart), and the
portal's progress records every 0.5-1 s whether the sync was: ~1,100 deferrals (a claim, an
update, an INFO line) a second, claimed ahead of new flow steps, which ran 10-18 times slower.
Now a waiting job comes back when the job it waits for is due again, and that job's being done or
dead makes it due at once. Counted in claims over a clock moved by hand: no timing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.api import Connector, Result, TransientError
from gateway.flows.notify import CallbackHandler, PortalProgressHandler, PortalSyncHandler
from gateway.outbox import Breakers, Job, RetryPolicy, Worker, enqueue, list_jobs
from gateway.outbox.testing import ManualClock
from gateway.settings import Subsystem
from gateway.store import SQLiteStore, Tx

CLIENT = "VN:GOV:000.00.00.H41:motcua"
DOSSIERS = 30
VERSIONS = 3
POLICY = RetryPolicy(max_attempts=8, base_delay=0.5, max_delay=300.0, rng=lambda: 0.0)


def code(n: int) -> str:
    return f"000.00.00.H41-261206-{n:04d}"


class Receiver:
    """A provincial system's callback endpoint: answers 500 while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.got: list[tuple[str, int]] = []  # (dossier, version) taken, in order

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            return web.Response(status=500)
        self.got.append((body["code"], body["version"]))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/hook", got.hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield got, str(server.make_url("/hook"))
    finally:
        await server.close()


class Counting:
    """Wraps a handler; counts its runs (claims) by job key."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.runs: Counter[str] = Counter()

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        self.runs[job.key] += 1
        result: Callable[[Tx], Any] = await self.inner.run(job)
        return result

    def failed(self, tx: Tx, job: Job, error: BaseException, **kw: Any) -> None:
        self.inner.failed(tx, job, error, **kw)


async def run_for(worker: Worker, clock: ManualClock, seconds: float, step: float = 0.25) -> None:
    """Poll as the worker's loop does, every ``step`` s of the clock, running all that is due."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        for _ in range(100):  # bounded
            if not await worker.run_once():
                break


async def test_callbacks_behind_a_down_receiver_look_no_more_often_than_the_first_is_tried(
    tmp_path: Path, receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    got, url = receiver
    clock = ManualClock()
    breakers = Breakers(failure_threshold=5, reset_after=10.0, clock=clock)
    subsystem = Subsystem(id=CLIENT, callback_urls=(url.rsplit("/", 1)[0] + "/",))
    async with SQLiteStore(tmp_path / "gw.db") as store, aiohttp.ClientSession() as session:
        handler = Counting(
            CallbackHandler(
                store, lambda: session, {CLIENT: subsystem}, breakers=breakers, max_in_flight=100
            )
        )
        worker = Worker(store, {"callback": handler}, policy=POLICY, clock=clock, concurrency=8)

        def queue(tx: Tx) -> None:
            for n in range(DOSSIERS):
                tx.execute(
                    "dossiers.insert",
                    code=code(n),
                    client=CLIENT,
                    procedure="1.001193",
                    flow="death",
                    body=b"{}",
                    digest="0" * 64,
                    callback_url=url,
                    request_id=None,
                    now="2026-12-06T08:00:00+07:00",
                )
                for version in range(1, VERSIONS + 1):
                    document = {"code": code(n), "status": "in_progress", "version": version}
                    enqueue(
                        tx,
                        kind="callback",
                        key=f"{code(n)}/callback/{version}",
                        payload={"code": code(n), "version": version, "document": document},
                        dossier=code(n),
                        now=clock(),
                    )

        await store.transact(queue)
        caplog.set_level(logging.DEBUG, logger="lienthong.outbox")
        await run_for(worker, clock, 120)  # two minutes of the receiver down

        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
        assert {j.state for j in jobs} == {"pending"}  # none dead: the circuit is open
        for n in range(DOSSIERS):
            first = handler.runs[f"{code(n)}/callback/1"]
            for version in range(2, VERSIONS + 1):
                # It looked 240 times (every 0.5 s); now once each time the first was tried.
                assert handler.runs[f"{code(n)}/callback/{version}"] <= first + 2, handler.runs
        assert sum(handler.runs.values()) <= DOSSIERS * VERSIONS * 20
        deferrals = [r for r in caplog.records if "deferred" in r.getMessage()]
        assert deferrals and {r.levelno for r in deferrals} == {logging.DEBUG}

        got.down = False
        await run_for(worker, clock, 60)
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
    assert {j.state for j in jobs} == {"done"}
    for n in range(DOSSIERS):
        assert [v for c, v in got.got if c == code(n)] == list(range(1, VERSIONS + 1))


class DownPortal:
    """The national portal: fails every call while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.got: list[tuple[str, str, Any]] = []

    async def call(self, operation: str, params: dict[str, Any], **_: Any) -> Result:
        if self.down:
            raise TransientError("portal", "HTTP 503: Service Unavailable")
        self.got.append((params["code"], operation, params.get("step")))
        return Result(data={}, reference="MGD-1")


async def test_progress_records_behind_a_down_portal_look_no_more_often_than_the_sync_is_tried(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    portal = DownPortal()
    breakers = Breakers(failure_threshold=5, reset_after=10.0, clock=clock)
    async with SQLiteStore(tmp_path / "gw.db") as store:
        sync = Counting(PortalSyncHandler(cast(Connector, portal), store, breakers))
        progress = Counting(PortalProgressHandler(cast(Connector, portal), store, breakers))
        worker = Worker(
            store,
            {"portal.sync": sync, "portal.progress": progress},
            policy=POLICY,
            clock=clock,
            concurrency=8,
        )

        def queue(tx: Tx) -> None:
            for n in range(DOSSIERS):
                snapshot = {
                    "code": code(n),
                    "procedure": "1.001193",
                    "applicant": {"full_name": "Nguyễn Văn An", "personal_id": "040090001234"},
                    "status": "in_progress",
                    "received_at": "2026-12-06T08:00:00+07:00",
                    "at": "2026-12-06T08:00:05+07:00",
                    "version": 1,
                }
                enqueue(
                    tx,
                    kind="portal.sync",
                    key=f"{code(n)}/portal/1",
                    payload=snapshot,
                    dossier=code(n),
                    now=clock(),
                )
                for idx in range(2):
                    enqueue(
                        tx,
                        kind="portal.progress",
                        key=f"{code(n)}/progress/{idx}",
                        payload={"code": code(n), "step": f"step{idx}"},
                        dossier=code(n),
                        now=clock(),
                    )

        await store.transact(queue)
        await run_for(worker, clock, 120)
        for n in range(DOSSIERS):
            tried = sync.runs[f"{code(n)}/portal/1"]
            for idx in range(2):
                # It looked every second (the sync) and every half second (the earlier record).
                assert progress.runs[f"{code(n)}/progress/{idx}"] <= tried + 2, progress.runs
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
        assert {j.state for j in jobs} == {"pending"}

        portal.down = False
        await run_for(worker, clock, 60)
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
    assert {j.state for j in jobs} == {"done"}
    for n in range(DOSSIERS):
        assert [(op, step) for c, op, step in portal.got if c == code(n)] == [
            ("dossier.sync", None),
            ("dossier.progress", "step0"),
            ("dossier.progress", "step1"),
        ]
