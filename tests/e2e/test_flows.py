"""The inter-connected flows over real sockets: complete, idempotent, resumable, never doubled."""

from __future__ import annotations

import asyncio
import copy
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from connectors.identifiers import check_personal_id
from connectors.population.sandbox import REGISTRY_KEY
from connectors.testdata import Population
from connectors.text import VIETNAM
from gateway.audit import decode_entry, verify_chain
from gateway.cli import main
from gateway.flows import verify_callback
from gateway.samples import sample_dossiers
from tests.e2e.conftest import CALLBACK_SECRET, Gateway, population_registry

PROBLEM = "urn:lienthong:problem:"


def dossiers(
    n: int, *, death_share: float = 0.3, start: int = 1, callback_url: str | None = None
) -> list[dict[str, Any]]:
    return list(
        sample_dossiers(n, seed=0, start=start, death_share=death_share, callback_url=callback_url)
    )


async def sandbox_stats(gw: Gateway, name: str) -> dict[str, Any]:
    root = "/".join(gw.sandbox(name).split("/")[:3])
    async with gw.http.get(root + "/_sandbox/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def set_faults(gw: Gateway, name: str, plan: dict[str, Any]) -> None:
    root = "/".join(gw.sandbox(name).split("/")[:3])
    async with gw.http.put(root + "/_sandbox/faults", json=plan) as r:
        assert r.status == 200, await r.text()


@asynccontextmanager
async def callback_receiver() -> AsyncIterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/callback", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/callback")), received
    finally:
        await server.close()


async def test_birth_and_death_complete_with_signed_callbacks_and_portal_sync(
    make_gateway: Any,
) -> None:
    async with (
        callback_receiver() as (url, received),
        make_gateway(callback_urls=[url]) as gateway,
    ):
        birth = dossiers(1, death_share=0, callback_url=url)[0]
        death = dossiers(1, death_share=1, start=2, callback_url=url)[0]
        for doc in (birth, death):
            async with await gateway.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
        views = [
            await gateway.wait_status(d["code"], {"completed", "needs_attention", "failed"})
            for d in (birth, death)
        ]
        for _ in range(200):  # the last callback is queued in the same commit as "completed"
            if sum(1 for body, _ in received if b'"completed"' in body) >= 2:
                break
            await asyncio.sleep(0.05)
        b, d = views
        assert b["status"] == d["status"] == "completed", (b, d)
        assert [s["name"] for s in b["steps"]] == [
            "verify_applicant",
            "verify_mother",
            "register_birth",
            "register_residence",
            "issue_health_card",
        ]
        assert all(
            s["status"] == "done" and s["history"][-1]["outcome"] == "delivered"
            for s in b["steps"] + d["steps"]
        )
        born = _step(b, "register_birth")["result"]
        child = check_personal_id(
            born["personal_id"],
            birth_date=__import__("datetime").date.fromisoformat(
                birth["data"]["child"]["birth_date"]
            ),
        )
        assert child.sex == birth["data"]["child"]["sex"]
        assert born["certificate_signer"] and born["certificate_pdf_sha256"]
        # The population registry holds the child as registered: it answered "DO NGOC ANH", sex
        # "undetermined", no mother (its record was made of the residence request's folded name).
        declared = birth["data"]["child"]
        query = {k: declared[k] for k in ("full_name", "birth_date")}
        async with await gateway.post(
            "/v1/lookups/citizen", {**query, "personal_id": born["personal_id"]}
        ) as r:
            found = (await r.json())["citizen"]
        assert (found["full_name"], found["sex"]) == (declared["full_name"], declared["sex"])
        mother = birth["data"]["mother"]
        assert found["mother"] == {k: mother[k] for k in ("full_name", "personal_id")}, found
        assert _step(b, "issue_health_card")["result"]["card_number"].startswith("TE1")
        assert (
            _step(d, "register_death")["result"] and _step(d, "deregister_residence")["reference"]
        )
        # Callbacks: HMAC-signed, versions increasing, the last one says completed.
        assert received
        for body, headers in received:
            assert verify_callback(CALLBACK_SECRET.encode(), body, headers["X-Lienthong-Signature"])
            assert not verify_callback(b"wrong-secret", body, headers["X-Lienthong-Signature"])
        # The national portal holds each dossier at TrangThaiHoSo 10 (result returned).
        root = "/".join(gateway.sandbox("portal").split("/")[:3])
        for doc in (birth, death):
            portal: dict[str, Any] = {}
            for _ in range(100):  # the sync is queued with the change; give the outbox its moment
                async with gateway.http.get(f"{root}/_sandbox/dossiers/{doc['code']}") as r:
                    portal = (await r.json()).get("dossier", {}) if r.status == 200 else {}
                if str(portal.get("TrangThaiHoSo")) == "10":
                    break
                await asyncio.sleep(0.05)
            assert str(portal["TrangThaiHoSo"]) == "10", portal
            assert portal["MaTTHC"] == doc["procedure"]
        # And its progress log has a record of each step done (CapNhatTienDoHoSoMC), the last
        # one "result returned".
        steps = {"birth": [s["name"] for s in b["steps"]], "death": [s["name"] for s in d["steps"]]}
        for doc, kind in ((birth, "birth"), (death, "death")):
            progress: list[dict[str, Any]] = []
            for _ in range(200):
                async with gateway.http.get(f"{root}/_sandbox/dossiers/{doc['code']}") as r:
                    progress = (await r.json())["progress"]
                if len(progress) == len(steps[kind]):
                    break
                await asyncio.sleep(0.05)
            assert sorted(r["PhongBanXuLy"] for r in progress) == sorted(steps[kind]), progress
            last = next(r for r in progress if r["PhongBanXuLy"] == steps[kind][-1])
            assert last["TrangThai"] == "10" and last["MaHoSo"] == doc["code"]
        report = await verify_chain(gateway.runtime.store)
        assert report.ok, report.describe()
        rows = await gateway.runtime.store.read(
            lambda tx: tx.all("audit.by_dossier", dossier=birth["code"])
        )
        actions = [decode_entry(r["entry"])["action"] for r in rows]
        assert actions[0] == "dossier.accepted" and actions.count("step.delivered") >= 4
        assert "dossier.completed" in actions
        assert all(
            birth["applicant"]["personal_id"].encode() not in bytes(r["entry"]) for r in rows
        )


async def test_same_dossier_twice_is_one_and_a_changed_one_is_a_conflict(gateway: Gateway) -> None:
    doc = dossiers(1, death_share=0)[0]
    answers = []
    for body in (doc, doc, _nfd(doc)):
        async with await gateway.post("/v1/dossiers", body) as r:
            answers.append((r.status, await r.json()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 202
    changed = copy.deepcopy(doc)
    changed["data"]["child"]["full_name"] = "Nguyễn Văn Khác"
    async with await gateway.post("/v1/dossiers", changed) as r:
        problem = await r.json()
        assert (r.status, problem.get("type")) == (409, PROBLEM + "duplicate-conflict"), (
            problem,
            changed["data"]["child"],
            doc["data"]["child"],
        )
    view = await gateway.wait_status(doc["code"], {"completed"})
    rows = await gateway.runtime.store.read(
        lambda tx: tx.all("audit.by_dossier", dossier=doc["code"])
    )
    assert [decode_entry(r["entry"])["action"] for r in rows].count("dossier.accepted") == 1
    assert _step(view, "register_birth")["status"] == "done"
    stats = await sandbox_stats(gateway, "civil_status")
    assert stats["writes"].get("birth.register") == 1


async def test_the_portal_is_told_when_the_one_stop_system_received_the_dossier(
    gateway: Gateway,
) -> None:
    """Found by probing: NgayTiepNhan (the date the dossier was received) was the gateway's
    acceptance time, so a dossier a one-stop system received weeks before it could push it was
    reported to the portal as received that day, skewing its processing times. It is the
    dossier's submitted_at, in Vietnam time."""
    doc = dossiers(1, death_share=0)[0]
    filed = datetime.fromisoformat(doc["submitted_at"])
    assert datetime.now(VIETNAM) - filed > timedelta(days=1), doc["submitted_at"]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    await gateway.wait_status(doc["code"], {"completed"})
    root = "/".join(gateway.sandbox("portal").split("/")[:3])
    portal: dict[str, Any] = {}
    for _ in range(100):  # the sync is queued with the change; give the outbox its moment
        async with gateway.http.get(f"{root}/_sandbox/dossiers/{doc['code']}") as r:
            portal = (await r.json()).get("dossier", {}) if r.status == 200 else {}
        if str(portal.get("TrangThaiHoSo")) == "10":
            break
        await asyncio.sleep(0.05)
    assert str(portal.get("TrangThaiHoSo")) == "10", portal
    assert portal["NgayTiepNhan"] == filed.astimezone(VIETNAM).strftime("%Y%m%d%H%M%S"), portal


def _nfd(doc: dict[str, Any]) -> dict[str, Any]:
    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return unicodedata.normalize("NFD", v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(doc)  # type: ignore[no-any-return]


async def test_transient_faults_every_flow_completes_and_nothing_registers_twice(
    make_gateway: Any,
) -> None:
    faults = {name: {"error_rate": 0.15, "lost_reply_rate": 0.1, "reset_rate": 0.05, "seed": 7}
              for name in ("population", "civil_status", "insurance", "portal")}  # fmt: skip
    retry = {"max_attempts": 30, "base_delay_s": 0.01, "max_delay_s": 0.05, "jitter": 0.1}
    registries = {
        n: {"timeout_s": 2.0, "retry": retry}
        for n in ("population", "civil_status", "insurance", "business", "portal")
    }
    async with make_gateway(sandbox={"faults": faults}, registries=registries) as gw:
        batch = dossiers(24)
        for doc in batch:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202
        views = [
            await gw.wait_status(d["code"], {"completed", "needs_attention", "failed"}, within=120)
            for d in batch
        ]
        assert [v["status"] for v in views] == ["completed"] * len(batch)
        births = sum(1 for d in batch if d["flow"] == "birth")
        civil = (await sandbox_stats(gw, "civil_status"))["writes"]
        population = (await sandbox_stats(gw, "population"))["writes"]
        insurance = (await sandbox_stats(gw, "insurance"))["writes"]
        assert (
            civil.get("birth.register", 0) == births
            and civil.get("death.register", 0) == len(batch) - births
        )
        assert population.get("residence.register", 0) == births
        assert population.get("residence.deregister", 0) == len(batch) - births
        assert insurance.get("card.issue_newborn", 0) == births
        assert insurance.get("funeral.pay", 0) == len(batch) - births
        assert sum(v["steps"][i]["attempts"] for v in views for i in range(4)) > 4 * len(
            batch
        )  # faults bit
        # Notifications settle too, and none dies: a portal sync retried after a lost reply sends
        # the very request its key was first used for (the portal refuses a reused key otherwise).
        counts: dict[str, int] = {}
        for _ in range(600):
            rows = await gw.runtime.store.read(lambda tx: tx.all("outbox.counts"))
            counts = {r["state"]: r["n"] for r in rows}
            if not counts.get("pending") and not counts.get("running"):
                break
            await asyncio.sleep(0.05)
        assert counts.get("dead", 0) == 0, counts
        assert (await sandbox_stats(gw, "portal"))["replays"] > 0  # lost portal replies happened
        # And the portal ends where the dossiers did: an older state's sync, retried after a
        # newer one went through, left it "in progress" (found by probing: 5 of 6 dossiers).
        root = "/".join(gw.sandbox("portal").split("/")[:3])
        held = []
        for doc in batch:
            async with gw.http.get(f"{root}/_sandbox/dossiers/{doc['code']}") as r:
                held.append(str((await r.json())["dossier"]["TrangThaiHoSo"]))
        assert held == ["10"] * len(batch), held
        assert (await verify_chain(gw.runtime.store)).ok


async def test_dead_letter_then_replay(make_gateway: Any) -> None:
    retry = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
    async with make_gateway(
        registries={"insurance": {"timeout_s": 2.0, "retry": retry}},
        sandbox={"faults": {"insurance": {"error_rate": 1.0}}},
    ) as gw:
        doc = dossiers(1, death_share=0)[0]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
        assert view["status"] == "failed"
        card = _step(view, "issue_health_card")
        assert card["status"] == "failed" and card["attempts"] == 2 and "503" in card["error"]
        async with await gw.get("/v1/admin/outbox?state=dead", who="operator") as r:
            dead = (await r.json())["items"]
        assert [j["dossier"] for j in dead] == [doc["code"]] and dead[0]["last_error"]
        async with await gw.get("/v1/admin/outbox?state=dead") as r:
            assert r.status == 403  # a provincial system is no operator
        await set_faults(gw, "insurance", {"latency_ms": 1000})  # up again, slowly
        async with await gw.post(
            f"/v1/admin/outbox/{dead[0]['id']}/replay", None, who="operator"
        ) as r:
            assert r.status in (200, 202), await r.text()
        # The replayed step resumes its dossier: while it runs the dossier says so, and takes
        # no correction (it said failed, and a correction the registry never saw was accepted).
        async with await gw.get(f"/v1/dossiers/{doc['code']}") as r:
            assert (await r.json())["status"] == "in_progress"
        seen = set()  # and its step says running while its job runs (it said pending)
        for _ in range(100):
            async with await gw.get(f"/v1/dossiers/{doc['code']}") as r:
                seen.add(_step(await r.json(), "issue_health_card")["status"])
            if "running" in seen:
                break
            await asyncio.sleep(0.01)
        assert "running" in seen, seen
        fix = {"reason": "tên", "data": {"child": {"full_name": "Nguyễn Văn Khác"}}}
        async with gw.http.patch(
            f"{gw.url}/v1/dossiers/{doc['code']}", json=fix, headers=gw.headers("operator")
        ) as r:
            assert r.status == 409, await r.text()
        view = await gw.wait_status(doc["code"], {"completed"})
        history = [h["outcome"] for h in _step(view, "issue_health_card")["history"]]
        assert history[-2:] == ["resumed", "delivered"], history
        assert [s["attempts"] for s in view["steps"][:3]] == [
            1,
            1,
            1,
        ]  # finished steps not repeated
        assert (await sandbox_stats(gw, "civil_status"))["writes"]["birth.register"] == 1


async def test_permanent_refusal_is_corrected_and_resumed(gateway: Gateway, tmp_path: Any) -> None:
    doc = dossiers(1, death_share=0)[0]
    right = doc["applicant"]["full_name"]
    doc["applicant"]["full_name"] = "Phạm Văn Sai"
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
    view = await gateway.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "needs_attention"
    assert "does not match" in view["steps"][0]["error"]
    async with await gateway.get("/v1/dossiers?status=needs_attention", who="operator") as r:
        assert [d["code"] for d in (await r.json())["items"]] == [doc["code"]]
    # Resuming before a correction is allowed but stops again the same way; correct first.
    patch = {
        "reason": "tên người nộp sai chính tả",
        "applicant": {**doc["applicant"], "full_name": right},
    }
    async with gateway.http.patch(
        gateway.url + f"/v1/dossiers/{doc['code']}", json=patch, headers=gateway.headers("operator")
    ) as r:
        assert r.status == 200, await r.text()
    async with gateway.http.patch(
        gateway.url + f"/v1/dossiers/{doc['code']}",
        json={"reason": "x", "applicant": {**doc["applicant"], "personal_id": "1"}},
        headers=gateway.headers("operator"),
    ) as r:
        assert (r.status, (await r.json())["type"]) == (422, PROBLEM + "invalid-personal-id")
    # The operator resumes through the CLI, against the same store the gateway runs on.
    config = tmp_path / "cli.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{gateway.runtime.store.path}"\n')  # type: ignore[attr-defined]
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["flows", "resume", doc["code"], "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "resumed at step verify_applicant" in result.output
    gateway.runtime.worker.wake()  # type: ignore[union-attr]
    view = await gateway.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
    assert view["status"] == "completed"
    outcomes = [h["outcome"] for h in view["steps"][0]["history"]]
    assert outcomes == ["dead", "resumed", "delivered"]
    again = await asyncio.to_thread(
        CliRunner().invoke, main, ["flows", "resume", doc["code"], "--config", str(config)]
    )
    assert again.exit_code == 1 and "only a stopped flow" in again.output
    async with await gateway.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
        assert (r.status, (await r.json())["type"]) == (409, PROBLEM + "status-transition")


async def test_a_subsystem_sees_only_its_own_dossiers(gateway: Gateway) -> None:
    doc = dossiers(1, death_share=0)[0]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
    async with await gateway.get(f"/v1/dossiers/{doc['code']}", who="outsider") as r:
        assert r.status == 403
    async with await gateway.get(f"/v1/dossiers/{doc['code']}", who="operator") as r:
        assert r.status == 200
    async with await gateway.get("/v1/dossiers/000.00.00.H41-261122-9999") as r:
        assert (r.status, (await r.json())["type"]) == (404, PROBLEM + "unknown-dossier")


async def test_operations_endpoints(gateway: Gateway) -> None:
    async with gateway.http.get(gateway.url + "/healthz") as r:
        assert r.status == 200
    async with gateway.http.get(gateway.url + "/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body["checks"]["store"] == "ok"
    doc = dossiers(1, death_share=0)[0]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
    await gateway.wait_status(doc["code"], {"completed"})
    async with gateway.http.get(gateway.url + "/metrics") as r:
        text = await r.text()
    assert (
        'lienthong_http_requests_total{method="POST",route="/v1/dossiers",status="202"} 1.0' in text
    )
    # The depth: what is queued, not every job ever done.
    assert 'lienthong_outbox_jobs{state="pending"}' in text
    assert 'lienthong_outbox_jobs{state="done"}' not in text
    assert (
        'lienthong_registry_calls_total{operation="birth.register",outcome="ok",registry="civil_status"} 1.0'
        in text
    )
    assert "lienthong_http_request_duration_seconds_bucket" in text
    assert 'lienthong_circuit_state{endpoint="civil_status"} 0.0' in text
    # The portal is a registry like the others: its syncs go through its circuit and are counted
    # (they went round both, so a portal outage spent every sync's attempts unseen).
    synced = (
        'lienthong_registry_calls_total{operation="dossier.sync",outcome="ok",registry="portal"}'
    )
    deadline = asyncio.get_running_loop().time() + 30
    while synced not in text:
        assert asyncio.get_running_loop().time() < deadline, "no portal sync counted"
        await asyncio.sleep(0.1)
        async with gateway.http.get(gateway.url + "/metrics") as r:
            text = await r.text()
    assert 'lienthong_circuit_state{endpoint="portal"} 0.0' in text


async def test_fail_closed_when_checkpoints_cannot_be_timestamped(make_gateway: Any) -> None:
    # A TSA that does not answer: checkpoints cannot be timestamped, so after the configured
    # period the gateway refuses new work and says why — and keeps what it had accepted.
    from signing.testing import free_port

    dead_tsa = f"http://127.0.0.1:{free_port()}/tsa"
    audit = {
        "tsa_url": dead_tsa,
        "checkpoint_every": 1,
        "checkpoint_interval_s": 0.05,
        "fail_closed_after_s": 0.2,
    }
    async with make_gateway(audit=audit) as gw:
        first = dossiers(1, death_share=0)[0]
        async with await gw.post("/v1/dossiers", first) as r:
            accepted_first = r.status
        for _ in range(1200):  # a minute at most: a loaded machine stamps slowly
            async with await gw.get("/readyz", who="operator") as r:
                if r.status == 503:
                    problem = await r.json()
                    break
            await asyncio.sleep(0.05)
        assert (r.status, problem["type"]) == (503, PROBLEM + "not-ready")
        assert "timestamped audit checkpoint" in problem["checks"]["audit"]
        async with gw.http.get(gw.url + "/readyz") as r:  # anyone: which check, not why
            anonymous = await r.json()
        assert anonymous["checks"]["audit"] == "failing", anonymous
        assert "timestamped" not in anonymous["detail"], anonymous
        second = dossiers(1, death_share=0, start=2)[0]
        async with await gw.post("/v1/dossiers", second) as r:
            refused = await r.json()
            assert (r.status, refused["type"]) == (503, PROBLEM + "not-accepting")
            assert int(r.headers["Retry-After"]) > 0  # was missing
        async with await gw.get(f"/v1/dossiers/{second['code']}") as r:
            assert r.status == 404  # nothing half-stored
        # A lookup appends to the log too: refused as well (it went through, and was logged).
        person = Population(0).citizen(0)
        query = {
            "personal_id": person.personal_id,
            "full_name": person.full_name,
            "birth_date": person.birth_date.isoformat(),
        }
        logged = await gw.runtime.store.read(lambda tx: tx.one("audit.count"))
        async with await gw.post("/v1/lookups/citizen", query) as r:
            refused = await r.json()
            assert (r.status, refused["type"]) == (503, PROBLEM + "not-accepting"), refused
        assert await gw.runtime.store.read(lambda tx: tx.one("audit.count")) == logged
        if accepted_first == 202:
            async with await gw.get(f"/v1/dossiers/{first['code']}") as r:
                assert r.status == 200  # what was accepted stays


def _step(view: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in view["steps"] if s["name"] == name)
    return step


async def _filed_by_ho_chi_minh_city(make_gateway: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Run ``doc`` to its end as Hồ Chí Minh City's one-stop system filed it; its final view."""
    hcm = "VN:GOV:000.00.00.H29:motcua"
    async with make_gateway(
        subsystems=[{"id": hcm, "token": "t-hcm-0123456789", "rights": ["dossiers.submit"]}]
    ) as gw:
        doc["code"] = "000.00.00.H29-" + doc["code"].split("-", 1)[1]
        auth = {"Authorization": "Bearer t-hcm-0123456789"}
        async with await gw.post("/v1/dossiers", doc, headers=auth) as r:
            assert r.status == 202, await r.text()
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # polled as the H29 system (wait_status asks as motcua)
            async with gw.http.get(f"{gw.url}/v1/dossiers/{doc['code']}", headers=auth) as r:
                view: dict[str, Any] = await r.json()
            if view.get("status") in ("completed", "needs_attention", "failed"):
                return view
            assert asyncio.get_running_loop().time() < deadline, view
            await asyncio.sleep(0.05)


async def test_a_birth_is_registered_in_the_province_the_child_will_live_in(
    make_gateway: Any,
) -> None:
    """The registering province and unit were the connector's defaults (Nghệ An, H41) for every
    dossier: a child registered by Hồ Chí Minh City's one-stop system, to live there, got a
    Nghệ An personal id (its first three digits are the registering province) and number."""
    births = dossiers(30, death_share=0)
    doc = next(d for d in births if d["data"]["residence"]["province_code"] == "079")
    view = await _filed_by_ho_chi_minh_city(make_gateway, doc)
    assert view["status"] == "completed", view
    born = _step(view, "register_birth")
    assert born["result"]["personal_id"].startswith("079"), born
    assert born["reference"].startswith("KS.079."), born


async def test_a_death_is_registered_in_the_province_the_deceased_last_lived_in(
    make_gateway: Any,
) -> None:
    """Every death was registered in the connector's configured province (Nghệ An): the
    deceased's last residence, when the declaration gives it, names the registering one; when
    it does not, the one the population registry holds (where they lived, which for a tenth of
    its people is not their permanent address) — never the connector's default."""
    people = {c.personal_id: c for c in Population(0).citizens(2000)}

    def lived(doc: dict[str, Any]) -> str:
        return people[doc["data"]["deceased"]["personal_id"]].current_address.province_code

    deaths = dossiers(200, death_share=1)
    doc = next(d for d in deaths if d["data"]["deceased"]["residence"]["province_code"] != "040")
    province = doc["data"]["deceased"]["residence"]["province_code"]
    view = await _filed_by_ho_chi_minh_city(make_gateway, copy.deepcopy(doc))
    assert view["status"] == "completed", view
    assert _step(view, "register_death")["reference"].startswith(f"KT.{province}."), view

    # Without it (the field is optional): where the registry says the deceased lived.
    moved = next(
        d
        for d in deaths
        if lived(d) not in ("040", d["data"]["deceased"]["residence"]["province_code"])
    )
    del moved["data"]["deceased"]["residence"]
    moved["code"] = moved["code"][:-4] + "9999"  # maybe the dossier above
    view = await _filed_by_ho_chi_minh_city(make_gateway, moved)
    assert view["status"] == "completed", view
    assert _step(view, "verify_deceased")["result"]["residence_province"] == lived(moved)
    assert _step(view, "register_death")["reference"].startswith(f"KT.{lived(moved)}."), view


async def test_a_death_no_residence_is_known_for_stops_before_it_is_registered(
    make_gateway: Any,
) -> None:
    """Neither the dossier nor the population registry says where the deceased lived: the flow
    stops before the death is registered, which cannot be undone, asking for the residence; the
    correction gives it, and the death is registered there."""
    doc = next(sample_dossiers(1, seed=0, population=100, death_share=1))
    residence = doc["data"]["deceased"].pop("residence")
    async with population_registry() as registry:
        people = registry.app[REGISTRY_KEY].people
        deceased = doc["data"]["deceased"]["personal_id"]
        people[deceased] = replace(people[deceased], citizen=None, permanent=None)
        async with make_gateway(registries={"population": registry.settings}) as gw:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
            assert view["status"] == "needs_attention", view
            stopped = _step(view, "register_death")
            assert "give data.deceased.residence" in stopped["error"], stopped
            assert (await sandbox_stats(gw, "civil_status"))["writes"] == {}
            fix = {"reason": "nơi cư trú", "data": {"deceased": {**doc["data"]["deceased"],
                                                                  "residence": residence}}}  # fmt: skip
            view = await _correct_and_resume(gw, doc["code"], fix)
    assert view["status"] == "completed", view
    province = residence["province_code"]
    assert _step(view, "register_death")["reference"].startswith(f"KT.{province}."), view


async def test_a_registry_fault_quoting_a_personal_id_does_not_put_it_in_the_audit_log(
    gateway: Gateway,
) -> None:
    """A register's refusal may quote a personal id ("death of <id> already registered"); that
    text went verbatim into the step's audit events, in a log kept for ever and exported in
    bundles, which personal ids never enter."""
    first = dossiers(10, death_share=1)[0]
    again = {**copy.deepcopy(first), "code": first["code"][:-4] + "9999"}  # the same death
    dead = first["data"]["deceased"]["personal_id"]
    for doc in (first, again):
        async with await gateway.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gateway.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
    assert view["status"] == "needs_attention", view
    failed = _step(view, "register_death")
    assert dead in failed["error"]  # the dossier's own view keeps the registry's words
    rows = await gateway.runtime.store.read(
        lambda tx: tx.all("audit.by_dossier", dossier=again["code"])
    )
    details = [decode_entry(r["entry"]).get("detail", "") for r in rows]
    # The register's code, not its words (which can name a person and their birth date too).
    assert any("refused the request (code DA_DANG_KY)" in d for d in details), details
    assert all(dead.encode() not in bytes(r["entry"]) for r in rows)


async def _correct_and_resume(gateway: Gateway, code: str, fix: dict[str, Any]) -> dict[str, Any]:
    """An operator's correction of a stopped dossier, then its resume; the view once it ends."""
    async with gateway.http.patch(
        f"{gateway.url}/v1/dossiers/{code}", json=fix, headers=gateway.headers("operator")
    ) as r:
        assert r.status == 200, await r.text()
    async with await gateway.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()
    return await gateway.wait_status(code, {"needs_attention", "failed", "completed"})


async def test_a_death_of_someone_the_population_registry_does_not_hold_stops_before_it_is_registered(
    gateway: Gateway,
) -> None:
    """The death was registered (it cannot be undone), then the residence could not be
    de-registered, and the dossier could be neither corrected (the registered death had sent
    the deceased) nor finished. The deceased is now verified first; a correction of a mistyped
    id is taken, and the resumed flow completes."""
    doc = dossiers(10, death_share=1)[0]
    right = dict(doc["data"]["deceased"])
    doc["data"]["deceased"].update(personal_id="019053987654", birth_date="1953-03-04")
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "needs_attention", view
    assert _step(view, "verify_deceased")["status"] == "failed", view
    assert _step(view, "register_death")["attempts"] == 0, view
    assert (await sandbox_stats(gateway, "civil_status"))["writes"] == {}
    fix = {"reason": "số định danh", "data": {"deceased": right}}
    view = await _correct_and_resume(gateway, doc["code"], fix)
    assert view["status"] == "completed", view
    assert [s["name"] for s in view["steps"]] == [
        "verify_applicant",
        "verify_deceased",
        "verify_beneficiary",
        "register_death",
        "deregister_residence",
        "pay_funeral_allowance",
    ]


async def test_a_birth_whose_mother_the_population_registry_does_not_hold_stops_before_it_is_registered(
    gateway: Gateway,
) -> None:
    """Found by probing: the birth was registered, then the child's residence refused ("no
    household head"), and the mother's id could not be corrected (the registered birth had sent
    it): half a flow, for ever. The mother is now verified first; a corrected id completes."""
    doc = dossiers(1, death_share=0)[0]
    right = dict(doc["data"]["mother"])
    doc["data"]["mother"].update(personal_id="019190987654", birth_date="1990-03-04")
    doc["data"]["relation"] = "guardian"  # the applicant is no longer the mother the data names
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "needs_attention", view
    assert "the mother does not match" in _step(view, "verify_mother")["error"], view
    assert _step(view, "register_birth")["attempts"] == 0, view
    assert (await sandbox_stats(gateway, "civil_status"))["writes"] == {}
    fix = {"reason": "số định danh của mẹ", "data": {"mother": right}}
    view = await _correct_and_resume(gateway, doc["code"], fix)
    assert view["status"] == "completed", view


async def test_a_birth_whose_mother_or_applicant_is_dead_stops_before_it_is_registered(
    gateway: Gateway,
) -> None:
    """Found by probing: a mother whose death was registered first (she died at or after the
    birth) was verified (the registry's lookup answered a plain match), the birth was registered
    (irreversible), then her household refused the child ("the household head is deceased"): a
    dossier stuck for ever. The lookup says the registry recorded her death; the flow stops at
    verify_mother (verify_applicant, when she files it herself) with nothing registered."""
    birth = dossiers(1, death_share=0)[0]
    death = dossiers(1, death_share=1, start=2)[0]
    mother, declarant = birth["data"]["mother"], death["applicant"]
    assert declarant["personal_id"] != mother["personal_id"]
    death["data"]["deceased"].update(mother, death_date="2026-11-25",
                                     residence=birth["data"]["residence"])  # fmt: skip
    death["submitted_at"] = "2026-11-26T09:00:00+07:00"
    orphan = copy.deepcopy(birth)
    orphan["code"] = birth["code"][:-4] + "9999"
    orphan["applicant"], orphan["data"]["relation"] = declarant, "grandparent"
    orphan["data"]["child"]["birth_date"] = "2026-11-24"
    orphan["submitted_at"] = "2026-12-01T09:00:00+07:00"
    views = {}
    for doc in (death, orphan, birth):  # the death first; the mother files the last herself
        async with await gateway.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        views[doc["code"]] = await gateway.wait_status(
            doc["code"], {"completed", "needs_attention", "failed"}
        )
    assert views[death["code"]]["status"] == "completed", views[death["code"]]
    for doc, step in ((orphan, "verify_mother"), (birth, "verify_applicant")):
        view = views[doc["code"]]
        assert view["status"] == "needs_attention", view
        who = step.split("_")[1]
        assert f"the {who} is recorded deceased" in _step(view, step)["error"], view
        assert _step(view, "register_birth")["attempts"] == 0, view
    assert (await sandbox_stats(gateway, "civil_status"))["writes"] == {"death.register": 1}


async def test_a_death_the_population_registry_already_holds_is_still_verified(
    make_gateway: Any,
) -> None:
    """verify_deceased refuses no one for being dead: the population registry may have recorded
    the death (from another declaration) before this dossier registers it."""
    doc = next(sample_dossiers(1, seed=0, population=100, death_share=1))
    async with population_registry() as registry:
        people = registry.app[REGISTRY_KEY].people
        deceased = doc["data"]["deceased"]["personal_id"]
        people[deceased] = replace(people[deceased], deceased="KT.040.2026.000099")
        async with make_gateway(registries={"population": registry.settings}) as gw:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
    assert view["status"] == "completed", view


async def test_a_dossier_keeps_the_steps_it_was_accepted_with(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step added to a flow (verify_deceased) reaches the dossiers accepted after it: one
    accepted before, and stopped, resumes its own steps, each by its name."""
    from gateway.flows import definitions

    death = definitions.FLOWS["death"]
    before = definitions.Flow("death", tuple(s for s in death.steps if s.name != "verify_deceased"))
    monkeypatch.setitem(definitions.FLOWS, "death", before)
    await set_faults(gateway, "insurance", {"error_rate": 1.0})
    doc = dossiers(10, death_share=1)[0]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "failed" and len(view["steps"]) == len(before.steps), view
    monkeypatch.setitem(definitions.FLOWS, "death", death)  # the gateway upgraded
    await set_faults(gateway, "insurance", {})
    async with await gateway.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "completed", view
    assert [s["name"] for s in view["steps"]] == [s.name for s in before.steps]


async def test_a_death_is_not_registered_on_another_citizens_record(make_gateway: Any) -> None:
    """Found by probing: the population registry's record of another citizen, in answer to
    verify_deceased, verified the deceased, and the death (which cannot be undone) was
    registered. Such an answer is a registry fault: retried, then the flow stops before it."""
    doc = next(sample_dossiers(1, seed=0, population=100, death_share=1))
    deceased = doc["data"]["deceased"]["personal_id"]
    async with population_registry() as registry:
        people = registry.app[REGISTRY_KEY].people
        someone = next(
            pid for pid in people if pid not in (deceased, doc["applicant"]["personal_id"])
        )
        people[deceased] = replace(people[deceased], pid=someone)
        async with make_gateway(registries={"population": registry.settings}) as gw:
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
            writes = (await sandbox_stats(gw, "civil_status"))["writes"]
    steps = {s["name"]: s for s in view["steps"]}
    assert view["status"] != "completed" and steps["verify_applicant"]["status"] == "done"
    assert steps["verify_deceased"]["status"] == "failed", steps["verify_deceased"]
    assert "another citizen" in steps["verify_deceased"]["error"]
    assert steps["register_death"]["status"] == "pending" and writes == {}


async def test_a_flows_population_calls_name_the_dossiers_procedure(make_gateway: Any) -> None:
    """Found by probing: every call told the population registry it was made for the public
    service "LIENTHONG" (MaDVC), a code no service catalogue holds. A flow's calls name the
    procedure the dossier was filed under: a birth's 1.001193, a death's 1.000656."""
    birth = next(sample_dossiers(1, seed=0, population=100, death_share=0))
    death = next(sample_dossiers(1, seed=0, population=100, death_share=1, start=2))
    async with population_registry() as registry:
        async with make_gateway(registries={"population": registry.settings}) as gw:
            for doc in (birth, death):
                async with await gw.post("/v1/dossiers", doc) as r:
                    assert r.status == 202, await r.text()
                view = await gw.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
                assert view["status"] == "completed", view
    services = [re.findall(rb"<(?:\w+:)?MaDVC>([^<]*)<", body) for body in registry.requests]
    # verify applicant, verify mother, register residence; verify applicant, verify deceased,
    # de-register residence
    assert services == [[b"1.001193"]] * 3 + [[b"1.000656"]] * 3, services
