"""/readyz and /metrics while every audit checkpoint fails (the TSA does not answer).

Before: /readyz said ``audit: ok`` for as long as new work was still taken, that is for ever
with the default ``fail_closed_after_s = 0``, and no metric said anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from signing.testing import free_port
from tests.e2e.test_lookups import _metric, _post, citizen_query


async def _scrape(gw: Any) -> str:
    async with gw.http.get(gw.url + "/metrics") as r:
        assert r.status == 200
        return str(await r.text())


async def test_readiness_names_failing_checkpoints_while_work_is_still_taken(
    make_gateway: Any,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/tsa"  # a TSA that is down
    async with make_gateway(audit={"checkpoint_every": 1, "tsa_url": nobody}) as gw:
        status, _ = await _post(gw, "/v1/lookups/citizen", citizen_query())
        assert status == 200  # an audit event: a checkpoint is due
        failed = 'lienthong_audit_checkpoints_total{outcome="failed"}'
        deadline = time.monotonic() + 30
        while _metric(await _scrape(gw), failed) == 0:
            assert time.monotonic() < deadline, "no checkpoint ever failed"
            await asyncio.sleep(0.05)
        async with await gw.get("/readyz", who="operator") as r:
            assert r.status == 200  # still taking work: a load balancer keeps it
            told = await r.json()
        assert told["ready"] is True
        audit = told["checks"]["audit"]
        assert audit.startswith("checkpoints failing for ") and "127.0.0.1" in audit, told
        async with gw.http.get(gw.url + "/readyz") as r:  # anyone: which check, not why
            assert r.status == 200
            assert (await r.json())["checks"] == {
                "store": "ok",
                "blobs": "ok",
                "outbox": "ok",
                "audit": "degraded",
            }
        text = await _scrape(gw)
        assert _metric(text, 'lienthong_audit_checkpoints_total{outcome="ok"}') == 0
        assert _metric(text, "lienthong_audit_last_checkpoint_size") == 0
        # A lookup is still answered: fail closed is off.
        assert (await _post(gw, "/v1/lookups/citizen", citizen_query()))[0] == 200
