"""An expected store outage is not a flood of tracebacks: one WARNING per distinct reason (no
traceback), repeated only every REPEAT_WARNING_S while it lasts, and a line when it ends. Before,
each job's failed recording and each handler that met the outage logged an ERROR with a full
traceback: dozens per failover. A genuinely unexpected exception keeps its ERROR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.metrics import Metrics
from gateway.outbox import Worker
from gateway.outbox.testing import ManualClock, ScriptedHandler
from gateway.outbox.worker import REPEAT_WARNING_S
from gateway.store import QueryError, SQLiteStore, StoreUnavailable
from tests.outbox.test_outbox_worker import add, worker

OUTAGE = StoreUnavailable("outbox.finish: disk I/O error")


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("lienthong") and r.levelno >= logging.INFO
    ]


async def _jobs(store: SQLiteStore, clock: ManualClock, n: int) -> None:
    for i in range(n):
        await add(store, clock, key=f"k{i}")


async def test_deliveries_not_recorded_in_an_outage_warn_once(
    store: SQLiteStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await _jobs(store, clock, 6)
    handler = ScriptedHandler(record_error=OUTAGE)
    w: Worker = worker(store, clock, handler, concurrency=6)
    with caplog.at_level(logging.INFO, logger="lienthong"):
        assert await w.run_once() == 6
    lines = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "disk I/O error" in lines[0].getMessage()


async def test_handlers_meeting_an_outage_warn_once_then_recovery_is_said(
    store: SQLiteStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await _jobs(store, clock, 5)
    handler = ScriptedHandler(*[OUTAGE] * 5, failed_error=OUTAGE)
    w = worker(store, clock, handler, concurrency=5)
    with caplog.at_level(logging.INFO, logger="lienthong"):
        await w.run_once()
        loud = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
        assert len(loud) == 1 and loud[0].exc_info is None, [r.getMessage() for r in loud]
        assert not [r for r in loud if r.levelno >= logging.ERROR]
        caplog.clear()
        clock.advance(REPEAT_WARNING_S)  # still failing after a while: warned, never a traceback
        handler.outcomes = [OUTAGE] * 5
        for j in range(5):  # make them due again
            await add(store, clock, key=f"again{j}")
        await w.run_once()
        again = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
        assert again and all(r.levelno == logging.WARNING and r.exc_info is None for r in again)
        caplog.clear()
        handler.failed_error = None  # the store works again
        await add(store, clock, key="after")
        await w.run_once()
    said = [r.getMessage() for r in _lines(caplog)]
    assert any("available again" in m for m in said), said


async def test_an_unexpected_handler_error_keeps_its_traceback(
    store: SQLiteStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await _jobs(store, clock, 1)
    w = worker(store, clock, ScriptedHandler(KeyError("bug")))
    with caplog.at_level(logging.INFO, logger="lienthong"):
        await w.run_once()
    errors = [r for r in _lines(caplog) if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None


def _store_out(
    store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
    until: tuple[str, int],
    *,
    only: str | None = None,
) -> asyncio.Event:
    """The store meets OUTAGE (for the transactions whose function is named ``only``, or all):
    the real store's failure, without a database to break. The event is set once ``until``'s
    function (its name, how many times) has met it."""
    met: list[str] = []
    enough = asyncio.Event()
    real_transact, real_read = store.transact, store.read

    def failing(real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
            name = getattr(getattr(fn, "func", fn), "__name__", "")
            if only is None or name == only:
                met.append(name)
                if met.count(until[0]) >= until[1]:
                    enough.set()
                raise OUTAGE
            return await real(fn, *args, **kw)

        return call

    monkeypatch.setattr(store, "transact", failing(real_transact))
    monkeypatch.setattr(store, "read", failing(real_read))
    return enough


async def test_lease_renewals_in_an_outage_warn_once_without_a_traceback(
    store: SQLiteStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _jobs(store, clock, 1)
    gate = asyncio.Event()
    w = worker(store, clock, ScriptedHandler(None, gate=gate), lease=0.03)
    renewals = _store_out(store, monkeypatch, ("renew", 5), only="renew")
    with caplog.at_level(logging.INFO, logger="lienthong"):
        run = asyncio.create_task(w.run_once())
        await renewals.wait()  # the handler works on; every renewal meets the outage
        gate.set()
        await run
    loud = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert loud[0].levelno == logging.WARNING and loud[0].exc_info is None
    assert "disk I/O error" in loud[0].getMessage()


async def test_a_renewal_failing_unexpectedly_keeps_its_traceback(
    store: SQLiteStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _jobs(store, clock, 1)
    gate = asyncio.Event()
    w = worker(store, clock, ScriptedHandler(None, gate=gate), lease=0.03)
    real = store.transact
    failed = asyncio.Event()

    async def transact(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if getattr(getattr(fn, "func", fn), "__name__", "") == "renew":
            failed.set()
            raise QueryError("outbox.renew: no such column: lease_until")  # a bug, not an outage
        return await real(fn, *args, **kw)

    monkeypatch.setattr(store, "transact", transact)
    with caplog.at_level(logging.INFO, logger="lienthong"):
        run = asyncio.create_task(w.run_once())
        await failed.wait()
        gate.set()
        await run
    loud = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
    assert loud and all(r.exc_info is not None for r in loud), [r.getMessage() for r in loud]


async def test_job_counts_unread_in_an_outage_warn_once_without_a_traceback(
    store: SQLiteStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = Worker(store, {}, clock=clock, metrics=Metrics(), poll_interval=0.001)
    polls = _store_out(store, monkeypatch, ("depth", 5))  # claims and job counts alike
    with caplog.at_level(logging.INFO, logger="lienthong"):
        async with w:
            await polls.wait()
    loud = [r for r in _lines(caplog) if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]  # one reason, one line
    assert loud[0].levelno == logging.WARNING and loud[0].exc_info is None
