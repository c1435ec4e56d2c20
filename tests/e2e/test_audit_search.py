"""An auditor's search by personal id, over the gateway's sockets, on SQLite and on PostgreSQL: it
finds every dossier that names the person — as applicant, mother, father, deceased or
beneficiary — and each of that dossier's steps, not only the applicant's own events."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from connectors.testdata import Population
from gateway.audit import citizen_hash
from gateway.outbox import list_jobs
from gateway.samples import sample_dossiers
from tests.e2e.conftest import MOTCUA, Gateway
from tests.e2e.test_dossier_operators import patch, stopped_dossier

DONE = {"completed", "needs_attention", "failed"}


async def search(gw: Gateway, personal_id: str) -> list[dict[str, Any]]:
    async with await gw.post("/v1/audit/search", {"personal_id": personal_id}, who="auditor") as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert personal_id not in str(body)
    items: list[dict[str, Any]] = body["items"]
    return items


def _adult(sex: str, *, besides: set[str]) -> dict[str, str]:
    person = next(
        c
        for c in Population(0).citizens(2000)
        if c.sex == sex and 25 <= c.age_on() < 60 and c.personal_id not in besides
    )
    return {
        "full_name": person.full_name,
        "personal_id": person.personal_id,
        "birth_date": person.birth_date.isoformat(),
    }


async def test_a_search_finds_every_person_a_dossier_names_and_its_steps(
    any_gateway: Gateway,
) -> None:
    gw = any_gateway
    death = next(sample_dossiers(1, seed=0, death_share=1, start=7))
    named = {death["applicant"]["personal_id"], death["data"]["deceased"]["personal_id"]}
    death["data"]["beneficiary"] = _adult("male", besides=named)
    async with await gw.post("/v1/dossiers", death) as r:
        assert r.status == 202, await r.text()
    view = await gw.wait_status(death["code"], DONE)
    steps_done = {s["name"] for s in view["steps"] if s["status"] == "done"}
    assert len(steps_done) >= 2, view  # steps ran: they must be found by the persons' ids

    for who, action in (
        (death["applicant"]["personal_id"], "dossier.accepted"),
        (death["data"]["deceased"]["personal_id"], "dossier.concerns"),
        (death["data"]["beneficiary"]["personal_id"], "dossier.concerns"),
    ):
        found = [e for e in await search(gw, who) if e.get("dossier") == death["code"]]
        actions = [e["action"] for e in found]
        assert action in actions, (who, actions)
        delivered = {e.get("step") for e in found if e["action"] == "step.delivered"}
        assert steps_done <= delivered, (who, actions)
    hashed = citizen_hash(gw.runtime.citizen_key, death["data"]["deceased"]["personal_id"])
    deceased = [
        e
        for e in await search(gw, death["data"]["deceased"]["personal_id"])
        if e.get("citizen") == hashed
    ]
    assert [e["detail"] for e in deceased] == ["names the deceased"]
    assert deceased[0]["member"] == "VN:GOV:000.00.00.H41"


async def test_a_person_a_correction_adds_is_found(any_gateway: Gateway) -> None:
    gw = any_gateway
    doc, _ = await stopped_dossier(gw)
    father = _adult("male", besides={doc["applicant"]["personal_id"]})
    data = copy.deepcopy(doc["data"])
    data["father"] = father
    status, body = await patch(gw, doc["code"], {"reason": "thêm cha", "data": {"father": father}})
    assert status == 200, body
    found = [e for e in await search(gw, father["personal_id"]) if e.get("dossier") == doc["code"]]
    actions = [e["action"] for e in found]
    # The whole dossier: its acceptance and first step, before the father was named, too.
    assert {"dossier.accepted", "dossier.corrected", "dossier.concerns"} <= set(actions), actions
    [added] = [e for e in found if e["action"] == "dossier.concerns"]
    assert (added["detail"], added["service"]) == ("names the father", "admin")


async def test_operators_actions_are_found_by_their_member(any_gateway: Gateway) -> None:
    """A correction, a replay of the dead step and the resume it makes were recorded with the
    operator's subsystem id as member (VN:GOV:000.00.00.H41:vanhanh) and no subsystem, and the
    replay without request id or service: a search by the agency's member id missed them all."""
    gw = any_gateway
    doc, right = await stopped_dossier(gw, start=3)
    fix = {"reason": "tên", "applicant": {**doc["applicant"], "full_name": right}}
    async with gw.http.patch(
        f"{gw.url}/v1/dossiers/{doc['code']}",
        json=fix,
        headers=gw.headers("operator", **{"X-Request-Id": "fix-1"}),
    ) as r:
        assert r.status == 200, await r.text()
    dead = await gw.runtime.store.read(lambda tx: list_jobs(tx, state="dead", limit=10, after_id=0))
    (job,) = [j for j in dead if j.dossier == doc["code"]]
    async with await gw.post(
        f"/v1/admin/outbox/{job.id}/replay", None, who="operator", headers={"X-Request-Id": "rp-1"}
    ) as r:
        assert r.status == 200, await r.text()
    async with await gw.get(
        "/v1/audit/events?member=VN:GOV:000.00.00.H41&service=admin", who="auditor"
    ) as r:
        assert r.status == 200, await r.text()
        items = [e for e in (await r.json())["items"] if e.get("dossier") == doc["code"]]
    by_action = {e["action"]: e for e in items}
    assert set(by_action) == {"dossier.corrected", "job.replayed", "dossier.resumed"}, items
    for event in items:
        assert event["subsystem"] == "VN:GOV:000.00.00.H41:vanhanh", event
    assert by_action["dossier.corrected"]["request_id"] == "fix-1"
    assert by_action["job.replayed"]["request_id"] == by_action["dossier.resumed"]["request_id"]
    assert by_action["job.replayed"]["request_id"] == "rp-1"


async def test_a_newborn_is_found_by_the_personal_id_its_birth_registration_issued(
    any_gateway: Gateway,
) -> None:
    gw = any_gateway
    birth = next(sample_dossiers(1, seed=0, death_share=0, start=11))
    async with await gw.post("/v1/dossiers", birth) as r:
        assert r.status == 202, await r.text()
    await gw.wait_status(birth["code"], DONE)
    steps = await gw.runtime.store.read(lambda tx: tx.all("dossiers.steps", dossier=birth["code"]))
    [registered] = [s for s in steps if s["name"] == "register_birth"]
    assert registered["status"] == "done", steps
    child_id = msgspec.json.decode(registered["result"])["personal_id"]

    found = [e for e in await search(gw, child_id) if e.get("dossier") == birth["code"]]
    hashed = citizen_hash(gw.runtime.citizen_key, child_id)
    [named] = [e for e in found if e.get("citizen") == hashed]
    assert (named["action"], named["detail"]) == ("dossier.concerns", "names the child")
    assert (named["member"], named["subsystem"]) == ("VN:GOV:000.00.00.H41", MOTCUA)
    # Through it, the whole dossier: its acceptance and its steps, the birth's own included.
    delivered = {e.get("step") for e in found if e["action"] == "step.delivered"}
    assert "dossier.accepted" in {e["action"] for e in found}
    assert {"verify_applicant", "register_birth"} <= delivered, delivered
