"""A done notification keeps no copy of the dossier's personal data (Decree 13/2023, storage
limitation); one still to be sent keeps all it sends.

Found by probing: each status change froze the whole status document (the child's personal id,
the card number …) into its callback job's payload, and the applicant's id, name and phone into
its portal sync's, and done jobs were kept for ever: 14 rows per completed birth held the
applicant's id, though nothing reads a done job's payload again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.outbox import list_jobs
from tests.e2e.test_callbacks import birth, hook_at
from tests.e2e.test_flows import _step

NOTIFICATIONS = ("callback", "portal.sync", "portal.progress")


async def test_a_done_notification_keeps_no_personal_data_and_a_retried_one_sends_it_all(
    make_gateway: Any,
) -> None:
    received: dict[int, list[dict[str, Any]]] = {}  # version → the documents received

    async def hook(request: web.Request) -> web.Response:
        doc = await request.json()
        tries = received.setdefault(doc["version"], [])
        tries.append(doc)
        return web.Response(status=503 if len(tries) == 1 else 204)  # each fails once

    async with hook_at(hook) as url:
        async with make_gateway(callback_urls=[url.rsplit("/", 1)[0] + "/"]) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
            assert view["status"] == "completed", view
            jobs = []
            for _ in range(600):  # bounded: until every notification is done
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                jobs = [j for j in listed if j.dossier == doc["code"]]
                if all(j.state == "done" for j in jobs):
                    break
                await asyncio.sleep(0.05)
            async with await gw.get("/v1/admin/outbox?state=done", who="operator") as r:
                listed_done = {j["id"]: j for j in (await r.json())["items"]}

    assert [j for j in jobs if j.state != "done"] == []
    applicant = doc["applicant"]
    child = _step(view, "register_birth")["result"]["personal_id"]
    card = _step(view, "issue_health_card")["reference"]
    personal = [applicant["personal_id"], applicant["full_name"], applicant["phone"], child, card]
    notifications = [j for j in jobs if j.kind in NOTIFICATIONS]
    assert {j.kind for j in notifications} == set(NOTIFICATIONS)
    for job in notifications:
        kept = json.dumps(job.payload, ensure_ascii=False)
        assert [p for p in personal if p in kept] == [], (job.kind, job.key, kept)
        # What outbox list shows of it is kept: a progress record's step.
        assert job.payload == (
            {"step": job.payload["step"]} if job.kind == "portal.progress" else {}
        )
        assert listed_done[job.id]["step"] == (job.payload.get("step") or job.kind)
    steps = [j for j in jobs if j.kind == "flow.step"]
    assert steps and all("index" in j.payload for j in steps)  # not a notification: kept

    # Each callback failed once, pending, then went with the whole document frozen for it.
    assert received and all(len(tries) == 2 for tries in received.values()), received
    for tries in received.values():
        assert tries[0] == tries[1] and tries[0]["code"] == doc["code"]
    last = json.dumps(received[max(received)][1])
    assert child in last and card in last
