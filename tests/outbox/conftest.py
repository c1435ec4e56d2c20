from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.outbox.testing import ManualClock
from gateway.store import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "x.db") as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
