"""What the permanent audit log keeps of the personal data a flow handles (Decree 13/2023).

The log is append-only, kept for ever and exported in every evidence bundle of a dossier: what
enters it cannot be erased. Found by probing: a newborn's health-insurance card number (whose
last 10 digits are the child's social-insurance code) was the ``reference`` of its
``issue_health_card`` step's ``step.delivered`` event, in clear, although a card lookup's own
event keeps only a keyed hash of what was asked (``params_hmac``); a registry's refusal quoting
a child's name and birth date went into it verbatim; a citizen lookup disclosing the parents
left no trace an auditor's search by a parent's id could find.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
from datetime import date
from typing import Any

import pytest

from gateway.audit import decode_entry
from tests.e2e.conftest import MOTCUA, Gateway
from tests.e2e.test_flows import _step, dossiers
from tests.e2e.test_lookups import citizen_query


async def _events(gw: Gateway, code: str) -> list[dict[str, Any]]:
    rows = await gw.runtime.store.read(lambda tx: tx.all("audit.by_dossier", dossier=code))
    return [decode_entry(bytes(r["entry"])) for r in rows]


async def test_a_health_insurance_card_number_enters_the_audit_log_as_a_keyed_hash(
    gateway: Gateway,
) -> None:
    doc = dossiers(1, death_share=0)[0]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"completed", "failed", "needs_attention"})
    assert view["status"] == "completed", view
    card = _step(view, "issue_health_card")
    number = card["reference"]
    # The owning client's view keeps the card number, in the step and its history.
    assert number and number.startswith("TE"), card
    assert [h["reference"] for h in card["history"] if h["outcome"] == "delivered"] == [number]

    events = await _events(gateway, doc["code"])
    # By service: the portal's progress record of a step names that step too.
    delivered = {e.get("service"): e for e in events if e["action"] == "step.delivered"}
    issued = delivered["insurance/card.issue_newborn"]
    assert "reference" not in issued, issued
    key = gateway.runtime.citizen_key
    expected = hmac.new(key, number.encode(), hashlib.sha256).hexdigest()
    assert issued["digests"]["reference_hmac"] == expected
    # A registration number is no one's: kept as the registry gave it.
    registered = _step(view, "register_birth")["reference"]
    assert delivered["civil_status/birth.register"]["reference"] == registered
    # Nowhere in the log (from which every evidence bundle is built).
    social_insurance_code = number[-10:]
    rows = await gateway.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=10**6))
    assert [r["seq"] for r in rows if social_insurance_code.encode() in bytes(r["entry"])] == []


async def _dead_jobs(gw: Gateway, code: str) -> list[dict[str, Any]]:
    async with await gw.get("/v1/admin/outbox?state=dead", who="operator") as r:
        assert r.status == 200, await r.text()
        return [j for j in (await r.json())["items"] if j["dossier"] == code]


async def _filed_twice(gw: Gateway, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``doc`` run to its end, then the same birth or death under another code: the register
    refuses it (DA_DANG_KY). The second's view, and its code."""
    again = {**copy.deepcopy(doc), "code": doc["code"][:-4] + "9999"}
    for filed in (doc, again):
        async with await gw.post("/v1/dossiers", filed) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(filed["code"], {"completed", "needs_attention", "failed"})
    assert view["status"] == "needs_attention", view
    return view, again["code"]


async def test_a_registrys_refusal_quoting_a_name_and_birth_date_stays_with_the_dossier(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by probing: the register's refusal of a birth filed twice ("the birth of Phạm Khánh
    Yến on 01/11/2026 to this mother is already registered (KS…)") went verbatim into the
    job.dead audit event, the ERROR log line and the outbox's last_error (outbox list, the admin
    API): only runs of 9+ digits were withheld. Those keep the registry's code; its words stay
    in the dossier's step history, which its client reads."""
    caplog.set_level(logging.INFO, logger="lienthong.outbox")
    doc = dossiers(1, death_share=0)[0]
    child = doc["data"]["child"]
    name, born = child["full_name"], date.fromisoformat(child["birth_date"])
    view, code = await _filed_twice(gateway, doc)
    step = _step(view, "register_birth")
    said = f"the birth of {name} on {born:%d/%m/%Y} to this mother is already registered"
    assert said in step["error"], step  # the owning client's view keeps the words
    assert [said in h["error"] for h in step["history"] if h["outcome"] == "dead"] == [True]

    personal = (name, f"{born:%d/%m/%Y}", name.split()[-1])
    [job] = await _dead_jobs(gateway, code)
    assert "DA_DANG_KY" in job["last_error"], job
    assert [p for p in personal if p in job["last_error"]] == [], job
    events = await _events(gateway, code)
    [dead] = [e for e in events if e["action"] == "job.dead"]
    assert "DA_DANG_KY" in dead["detail"], dead
    assert [e for e in events if any(p in str(e) for p in personal)] == []
    lines = [r.getMessage() for r in caplog.records if "is dead" in r.getMessage()]
    assert len(lines) == 1 and "DA_DANG_KY" in lines[0], lines
    assert [p for p in personal if p in lines[0]] == [], lines


async def test_a_registrys_refusal_quoting_a_personal_id_is_not_shown_by_the_outbox(
    gateway: Gateway,
) -> None:
    """Found by probing: outbox list and GET /v1/admin/outbox showed "death of 001143310063
    already registered", the id the audit and log copies withheld."""
    doc = dossiers(10, death_share=1)[0]
    view, code = await _filed_twice(gateway, doc)
    dead = doc["data"]["deceased"]["personal_id"]
    assert dead in _step(view, "register_death")["error"]
    [job] = await _dead_jobs(gateway, code)
    assert dead not in job["last_error"] and "DA_DANG_KY" in job["last_error"], job


async def _search(gw: Gateway, personal_id: str) -> dict[str, Any]:
    async with await gw.post("/v1/audit/search", {"personal_id": personal_id}, who="auditor") as r:
        assert r.status == 200, await r.text()
        found: dict[str, Any] = await r.json()
        return found


async def test_an_auditors_search_by_a_parents_id_finds_the_lookups_that_disclosed_them(
    gateway: Gateway,
) -> None:
    """Found by probing: a citizen lookup answers the father's and mother's names and personal
    ids, but its audit event named only the citizen looked up: a search by a parent's id (a data
    subject's request under Decree 13) found nothing, though their data went to the subsystem.
    Then each parent got an event of their own (lookup.discloses): three entries a lookup, and
    the lookup's p99 tripled. The lookup's one entry now holds the parents' hashes, by role."""
    store, key = gateway.runtime.store, gateway.runtime.citizen_key
    query = citizen_query()
    async with await gateway.post("/v1/lookups/citizen", query) as r:
        assert r.status == 200, await r.text()
        request_id = r.headers["X-Request-Id"]
        citizen = (await r.json())["citizen"]
    parents = {role: citizen[role]["personal_id"] for role in ("father", "mother")}
    assert all(parents.values()) and len(set(parents.values())) == 2, citizen
    [row] = await store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    lookup = decode_entry(bytes(row["entry"]))
    assert lookup["action"] == "lookup.citizen" and lookup["request_id"] == request_id
    assert lookup["discloses"] == {
        hmac.new(key, pid.encode(), hashlib.sha256).hexdigest(): [role]
        for role, pid in parents.items()
    }
    assert not {pid for pid in parents.values() if pid.encode() in bytes(row["entry"])}
    for personal_id in parents.values():
        found = await _search(gateway, personal_id)
        [event] = found["items"]
        assert (event["seq"], event["action"]) == (row["seq"], "lookup.citizen")
        assert event["subsystem"] == MOTCUA and event["service"] == "lookups.citizen"
        # Named as a parent, not looked up themselves: counted as a disclosure.
        assert [(a["member"], a["action"], a["n"]) for a in found["accessors"]] == [
            ("VN:GOV:000.00.00.H41", "lookup.discloses", 1)
        ]
    # The citizen's own search finds the same lookup.
    assert [e["seq"] for e in (await _search(gateway, query["personal_id"]))["items"]] == [
        row["seq"]
    ]
    # An answer that discloses no one (a name that does not match: no record) names no one.
    async with await gateway.post(
        "/v1/lookups/citizen", {**query, "full_name": "Trần Văn Khác"}
    ) as r:
        assert r.status == 200 and (await r.json())["citizen"] is None
    rows = await store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    assert len(rows) == 2 and b"discloses" not in bytes(rows[1]["entry"])
    for personal_id in parents.values():
        assert len((await _search(gateway, personal_id))["items"]) == 1
