"""A portal sync waits for an earlier sync of the same dossier without using an attempt.

The portal keeps whichever sync reached it last, so a dossier's syncs go out in order and a newer
one waits while an older one is in flight. That wait was counted as a failed attempt: behind a
slow portal the newest sync ran out of attempts before it was ever sent (dead, "an earlier sync
of this dossier is still in flight"), and the portal kept the older status.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from connectors.api import Connector, Result
from gateway.flows.notify import PortalProgressHandler, PortalSyncHandler
from gateway.metrics import Metrics
from gateway.outbox import RetryPolicy, Worker, enqueue, get_job
from gateway.outbox.testing import ManualClock
from gateway.store import SQLiteStore, Tx

CODE = "000.00.00.H41-261206-0001"


class SlowPortal:
    """Answers a sync once its version is let through; remembers the order of what it got."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.calls: dict[int, asyncio.Event] = {}
        self.release: dict[int, asyncio.Event] = {1: asyncio.Event(), 2: asyncio.Event()}

    async def call(self, operation: str, params: dict[str, Any], **_: Any) -> Result:
        version = int(params["version"])
        self.calls.setdefault(version, asyncio.Event()).set()
        await self.release[version].wait()
        self.got.append(version)
        return Result(data={}, reference=f"sync {version}")


def _snapshot(version: int, status: str) -> dict[str, Any]:
    return {
        "code": CODE,
        "procedure": "1.001193",
        "applicant": {"full_name": "Nguyễn Văn An", "personal_id": "040090001234"},
        "status": status,
        "received_at": "2026-12-06T08:00:00+07:00",
        "at": "2026-12-06T08:00:05+07:00",
        "version": version,
    }


async def test_a_sync_behind_one_in_flight_waits_without_using_an_attempt(tmp_path: Path) -> None:
    clock = ManualClock()
    portal = SlowPortal()
    async with SQLiteStore(tmp_path / "gw.db") as store:
        handler = PortalSyncHandler(cast(Connector, portal), store)
        # One attempt each: a wait counted as an attempt would make the newer sync dead at once.
        policy = RetryPolicy(max_attempts=1)
        first, second = (
            Worker(store, {"portal.sync": handler}, policy=policy, clock=clock, concurrency=1)
            for _ in range(2)
        )

        async def change(version: int, status: str) -> None:
            await store.transact(
                lambda tx: enqueue(
                    tx,
                    kind="portal.sync",
                    key=f"{CODE}/portal/{version}",
                    payload=_snapshot(version, status),
                    dossier=CODE,
                    now=clock(),
                )
            )

        await change(1, "in_progress")
        older = asyncio.create_task(first.run_once())  # claims version 1, whose call hangs
        await asyncio.wait_for(portal.calls.setdefault(1, asyncio.Event()).wait(), 10)
        await change(2, "completed")  # the dossier moves on meanwhile
        assert await second.run_once() == 1  # claims version 2: it must wait
        newer = await store.read(lambda tx: get_job(tx, 2))
        assert newer is not None
        assert (newer.state, newer.attempts) == ("pending", 0)
        assert newer.run_after == clock() + 1.0
        assert 2 not in portal.calls  # nothing was sent for it

        portal.release[1].set()
        await older
        clock.advance(1.0)
        portal.release[2].set()
        assert await second.run_once() == 1
        done = await store.read(lambda tx: get_job(tx, 2))
        assert done is not None and (done.state, done.attempts) == ("done", 1)
    assert portal.got == [1, 2]  # in order: the portal ends at "completed"


class Portal:
    """Takes any record at once; remembers what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []

    async def call(self, operation: str, params: dict[str, Any], **_: Any) -> Result:
        self.got.append((operation, params))
        return Result(data={}, reference="MGD-1")


async def test_progress_waits_until_the_portal_has_the_dossier(tmp_path: Path) -> None:
    """The portal refuses progress for a dossier no sync has brought it ("not synced")."""
    clock = ManualClock()
    portal = Portal()
    async with SQLiteStore(tmp_path / "gw.db") as store:
        worker = Worker(
            store,
            {
                "portal.progress": PortalProgressHandler(cast(Connector, portal), store),
                "portal.sync": PortalSyncHandler(cast(Connector, portal), store),
            },
            policy=RetryPolicy(max_attempts=1),
            clock=clock,
            concurrency=1,
        )
        progress = {"code": CODE, "step": "verify_applicant", "content": "x", "status": "in_progress", "at": "2026-12-06T08:00:05+07:00"}  # fmt: skip
        await store.transact(
            lambda tx: enqueue(
                tx,
                kind="portal.progress",
                key=f"{CODE}/progress/0",
                payload=progress,
                dossier=CODE,
                now=clock(),
            )
        )
        assert await worker.run_once() == 1
        waiting = await store.read(lambda tx: get_job(tx, 1))
        assert waiting is not None and (waiting.state, waiting.attempts) == ("pending", 0)
        assert portal.got == []
        await store.transact(
            lambda tx: enqueue(
                tx,
                kind="portal.sync",
                key=f"{CODE}/portal/1",
                payload=_snapshot(1, "accepted"),
                dossier=CODE,
                now=clock(),
            )
        )
        assert await worker.run_once() == 1  # the sync (the progress is not due yet)
        clock.advance(1.0)
        assert await worker.run_once() == 1
        sent = await store.read(lambda tx: get_job(tx, 1))
        assert sent is not None and sent.state == "done"
    assert [operation for operation, _ in portal.got] == ["dossier.sync", "dossier.progress"]


async def test_progress_records_reach_the_portal_in_the_order_of_their_steps(
    tmp_path: Path,
) -> None:
    """Records released together (the sync they waited for delivered) went out in whatever order
    the worker claimed them: here the later step's, queued first (a retry, a resumed flow)."""
    clock = ManualClock()
    portal = Portal()
    async with SQLiteStore(tmp_path / "gw.db") as store:
        worker = Worker(
            store,
            {
                "portal.progress": PortalProgressHandler(cast(Connector, portal), store),
                "portal.sync": PortalSyncHandler(cast(Connector, portal), store),
            },
            policy=RetryPolicy(max_attempts=1),
            clock=clock,
            concurrency=1,
        )

        def queue(kind: str, key: str, payload: dict[str, Any]) -> Any:
            return store.transact(
                lambda tx: enqueue(
                    tx, kind=kind, key=key, payload=payload, dossier=CODE, now=clock()
                )
            )

        for idx in (1, 0):
            progress = {"code": CODE, "step": f"step{idx}", "content": "x", "status": "in_progress", "at": "2026-12-06T08:00:05+07:00"}  # fmt: skip
            await queue("portal.progress", f"{CODE}/progress/{idx}", progress)
        await queue("portal.sync", f"{CODE}/portal/1", _snapshot(1, "in_progress"))
        for _ in range(10):
            clock.advance(1.0)
            await worker.run_once()
    assert [(op, params.get("step")) for op, params in portal.got] == [
        ("dossier.sync", None),
        ("dossier.progress", "step0"),
        ("dossier.progress", "step1"),
    ]


async def test_metrics_count_a_superseded_sync_and_a_wait_as_what_they_are(
    tmp_path: Path,
) -> None:
    """Found by probing: through a portal outage every superseded sync (never sent) was counted
    as delivered, and each wait (once a second, its attempt refunded) as a delivery attempt:
    the delivered/dead ratio read as healthy while the portal had taken nothing."""
    clock = ManualClock()
    portal = Portal()
    metrics = Metrics()
    async with SQLiteStore(tmp_path / "gw.db") as store:
        handlers = {
            "portal.sync": PortalSyncHandler(cast(Connector, portal), store, metrics=metrics),
            "portal.progress": PortalProgressHandler(
                cast(Connector, portal), store, metrics=metrics
            ),
        }
        worker = Worker(store, handlers, clock=clock, concurrency=1, metrics=metrics)

        def unit(tx: Tx) -> None:
            # The progress record first: it waits for a sync the portal does not have yet.
            enqueue(
                tx,
                kind="portal.progress",
                key=f"{CODE}/progress/0",
                payload={"code": CODE, "step": "verify_applicant"},
                dossier=CODE,
                now=clock(),
            )
            for version, status in ((1, "accepted"), (2, "in_progress")):
                enqueue(
                    tx,
                    kind="portal.sync",
                    key=f"{CODE}/portal/{version}",
                    payload=_snapshot(version, status),
                    dossier=CODE,
                    now=clock(),
                )

        await store.transact(unit)
        assert await worker.run_once() == 1  # the progress record waits
        assert await worker.run_once() == 1  # version 1: superseded, not sent
        assert await worker.run_once() == 1  # version 2: sent
        clock.advance(1.0)
        assert await worker.run_once() == 1  # the progress record goes

    def count(name: str, **labels: str) -> float:
        value = metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    attempts = "lienthong_outbox_attempts_total"
    assert [op for op, _ in portal.got] == ["dossier.sync", "dossier.progress"]
    assert count(attempts, kind="portal.sync", outcome="delivered") == 1
    assert count(attempts, kind="portal.sync", outcome="superseded") == 1
    assert count(attempts, kind="portal.progress", outcome="delivered") == 1
    assert count(attempts, kind="portal.progress", outcome="deferred") == 0
    assert count("lienthong_outbox_waits_total", kind="portal.progress") == 1
