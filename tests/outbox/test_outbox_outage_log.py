"""An expected store outage is not a flood of tracebacks: one WARNING per distinct reason (no
traceback), repeated only every REPEAT_WARNING_S while it lasts, and a line when it ends. Before,
each job's failed recording and each handler that met the outage logged an ERROR with a full
traceback: dozens per failover. A genuinely unexpected exception keeps its ERROR."""

from __future__ import annotations

import logging

import pytest

from gateway.outbox import Worker
from gateway.outbox.testing import ManualClock, ScriptedHandler
from gateway.outbox.worker import REPEAT_WARNING_S
from gateway.store import SQLiteStore, StoreUnavailable
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
