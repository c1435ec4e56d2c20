"""A national portal outage, over real sockets with the portal sandbox.

The portal takes a progress record (CapNhatTienDoHoSoMC) only for a dossier a sync (DongBoHoSoMC)
brought it. Through an outage every sync but the newest was superseded, marked done without
being sent, and the newest died; the progress records took a done sync for "the portal has the
dossier", went out, and died too (503, then "dossier not synced"). Replaying the dead sync then
brought the portal the dossier, but never its progress.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.outbox import Job, list_jobs
from gateway.samples import sample_dossiers
from tests.e2e.conftest import Gateway


async def portal_jobs(gw: Gateway, code: str, kind: str) -> list[Job]:
    """The dossier's jobs of ``kind``, in the order their keys number them."""
    listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=10_000))
    mine = [j for j in listed if j.dossier == code and j.kind == kind]
    return sorted(mine, key=lambda j: int(j.key.rsplit("/", 1)[1]))


async def until(gw: Gateway, what: str, check: Any, *, within: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something true (bounded; never a timing assert)."""
    deadline = asyncio.get_running_loop().time() + within
    while not (found := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)
    return found


async def test_progress_waits_through_an_outage_and_follows_the_replayed_sync(
    make_gateway: Any,
) -> None:
    async with make_gateway(sandbox={"faults": {"portal": {"error_rate": 1.0}}}) as gw:
        doc = next(iter(sample_dossiers(1, seed=0, death_share=0)))
        code = doc["code"]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(code, {"completed"})  # the flow does not wait for the portal

        async def settled_syncs() -> list[Job] | None:
            syncs = await portal_jobs(gw, code, "portal.sync")
            final = len(syncs) >= 5 and all(j.state in ("done", "dead") for j in syncs)
            return syncs if final and syncs[-1].state == "dead" else None

        # The outage outlasts the syncs' attempts: the older are superseded, the newest dies.
        syncs = await until(gw, "the newest sync dead", settled_syncs)
        newest = syncs[-1]
        assert [j.state for j in syncs[:-1]] == ["done"] * (len(syncs) - 1)

        async def looked_since() -> list[Job] | None:
            # Every progress record has been tried since the newest sync died, and is dead or
            # waits for it (pending).
            progress = await portal_jobs(gw, code, "portal.progress")
            seen = len(progress) == len(view["steps"]) and all(
                j.state == "dead" or (j.state == "pending" and j.updated_at > newest.updated_at)
                for j in progress
            )
            return progress if seen else None

        progress = await until(gw, "progress looked at", looked_since)
        # They wait without using attempts: no sync reached the portal.
        assert [(j.state, j.attempts) for j in progress] == [("pending", 0)] * len(progress)

        # What the operator sees: one dead letter, the newest sync, to replay once it is back.
        async with await gw.get("/v1/admin/outbox?state=dead", who="operator") as r:
            dead = [j for j in (await r.json())["items"] if j["dossier"] == code]
        assert [j["key"] for j in dead] == [newest.key], dead

        root = "/".join(gw.sandbox("portal").split("/")[:3])
        async with gw.http.put(root + "/_sandbox/faults", json={}) as r:
            assert r.status == 200, await r.text()
        async with await gw.post(f"/v1/admin/outbox/{newest.id}/replay", None, who="operator") as r:
            assert r.status == 200, await r.text()

        async def all_sent() -> bool:
            jobs = [
                *await portal_jobs(gw, code, "portal.sync"),
                *await portal_jobs(gw, code, "portal.progress"),
            ]
            assert not [j for j in jobs if j.state == "dead"], jobs
            return all(j.state == "done" for j in jobs)

        await until(gw, "every portal job done", all_sent)
        async with gw.http.get(f"{root}/_sandbox/dossiers/{code}") as r:
            assert r.status == 200, await r.text()
            held = await r.json()
    assert str(held["dossier"]["TrangThaiHoSo"]) == "10"  # completed
    assert held["syncs"] == 1  # the superseded syncs were never sent
    # Every step's record, in the order the steps were done.
    assert [p["PhongBanXuLy"] for p in held["progress"]] == [s["name"] for s in view["steps"]]
