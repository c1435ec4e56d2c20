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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from connectors.api import Connector, Result, TransientError
from gateway.flows.notify import PortalProgressHandler, PortalSyncHandler
from gateway.outbox import Breakers, Worker, enqueue, list_jobs
from gateway.outbox.testing import ManualClock
from gateway.store import SQLiteStore, Tx
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

DOSSIERS = 30
VERSIONS = 3


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver(down_status=500) as served:
        yield served


async def test_callbacks_behind_a_down_receiver_look_no_more_often_than_the_first_is_tried(
    tmp_path: Path, receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    got, url = receiver
    clock = ManualClock()
    breakers = Breakers(failure_threshold=5, reset_after=10.0, clock=clock)
    async with SQLiteStore(tmp_path / "gw.db") as store, aiohttp.ClientSession() as session:
        handler = Counting(callback_handler(store, session, url, breakers, max_in_flight=100))
        worker = Worker(store, {"callback": handler}, policy=POLICY, clock=clock, concurrency=8)
        await store.transact(queue_callbacks(url, clock(), dossiers=DOSSIERS, versions=VERSIONS))
        caplog.set_level(logging.DEBUG, logger="lienthong.outbox")
        await poll(worker, clock, 120)  # two minutes of the receiver down

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
        await poll(worker, clock, 60)
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
        await poll(worker, clock, 120)
        for n in range(DOSSIERS):
            tried = sync.runs[f"{code(n)}/portal/1"]
            for idx in range(2):
                # It looked every second (the sync) and every half second (the earlier record).
                assert progress.runs[f"{code(n)}/progress/{idx}"] <= tried + 2, progress.runs
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
        assert {j.state for j in jobs} == {"pending"}

        portal.down = False
        await poll(worker, clock, 60)
        jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
    assert {j.state for j in jobs} == {"done"}
    for n in range(DOSSIERS):
        assert [(op, step) for c, op, step in portal.got if c == code(n)] == [
            ("dossier.sync", None),
            ("dossier.progress", "step0"),
            ("dossier.progress", "step1"),
        ]
