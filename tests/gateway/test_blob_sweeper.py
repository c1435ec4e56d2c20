"""The gateway's hourly sweep of orphaned blobs keeps going when one sweep fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.app import _sweep_blobs
from gateway.exchange import BlobStoreUnavailable
from gateway.store import StoreUnavailable


class _Hub:
    """Stands in for DocumentHub.sweep: fails twice, then sweeps two blobs, then nothing."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = [
            BlobStoreUnavailable("No space left on device"),
            StoreUnavailable("database is locked"),
            ["a" * 64, "b" * 64],
        ]
        self.calls = 0
        self.done = asyncio.Event()

    async def sweep(self) -> list[str]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else []
        if not self.outcomes:
            self.done.set()
        if isinstance(outcome, Exception):
            raise outcome
        return list(outcome)


async def test_a_failed_sweep_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = _Hub()
    caplog.set_level(logging.INFO, logger="lienthong.documents")
    task = asyncio.create_task(_sweep_blobs(hub, every_s=0.001, first_s=0))  # type: ignore[arg-type]
    await asyncio.wait_for(hub.done.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [
        "blob sweep failed: No space left on device",
        "blob sweep failed: database is locked",
        "swept 2 blobs no document names",
    ]
