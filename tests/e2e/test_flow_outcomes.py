"""How a flow ends when a registry's answer is not the one hoped for, over real sockets: a
verdict the citizen is told of (the funeral allowance refused as not eligible), a person to pay
verified before anything is registered, a birth whose mother has died."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from aiohttp import web

from connectors.insurance.sandbox import PASSWORD, USERNAME, create_app
from connectors.sandboxes import serve_app
from connectors.testdata import Citizen, Population
from gateway.audit import decode_entry, verify_chain
from gateway.samples import death_dossier, dossier_code
from tests.e2e.conftest import FAST_RETRY, Gateway
from tests.e2e.test_flows import _step, callback_receiver, sandbox_stats

ENDED = {"completed", "needs_attention", "failed"}
PEOPLE = Population(0).citizens(2000)  # the embedded population sandbox's (seed 0)


def _child() -> Citizen:
    """A citizen under the working age: BHXH never insured them (its sandbox's rule)."""
    return next(c for c in PEOPLE if 2 <= c.age_on() < 15)


def _adult(*besides: Citizen) -> Citizen:
    return next(c for c in PEOPLE if 25 <= c.age_on() < 60 and c not in besides)


async def _portal(gw: Gateway, code: str, wanted: Callable[[dict[str, Any]], bool]) -> Any:
    """The portal sandbox's record of the dossier (and its progress log) once ``wanted`` says."""
    root = "/".join(gw.sandbox("portal").split("/")[:3])
    held: dict[str, Any] = {}
    for _ in range(200):  # the sync is queued with the change; give the outbox its moment
        async with gw.http.get(f"{root}/_sandbox/dossiers/{code}") as r:
            held = await r.json() if r.status == 200 else {}
        if held and wanted(held):
            return held
        await asyncio.sleep(0.05)
    raise AssertionError(f"the portal holds {held}")


async def _audit(gw: Gateway, code: str) -> list[dict[str, Any]]:
    rows = await gw.runtime.store.read(lambda tx: tx.all("audit.by_dossier", dossier=code))
    return [decode_entry(r["entry"]) for r in rows]


async def test_a_funeral_allowance_refused_as_not_eligible_ends_the_flow_completed(
    make_gateway: Any, store_section: dict[str, str]
) -> None:
    """Found as an open decision: BHXH's 207 for a deceased who was never insured stopped the
    dossier needs_attention for ever, the death registered and the residence de-registered, and
    nothing an operator could correct. The verdict now ends the flow: completed, the step
    ``refused`` with BHXH's code and words, told by callback and to the portal as finished."""
    child = _child()
    declarant = _adult(child)
    async with (
        callback_receiver() as (url, received),
        make_gateway(store=store_section, callback_urls=[url]) as gw,
    ):
        doc = death_dossier(
            dossier_code(7001), child, declarant, random.Random(1), callback_url=url
        )
        doc["data"]["relation"] = "parent"
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], ENDED)
        assert view["status"] == "completed", view
        paid = _step(view, "pay_funeral_allowance")
        assert paid["status"] == "refused", paid
        assert paid["result"]["code"] == "207", paid
        assert "never contributed to social insurance" in paid["result"]["reason"], paid
        assert "not eligible" in paid["error"] and "never contributed" in paid["error"], paid
        assert [h["outcome"] for h in paid["history"]] == ["refused"], paid
        assert paid["history"][-1]["error"] == paid["error"]
        assert all(s["status"] == "done" for s in view["steps"][:-1]), view
        # Nothing paid; the death registered and the residence de-registered stand.
        assert (await sandbox_stats(gw, "insurance"))["writes"] == {}
        # The citizen's system hears the dossier finished, the refusal in it.
        last: dict[str, Any] = {}
        for _ in range(200):
            bodies = [json.loads(body) for body, _ in received]
            last = max(bodies, key=lambda b: b["version"]) if bodies else {}
            if last.get("status") == "completed":
                break
            await asyncio.sleep(0.05)
        assert last["status"] == "completed", last
        told = next(s for s in last["steps"] if s["name"] == "pay_funeral_allowance")
        assert told["status"] == "refused" and told["result"] == paid["result"], told
        # The portal: result returned (TrangThaiHoSo 10), the refusal in its progress log.
        held = await _portal(
            gw,
            doc["code"],
            lambda h: (
                str(h["dossier"].get("TrangThaiHoSo")) == "10"
                and len(h["progress"]) == len(view["steps"])
            ),
        )
        assert held["dossier"]["NgayTra"], held
        record = next(p for p in held["progress"] if p["PhongBanXuLy"] == "pay_funeral_allowance")
        assert record["TrangThai"] == "10" and "refused" in record["NoiDungXuLy"], record
        assert "never contributed" in record["NoiDungXuLy"], record
        # Audited as its own outcome, by BHXH's code (not its words); the chain holds.
        events = await _audit(gw, doc["code"])
        [refused] = [e for e in events if e["action"] == "step.refused"]
        assert refused["outcome"] == "refused" and refused["step"] == "pay_funeral_allowance"
        assert "code 207" in refused["detail"], refused
        [completed] = [e for e in events if e["action"] == "dossier.completed"]
        assert "pay_funeral_allowance" in completed["detail"], completed
        assert (await verify_chain(gw.runtime.store)).ok
        # Finished: nothing to resume.
        async with await gw.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
            assert r.status == 409, await r.text()


@asynccontextmanager
async def insurance_refusing_once(answer: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The BHXH sandbox, whose first funeral allowance request is answered ``answer`` (a refusal
    of its data), the later ones by the sandbox; yields the gateway's [registries.insurance]."""
    refused: list[bool] = []

    @web.middleware
    async def once(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/TroCapMaiTang") and not refused:
            refused.append(True)
            return web.json_response(answer)
        return await handler(request)

    app = create_app(seed=0)
    app.middlewares.append(once)
    async with serve_app(app) as url:
        yield {"url": url, "username": USERNAME, "password": PASSWORD, "timeout_s": 2.0,
               "officer_name": "Cán Bộ", "officer_id": "040088101111", "retry": FAST_RETRY}  # fmt: skip


async def test_a_funeral_allowance_refused_for_its_data_still_stops_for_an_operator(
    make_gateway: Any,
) -> None:
    """BHXH's 207 says the data are wrong too (the beneficiary is the deceased, maLyDo
    NGUOI_HUONG): no verdict, the flow stops needs_attention for an operator, and a resume once
    the cause is dealt with pays the allowance."""
    people = [c for c in PEOPLE if c.age_on() >= 60]
    dead, declarant = people[0], _adult()
    doc = death_dossier(dossier_code(7002), dead, declarant, random.Random(2))
    wrong = {"maKetQua": "207", "maLyDo": "NGUOI_HUONG",
             "ghiChu": "Không đủ điều kiện hưởng: the beneficiary cannot be the deceased"}  # fmt: skip
    async with (
        insurance_refusing_once(wrong) as insurance,
        make_gateway(registries={"insurance": insurance}) as gw,
    ):
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], ENDED)
        assert view["status"] == "needs_attention", view
        stopped = _step(view, "pay_funeral_allowance")
        assert stopped["status"] == "failed", stopped
        assert "the beneficiary cannot be the deceased" in stopped["error"], stopped
        events = await _audit(gw, doc["code"])
        assert not [e for e in events if e["action"] in ("step.refused", "dossier.completed")]
        async with await gw.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], {"completed", "failed"})
    assert view["status"] == "completed", view
    paid = _step(view, "pay_funeral_allowance")
    assert paid["status"] == "done" and paid["result"]["amount"] > 0, paid


def _as_beneficiary(c: Citizen) -> dict[str, str]:
    return {"full_name": c.full_name, "personal_id": c.personal_id,
            "birth_date": c.birth_date.isoformat()}  # fmt: skip


def _elder_death(seq: int, *besides: Citizen) -> tuple[dict[str, Any], Citizen]:
    """A death dossier of an insured elder, filed by an adult; and another adult, neither."""
    dead = next(c for c in PEOPLE if c.age_on() >= 60 and c not in besides)
    declarant = _adult(dead, *besides)
    other = _adult(dead, declarant, *besides)
    return death_dossier(dossier_code(seq), dead, declarant, random.Random(seq)), other


async def test_a_named_beneficiary_is_verified_before_the_death_is_registered(
    gateway: Gateway,
) -> None:
    """Found as an open decision: ``data.beneficiary``, who receives the funeral allowance, went
    to BHXH unverified (a mistyped id was paid). A beneficiary other than the applicant is now
    looked up like the applicant, before the death is registered; a mismatch stops the flow
    there, naming the beneficiary, and a correction of them is taken and completes it. A dossier
    naming none (or the applicant) makes no lookup: its applicant is verified already."""
    doc, other = _elder_death(7101)
    right = _as_beneficiary(other)
    born = other.birth_date
    wrong = born + timedelta(days=1 if (born.month, born.day) != (12, 31) else -1)
    doc["data"]["beneficiary"] = {**right, "birth_date": wrong.isoformat()}  # not the registry's
    plain, _ = _elder_death(7102, other, _citizen(doc["data"]["deceased"]["personal_id"]))
    plain["data"]["beneficiary"] = _as_beneficiary(_citizen(plain["applicant"]["personal_id"]))
    for d in (doc, plain):
        async with await gateway.post("/v1/dossiers", d) as r:
            assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], ENDED)
    assert view["status"] == "needs_attention", view
    stopped = _step(view, "verify_beneficiary")
    assert stopped["status"] == "failed", stopped
    assert "the beneficiary (data.beneficiary) does not match" in stopped["error"], stopped
    assert "birth_date" in stopped["error"], stopped
    assert _step(view, "register_death")["attempts"] == 0, view
    view = await gateway.wait_status(plain["code"], ENDED)
    assert view["status"] == "completed", view
    assert _step(view, "verify_beneficiary")["result"] == {
        "skipped": "the beneficiary is the applicant, verified by verify_applicant"
    }
    # Only the plain dossier's death is registered so far.
    assert (await sandbox_stats(gateway, "civil_status"))["writes"] == {"death.register": 1}
    fix = {"reason": "ngày sinh người hưởng", "data": {"beneficiary": right}}
    async with gateway.http.patch(
        f"{gateway.url}/v1/dossiers/{doc['code']}", json=fix, headers=gateway.headers("operator")
    ) as r:
        assert r.status == 200, await r.text()
    async with await gateway.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], ENDED)
    assert view["status"] == "completed", view
    verified = _step(view, "verify_beneficiary")
    assert verified["result"]["match"] is True, verified
    assert [h["outcome"] for h in verified["history"]] == ["dead", "resumed", "delivered"]
    assert _step(view, "pay_funeral_allowance")["status"] == "done", view


def _citizen(personal_id: str) -> Citizen:
    return next(c for c in PEOPLE if c.personal_id == personal_id)


async def test_a_beneficiary_the_population_registry_holds_dead_is_not_paid(
    make_gateway: Any,
) -> None:
    """The beneficiary must be alive, as the applicant: a dead one stops the flow before the
    death is registered."""
    from dataclasses import replace

    from connectors.population.sandbox import REGISTRY_KEY
    from gateway.samples import sample_dossiers
    from tests.e2e.conftest import population_registry

    doc = next(sample_dossiers(1, seed=0, population=100, death_share=1))
    named = {doc["applicant"]["personal_id"], doc["data"]["deceased"]["personal_id"]}
    other = next(
        c for c in Population(0).citizens(100) if c.age_on() >= 18 and c.personal_id not in named
    )
    doc["data"]["beneficiary"] = _as_beneficiary(other)
    async with population_registry() as registry:
        people = registry.app[REGISTRY_KEY].people
        people[other.personal_id] = replace(
            people[other.personal_id], deceased="KT.040.2026.000098"
        )
        async with make_gateway(registries={"population": registry.settings}) as gw:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], ENDED)
            writes = (await sandbox_stats(gw, "civil_status"))["writes"]
    assert view["status"] == "needs_attention", view
    stopped = _step(view, "verify_beneficiary")
    assert "the beneficiary (data.beneficiary) is recorded deceased" in stopped["error"], stopped
    assert writes == {}


async def test_a_beneficiary_is_checked_like_every_person_at_acceptance(gateway: Gateway) -> None:
    """Bad input is a problem at POST, not a flow stopped later: the birth date the lookup needs
    is required, and the personal id checked as every other."""
    doc, other = _elder_death(7103)
    cases = [
        ({"full_name": other.full_name, "personal_id": other.personal_id}, "invalid-request",
         "birth_date"),
        ({**_as_beneficiary(other), "personal_id": "040"}, "invalid-personal-id",
         "data.beneficiary.personal_id"),
    ]  # fmt: skip
    for beneficiary, kind, where in cases:
        bad = {**doc, "data": {**doc["data"], "beneficiary": beneficiary}}
        async with await gateway.post("/v1/dossiers", bad) as r:
            problem = await r.json()
            assert r.status == 422, problem
            assert r.content_type == "application/problem+json"
            assert problem["type"].endswith(kind) and where in problem["detail"], problem


def _applicant(c: Citizen) -> dict[str, str]:
    return {"full_name": c.full_name, "personal_id": c.personal_id,
            "birth_date": c.birth_date.isoformat()}  # fmt: skip


def _births_by_kin(n: int) -> list[tuple[dict[str, Any], Citizen]]:
    """``n`` birth dossiers of distinct mothers of the 100-citizen population registry, each
    filed by a grandparent-aged relative (a mother who died files nothing), and that relative."""
    from gateway.samples import birth_dossier

    people = Population(0).citizens(100)
    mothers = [c for c in people if c.sex == "female" and 18 <= c.age_on() <= 45]
    kin = [c for c in people if 45 < c.age_on() < 80]
    found = []
    for i, (mother, relative) in enumerate(zip(mothers, kin, strict=False)):
        if i == n:
            break
        doc = birth_dossier(dossier_code(7200 + i), mother, random.Random(i))
        doc["applicant"], doc["data"]["relation"] = _applicant(relative), "grandparent"
        found.append((doc, relative))
    assert len(found) == n
    return found


def _dead(app: web.Application, personal_id: str, record: str) -> None:
    from dataclasses import replace

    from connectors.population.sandbox import REGISTRY_KEY

    people = app[REGISTRY_KEY].people
    people[personal_id] = replace(people[personal_id], deceased=record)


def _joining(doc: dict[str, Any], head: Citizen, relation: str = "CH05") -> dict[str, Any]:
    return {**doc["data"]["residence"], "household_head_id": head.personal_id,
            "household_relation": relation}  # fmt: skip


async def _patch_and_resume(gw: Gateway, code: str, fix: dict[str, Any]) -> dict[str, Any]:
    async with gw.http.patch(
        f"{gw.url}/v1/dossiers/{code}", json=fix, headers=gw.headers("operator")
    ) as r:
        assert r.status == 200, await r.text()
    async with await gw.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()
    return await gw.wait_status(code, ENDED)


async def test_a_birth_whose_mother_has_died_joins_the_household_the_dossier_names(
    make_gateway: Any,
) -> None:
    """Found as an open decision: the child always joined its mother's household, and a dead
    mother stopped the flow at verify_mother, so a child whose mother died could never be
    registered through the gateway. The dossier may now name the household the child joins
    (data.residence.household_head_id, household_relation): a dead mother, who must still match
    the registry, then stops nothing. Naming none stops the flow before the birth is registered,
    saying which field to give; the correction giving it completes the flow."""
    from connectors.population.sandbox import REGISTRY_KEY
    from tests.e2e.conftest import population_registry

    (silent, kin), (named, other_kin), (misnamed, third_kin) = _births_by_kin(3)
    # The household of someone else than the applicant (the applicant's is the usual case).
    named["data"]["residence"] = _joining(named, third_kin)
    misnamed["data"]["residence"] = _joining(misnamed, other_kin, "CH03")
    misnamed["data"]["mother"]["full_name"] = "Nguyễn Thị Khác"
    async with population_registry() as registry:
        for i, doc in enumerate((silent, named, misnamed)):
            _dead(registry.app, doc["data"]["mother"]["personal_id"], f"KT.040.2026.00009{i}")
        async with make_gateway(registries={"population": registry.settings}) as gw:
            views = {}
            for doc in (silent, named, misnamed):
                async with await gw.post("/v1/dossiers", doc) as r:
                    assert r.status == 202, await r.text()
                views[doc["code"]] = await gw.wait_status(doc["code"], ENDED)
            view = views[named["code"]]
            assert view["status"] == "completed", view
            view = views[misnamed["code"]]
            assert view["status"] == "needs_attention", view
            assert "the mother does not match" in _step(view, "verify_mother")["error"], view
            view = views[silent["code"]]
            assert view["status"] == "needs_attention", view
            stopped = _step(view, "verify_mother")
            assert "the mother is recorded deceased" in stopped["error"], stopped
            assert "give data.residence.household_head_id" in stopped["error"], stopped
            assert _step(view, "register_birth")["attempts"] == 0, view
            # Whose household the child joins is someone the dossier names: an auditor's search
            # by them finds it.
            search = {"personal_id": third_kin.personal_id}
            async with await gw.post("/v1/audit/search", search, who="auditor") as r:
                found = (await r.json())["items"]
            assert any(
                e["action"] == "dossier.concerns"
                and e.get("dossier") == named["code"]
                and e.get("detail") == "names the household head"
                for e in found
            ), found
            fix = {
                "reason": "mẹ đã mất; trẻ nhập hộ bà",
                "data": {"residence": _joining(silent, kin)},
            }
            view = await _patch_and_resume(gw, silent["code"], fix)
            births = (await sandbox_stats(gw, "civil_status"))["writes"]
    assert view["status"] == "completed", view
    assert births == {"birth.register": 2}
    people = registry.app[REGISTRY_KEY].people
    for doc, head in ((silent, kin), (named, third_kin)):
        done = views[doc["code"]] if doc is named else view
        child = people[_step(done, "register_birth")["result"]["personal_id"]]
        assert child.household_head == (people[head.personal_id].household_head or head.personal_id)
        assert child.relation == "CH05", child


async def test_a_mother_who_dies_after_the_birth_is_registered_is_corrected_at_the_residence(
    make_gateway: Any,
) -> None:
    """The mother dies after the birth was registered, before the child's residence: her
    household refuses the child (the registry's CHU_HO). The residence step is not done, so a
    correction naming another household is taken, and the resumed flow completes without
    registering the birth again."""
    ((doc, kin),) = _births_by_kin(1)
    mother = doc["data"]["mother"]["personal_id"]

    def dies_before_the_residence(app: web.Application, body: bytes) -> None:
        if b"DangKyThuongTru" in body and b"XoaDangKyThuongTru" not in body:
            _dead(app, mother, "KT.040.2026.000095")

    from tests.e2e.conftest import population_registry

    async with population_registry(on_request=dies_before_the_residence) as registry:
        async with make_gateway(registries={"population": registry.settings}) as gw:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], ENDED)
            assert view["status"] == "needs_attention", view
            assert _step(view, "register_birth")["status"] == "done", view
            refused = _step(view, "register_residence")
            assert "household head" in refused["error"] and "deceased" in refused["error"]
            assert "give data.residence.household_head_id" in refused["error"], refused
            fix = {"reason": "mẹ đã mất", "data": {"residence": _joining(doc, kin, "CH05")}}
            view = await _patch_and_resume(gw, doc["code"], fix)
            births = (await sandbox_stats(gw, "civil_status"))["writes"]
    assert view["status"] == "completed", view
    assert births == {"birth.register": 1}


async def test_the_household_a_child_joins_is_checked_at_acceptance(gateway: Gateway) -> None:
    ((doc, kin),) = _births_by_kin(1)
    residence = doc["data"]["residence"]
    cases = [
        ({**residence, "household_head_id": "12345"}, "invalid-personal-id",
         "data.residence.household_head_id"),
        ({**residence, "household_head_id": kin.personal_id, "household_relation": "CH01"},
         "invalid-request", "household_relation"),
        ({**residence, "household_relation": "CH05"}, "invalid-request",
         "data.residence.household_head_id"),
    ]  # fmt: skip
    for given, kind, where in cases:
        bad = {**doc, "data": {**doc["data"], "residence": given}}
        async with await gateway.post("/v1/dossiers", bad) as r:
            problem = await r.json()
            assert r.status == 422, problem
            assert r.content_type == "application/problem+json"
            assert problem["type"].endswith(kind) and where in problem["detail"], problem
