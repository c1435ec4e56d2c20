"""Issue #4: 1,000 birth flows under 20% transient faults — every flow completes and no registry
registers anything twice (each sandbox counts the distinct registrations it performed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.samples import sample_dossiers

COUNT = 1000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# 20% of requests meet a fault: 10% 503 before processing, 5% connection reset before processing,
# 5% processed and then the reply lost (only the idempotency key stops a second registration).
FAULTS = {"error_rate": 0.10, "reset_rate": 0.05, "lost_reply_rate": 0.05}


async def test_a_thousand_birth_flows_under_faults(make_gateway: Any) -> None:
    retry = {"max_attempts": 40, "base_delay_s": 0.02, "max_delay_s": 0.2, "jitter": 0.2}
    names = ("population", "civil_status", "insurance", "business", "portal")
    async with make_gateway(
        registries={n: {"timeout_s": 10.0, "retry": retry} for n in names},
        sandbox={"faults": {n: {**FAULTS, "seed": i} for i, n in enumerate(names)}},
        outbox={"workers": 32, "breaker_failures": 1000},
    ) as gw:
        batch = list(sample_dossiers(COUNT, seed=0, death_share=0.0))
        gate = asyncio.Semaphore(32)

        async def submit(doc: dict[str, Any]) -> int:
            async with gate, await gw.post("/v1/dossiers", doc) as r:
                return r.status

        statuses = await asyncio.gather(*(submit(d) for d in batch))
        assert statuses == [202] * COUNT
        deadline = time.monotonic() + 1500  # a bound against a hang, not a speed target
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            rows = await gw.runtime.store.read(lambda tx: tx.all("dossiers.count_by_status"))
            counts = {r["status"]: r["n"] for r in rows}
            if (
                counts.get("completed", 0)
                + counts.get("needs_attention", 0)
                + counts.get("failed", 0)
                == COUNT
            ):
                break
            await asyncio.sleep(0.5)
        assert counts == {"completed": COUNT}
        for name, ops in {
            "civil_status": ("birth.register",),
            "population": ("residence.register",),
            "insurance": ("card.issue_newborn",),
        }.items():
            root = "/".join(gw.sandbox(name).split("/")[:3])
            async with gw.http.get(root + "/_sandbox/stats") as r:
                stats = await r.json()
            async with gw.http.get(root + "/_sandbox/faults") as r:
                injected = (await r.json())["injected"]
            assert {op: stats["writes"].get(op) for op in ops} == dict.fromkeys(ops, COUNT), (
                name,
                stats,
            )
            assert (
                injected.get("lost_reply", 0) > 0 and stats["replays"] > 0
            )  # the hard case happened
