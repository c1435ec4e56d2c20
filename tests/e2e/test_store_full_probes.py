"""/readyz and lienthong_store_up while the disk stays full: before, /readyz said ready again 30 s
after the last failed write (it only read, and a full disk answers reads), and store_up stayed 1
throughout. Both now say failing until a write succeeds again.

The store is capped as in test_store_full (``PRAGMA max_page_count``: SQLITE_FULL, as a full disk).
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.api import ops
from tests.e2e.conftest import Gateway
from tests.e2e.test_lookups import _metric
from tests.e2e.test_store_full import _cap, _fill


async def _store_up(gw: Gateway) -> float:
    async with gw.http.get(gw.url + "/metrics") as r:
        return _metric(await r.text(), "lienthong_store_up")


async def _readyz(gw: Gateway) -> tuple[int, dict[str, str]]:
    async with await gw.get("/readyz", who="operator") as r:
        body = await r.json()
        return r.status, body["checks"]


async def test_a_store_still_full_is_not_ready_however_long_ago_a_write_failed(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _cap(gateway, None)
    await _fill(gateway)  # the last write failed: the disk is full
    # However long ago that was (before, readiness came back STORE_TROUBLE_S = 30 s after it):
    monkeypatch.setattr(ops, "STORE_TROUBLE_S", 0.0, raising=False)
    for _ in range(3):  # each probe tries a write of its own, which fails too
        status, checks = await _readyz(gateway)
        assert status == 503 and "full" in checks["store"], checks
        assert await _store_up(gateway) == 0.0

    await _cap(gateway, 2**30)  # room again: the next probe's write succeeds
    assert await _store_up(gateway) == 1.0
    for _ in range(600):  # bounded: 30 s (the outbox is ready once its next claim succeeds)
        status, checks = await _readyz(gateway)
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert (status, checks["store"]) == (200, "ok"), checks
