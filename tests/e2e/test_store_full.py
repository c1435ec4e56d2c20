"""A full disk: the gateway refuses work it cannot store with a 503 a client retries on, keeps
nothing half-stored, says it is not ready, and takes the same work once there is room again.

The embedded store's writer connection is capped at its current size (``PRAGMA max_page_count``),
which SQLite answers exactly as a full disk: SQLITE_FULL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.audit import AuditEvent, append
from gateway.audit.verify import verify_log
from gateway.samples import sample_dossiers
from gateway.store import StoreUnavailable
from tests.e2e.conftest import Gateway

PROBLEM = "urn:lienthong:problem:"


async def _cap(gw: Gateway, pages: int | None) -> None:
    def cap(tx: Any) -> None:
        conn = tx._conn  # the writer's own connection: the cap is per connection
        limit = pages if pages is not None else conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchone()

    await gw.runtime.store.transact(cap)


async def _fill(gw: Gateway) -> None:
    """Append small audit events until the capped store refuses one."""
    filler = AuditEvent(action="test.fill", detail="x" * 200)
    for _ in range(10_000):
        try:
            await gw.runtime.store.transact(lambda tx: append(tx, filler))
        except StoreUnavailable:
            return
    raise AssertionError("the capped store never filled")


async def _dossier_stored(gw: Gateway, code: str) -> bool:
    async with await gw.get(f"/v1/dossiers/{code}") as r:
        return r.status == 200


async def test_a_full_store_refuses_work_and_takes_it_again_later(gateway: Gateway) -> None:
    dossiers = list(sample_dossiers(40, seed=0, death_share=0))  # seed 0: the sandbox's people
    async with await gateway.post("/v1/dossiers", dossiers[0]) as r:
        assert r.status == 202
    await _cap(gateway, None)
    refused = None
    for doc in dossiers[1:]:  # the last free pages take a few; then the disk is full
        async with await gateway.post("/v1/dossiers", doc) as r:
            if r.status == 202:
                continue
            problem = await r.json()
            assert (r.status, problem["type"]) == (503, PROBLEM + "store-unavailable"), problem
            assert r.headers["Retry-After"].isdigit()
            # The reason is the operator's (/readyz, the log); the client is told what was kept.
            assert "full" not in problem["detail"] and "nothing" in problem["detail"]
            refused = doc
            break
    assert refused is not None, "the capped store never filled"
    assert not await _dossier_stored(gateway, refused["code"])  # nothing half-stored
    async with await gateway.get("/readyz", who="operator") as r:
        assert r.status == 503 and "full" in (await r.json())["checks"]["store"]
    async with gateway.http.get(gateway.url + "/readyz") as r:  # anyone: which check, not why
        assert r.status == 503 and (await r.json())["checks"]["store"] == "failing"
    # A lookup's answer never leaves without its audit event: none can be written, so no answer.
    # A dossier needs more room than a lookup's one audit row, which may still fit in the last
    # pages' free space: fill that first with rows as small, so that the store is full for it too.
    await _fill(gateway)
    lookup = {"personal_id": "040190012345", "full_name": "Nguyễn Thị Lan"}
    async with await gateway.post(
        "/v1/lookups/citizen", {**lookup, "birth_date": "1990-05-12"}
    ) as r:
        assert (r.status, (await r.json())["type"]) == (503, PROBLEM + "store-unavailable")

    await _cap(gateway, 2**30)  # room again: the next probe's write succeeds

    async def ready() -> bool:  # the outbox is ready again once its next claim succeeds
        async with await gateway.get("/readyz") as r:
            return r.status == 200

    deadline = asyncio.get_running_loop().time() + 30
    while not await ready():
        assert asyncio.get_running_loop().time() < deadline, "never ready again"
        await asyncio.sleep(0.05)
    async with await gateway.post("/v1/dossiers", refused) as r:
        assert r.status == 202
    done = await gateway.wait_status(refused["code"], {"completed", "needs_attention", "failed"})
    assert done["status"] == "completed", done["steps"]
    report = await verify_log(gateway.runtime.store)
    assert report.ok, report.describe()
