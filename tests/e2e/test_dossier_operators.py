"""What operators do to stopped dossiers (correct, resume), under concurrency and store failures,
and identifiers that cannot be a dossier's: on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from connectors.api import PermanentError, TransientError
from gateway import dossiers
from gateway.flows.definitions import FLOWS, Context
from gateway.outbox import list_jobs
from gateway.samples import sample_dossiers
from gateway.store import StoreUnavailable
from signing.testing import TestPKI
from tests.e2e.conftest import Gateway

PROBLEM = "urn:lienthong:problem:"
WRONG_NAME = "Phạm Văn Sai"


async def stopped_dossier(gw: Gateway, start: int = 1) -> tuple[dict[str, Any], str]:
    """A birth dossier stopped at its first step (the applicant's name does not match the
    population registry): the dossier as submitted, and the applicant's right name."""
    doc = copy.deepcopy(next(sample_dossiers(1, seed=0, start=start, death_share=0)))
    right = doc["applicant"]["full_name"]
    doc["applicant"]["full_name"] = WRONG_NAME
    async with await gw.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gw.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    assert view["status"] == "needs_attention", view
    return doc, right


async def corrected_dossier(gw: Gateway) -> str:
    """A stopped dossier whose applicant's name an operator has corrected (not yet resumed):
    its code."""
    doc, right = await stopped_dossier(gw)
    status, body = await patch(
        gw, doc["code"], {"reason": "tên", "applicant": {**doc["applicant"], "full_name": right}}
    )
    assert status == 200, body
    return str(doc["code"])


async def patch(gw: Gateway, code: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with gw.http.patch(
        f"{gw.url}/v1/dossiers/{code}", json=body, headers=gw.headers("operator")
    ) as r:
        return r.status, await r.json()


async def stored_body(gw: Gateway, code: str) -> bytes:
    row = await gw.runtime.store.read(lambda tx: tx.one("dossiers.get", code=code))
    assert row is not None
    return bytes(row["body"])


async def audit_events(gw: Gateway, code: str, action: str) -> list[dict[str, Any]]:
    async with await gw.get(f"/v1/audit/events?dossier={code}", who="auditor") as r:
        assert r.status == 200, await r.text()
        items: list[dict[str, Any]] = (await r.json())["items"]
    return [e for e in items if e["action"] == action]


async def test_concurrent_corrections_are_neither_lost_nor_misaudited(
    any_gateway: Gateway,
) -> None:
    """Two operators correct different parts of one dossier at the same moment. Before, each
    read the document, merged its change and wrote it back in another transaction: both got 200
    and one correction was silently lost (on PostgreSQL as on SQLite)."""
    gw = any_gateway
    doc, right = await stopped_dossier(gw)
    code = doc["code"]
    fixes = [
        {"reason": "tên người nộp", "applicant": {**doc["applicant"], "full_name": right}},
        {"reason": "địa chỉ", "data": {"residence": {"detail": "Số 1 Lê Lợi"}}},
        {"reason": "nơi sinh", "data": {"child": {"birth_place": "Bệnh viện Sản Nhi"}}},
    ]
    answers = await asyncio.gather(*(patch(gw, code, fix) for fix in fixes))
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 409}, answers
    for status, body in answers:
        if status == 409:
            assert body["type"] == PROBLEM + "status-transition", body
    kept = [fix for (status, _), fix in zip(answers, fixes, strict=True) if status == 200]
    assert kept, answers
    stored = await gw.runtime.store.read(lambda tx: dossiers.document_of(tx, code))
    for fix in kept:  # every correction answered 200 is in the stored document
        if "applicant" in fix:
            assert stored["applicant"]["full_name"] == right
        else:
            ((part, change),) = fix["data"].items()
            for key, value in change.items():
                assert stored["data"][part][key] == value, (fix, stored["data"][part])
    # One audit event per correction kept; each starts from the body the previous one left, and
    # the last ends at the body stored.
    events = await audit_events(gw, code, "dossier.corrected")
    assert len(events) == len(kept), events
    for earlier, later in itertools.pairwise(events):
        assert later["digests"]["before"] == earlier["digests"]["after"]
    assert events[-1]["digests"]["after"] == hashlib.sha256(await stored_body(gw, code)).hexdigest()


async def test_a_correction_reason_is_one_line_of_text(gateway: Gateway) -> None:
    # The reason goes into the audit log: it was any text at all (a NUL, lines, megabytes).
    doc, right = await stopped_dossier(gateway)
    code = doc["code"]
    before = await stored_body(gateway, code)
    fix = {"applicant": {**doc["applicant"], "full_name": right}}
    for reason in ("tên\x00", "tên\nngười nộp", " ", "x" * 501):
        status, problem = await patch(gateway, code, {"reason": reason, **fix})
        assert (status, problem["type"]) == (422, PROBLEM + "invalid-request"), (reason, problem)
        assert "$.reason" in problem["detail"], problem
    assert await stored_body(gateway, code) == before
    assert await audit_events(gateway, code, "dossier.corrected") == []
    status, _ = await patch(gateway, code, {"reason": "x" * 500, **fix})
    assert status == 200


async def test_concurrent_resumes_one_202_the_others_409(any_gateway: Gateway) -> None:
    """Before, on PostgreSQL: one 202, then 500s (NotDead escaped: "outbox job 4 is dead, not
    dead"). Now every store answers one 202 and a 409 status-transition to each other caller."""
    gw = any_gateway
    code = await corrected_dossier(gw)

    async def resume() -> tuple[int, dict[str, Any]]:
        async with await gw.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
            return r.status, await r.json()

    answers = await asyncio.gather(*(resume() for _ in range(6)))
    assert sorted(s for s, _ in answers) == [202, 409, 409, 409, 409, 409], answers
    for status, body in answers:
        if status == 409:
            assert body["type"] == PROBLEM + "status-transition", body
    view = await gw.wait_status(code, {"completed", "needs_attention", "failed"})
    assert view["status"] == "completed", view
    assert [h["outcome"] for h in view["steps"][0]["history"]] == ["dead", "resumed", "delivered"]
    assert len(await audit_events(gw, code, "dossier.resumed")) == 1


async def test_concurrent_replays_of_a_dead_step_one_200_the_others_409(
    any_gateway: Gateway,
) -> None:
    """Found by probing: on PostgreSQL, of six replays at once two or three were 500s (the
    losers read the job dead, then its dossier already resumed by the winner)."""
    gw = any_gateway
    code = await corrected_dossier(gw)
    dead = await gw.runtime.store.read(lambda tx: list_jobs(tx, state="dead", limit=10, after_id=0))
    (job,) = [j for j in dead if j.dossier == code]

    async def replay() -> tuple[int, dict[str, Any]]:
        async with await gw.post(f"/v1/admin/outbox/{job.id}/replay", None, who="operator") as r:
            return r.status, await r.json()

    answers = await asyncio.gather(*(replay() for _ in range(6)))
    assert sorted(s for s, _ in answers) == [200, 409, 409, 409, 409, 409], answers
    view = await gw.wait_status(code, {"completed", "needs_attention", "failed"})
    assert view["status"] == "completed", view
    assert len(await audit_events(gw, code, "dossier.resumed")) == 1


class _ReadsFailAfterACommit:
    """Makes the store's reads fail once a write transaction has committed: the state in which a
    handler that committed, then read again to answer, told the caller nothing was kept."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gw: Gateway) -> None:
        store = gw.runtime.store
        transact, read = store.transact, store.read
        self.committed = False

        async def failing_read(work: Callable[[Any], Any]) -> Any:
            if self.committed:
                raise StoreUnavailable("injected: the database went away")
            return await read(work)

        async def noting_transact(work: Callable[[Any], Any], **kw: Any) -> Any:
            result = await transact(work, **kw)
            self.committed = True
            return result

        monkeypatch.setattr(store, "read", failing_read)
        monkeypatch.setattr(store, "transact", noting_transact)


async def test_a_committed_correction_answers_from_its_own_transaction(
    any_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, PATCH committed, then read the dossier in another transaction to answer; when
    that read failed, the 503 said "nothing of this request was kept", though it was."""
    gw = any_gateway
    doc, right = await stopped_dossier(gw)
    code = doc["code"]
    with monkeypatch.context() as mp:
        failing = _ReadsFailAfterACommit(mp, gw)
        status, body = await patch(
            gw, code, {"reason": "tên", "applicant": {**doc["applicant"], "full_name": right}}
        )
        assert failing.committed
    assert (status, body.get("code"), body.get("status")) == (200, code, "needs_attention"), body
    stored = await gw.runtime.store.read(lambda tx: dossiers.document_of(tx, code))
    assert stored["applicant"]["full_name"] == right


async def test_a_committed_resume_answers_from_its_own_transaction(
    any_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for PATCH: a resume that committed is never answered "nothing was kept"."""
    gw = any_gateway
    code = await corrected_dossier(gw)
    worker = gw.runtime.worker
    assert worker is not None
    with monkeypatch.context() as mp:
        mp.setattr(worker, "wake", lambda: None)  # the worker reads too: it waits for the test
        failing = _ReadsFailAfterACommit(mp, gw)
        async with await gw.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
            body = await r.json()
        assert failing.committed
    assert (r.status, body.get("status")) == (202, "in_progress"), body
    worker.wake()
    assert (await gw.wait_status(code, {"completed"}))["status"] == "completed"


NUL_REQUESTS = [
    ("GET", "/v1/dossiers/%00", "motcua", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers/%00", "operator", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers/000.00.00.H41-261122-0001%0A", "operator", None, 404, "unknown-dossier"),
    ("PATCH", "/v1/dossiers/%00", "operator", {"reason": "x"}, 404, "unknown-dossier"),
    ("POST", "/v1/dossiers/%00/resume", "operator", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers?cursor=%00", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/dossiers?status=%00", "operator", None, 400, "invalid-query"),
    # were a 200 with an empty page, and the first status taken silently
    ("GET", "/v1/dossiers?cursor=zzzz", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/dossiers?cursor=%FF", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/dossiers?status=completed&status=bogus", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?member=a&member=b", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?member=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?dossier=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?service=a%1Fb", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?document=%7F", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?from=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?cursor=%00", "auditor", None, 400, "invalid-query"),
    ("POST", "/v1/audit/exports", "auditor", {"dossier": "\u0000"}, 422, "invalid-request"),
    ("POST", "/v1/audit/exports", "auditor", {"document": "d\n"}, 422, "invalid-request"),
    ("POST", "/v1/audit/exports", "auditor", {"from": "\u0000", "to": "x"}, 422, "invalid-request"),
]


async def test_control_characters_in_identifiers_are_refused_at_the_boundary(
    any_gateway: Gateway,
) -> None:
    """Before, on PostgreSQL, a NUL in a path or query parameter reached the database: 500
    (psycopg DataError); SQLite answered 404 or 200. Path codes that cannot be a dossier's are
    unknown dossiers; text parameters with control characters are refused, naming them."""
    gw = any_gateway
    for method, path, who, body, status, slug in NUL_REQUESTS:
        async with gw.http.request(method, gw.url + path, json=body, headers=gw.headers(who)) as r:
            problem = await r.json()
            assert (r.status, problem.get("type")) == (status, PROBLEM + slug), (path, problem)
            assert r.content_type == "application/problem+json"
        if status == 400:
            name = path.split("?", 1)[1].split("=", 1)[0]
            assert problem["parameter"] == name and name in problem["detail"], problem
        if status == 422:
            assert f"$.{next(iter(body))}" in problem["detail"], problem  # type: ignore[arg-type]
    async with gw.http.get(gw.url + "/readyz") as r:
        assert r.status == 200, await r.text()


SCOPE_AND_FLAG_REQUESTS = [
    ("POST", "/v1/audit/exports", "auditor", {"from": "", "to": ""}, 422, "invalid-export"),
    ("POST", "/v1/audit/exports", "auditor", {"dossier": ""}, 422, "invalid-export"),
    (
        "POST",
        "/v1/audit/exports",
        "auditor",
        {"from": "2027-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        422,
        "invalid-export",
    ),
    ("GET", "/v1/admin/outbox?state=dead&state=done", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/audit/checkpoints?verify=yes", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/checkpoints?verify=1&verify=0", "auditor", None, 400, "invalid-query"),
    # A misspelt filter was ignored, and the answer held everything as if filtered.
    ("GET", "/v1/audit/events?dosier=X", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/checkpoints?verfy=1", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/proofs/inclusion?index=0&size=1&x=1", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/admin/outbox?sate=dead", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/dossiers?staus=failed", "motcua", None, 400, "invalid-query"),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "body", "status", "slug"), SCOPE_AND_FLAG_REQUESTS
)
async def test_export_scopes_and_query_flags_are_checked(
    gateway: Gateway, method: str, path: str, who: str, body: Any, status: int, slug: str
) -> None:
    """Found by probing: an empty or reversed export scope was a 404 nothing-to-export, a state
    given twice took the first, ``verify=yes`` was a silent no."""
    async with gateway.http.request(
        method, gateway.url + path, json=body, headers=gateway.headers(who)
    ) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (status, PROBLEM + slug), problem


@asynccontextmanager
async def birth_stopped_by(
    make_gateway: Any, registry: str, fault: dict[str, float]
) -> AsyncIterator[tuple[Gateway, dict[str, Any], dict[str, Any]]]:
    """A gateway whose ``registry`` fails as ``fault`` says (two attempts a step), and a birth
    dossier run until its flow stopped: (gateway, dossier, its view)."""
    retry = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
    async with make_gateway(
        registries={registry: {"timeout_s": 2.0, "retry": retry}},
        sandbox={"faults": {registry: fault}},
    ) as gw:
        doc = copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=0)))
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
        yield gw, doc, view


async def test_a_correction_of_what_a_finished_step_sent_is_refused(make_gateway: Any) -> None:
    """Found by probing: with the flow stopped at the health card, the child's name was corrected
    (200) and the card issued under the new name, while the birth register kept the old one."""
    async with birth_stopped_by(make_gateway, "insurance", {"error_rate": 1.0}) as (gw, doc, view):
        assert [s["status"] for s in view["steps"]] == ["done", "done", "done", "done", "failed"], (
            view
        )
        before = await stored_body(gw, doc["code"])
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert (status, body["type"]) == (409, PROBLEM + "status-transition"), body
        assert "register_birth" in body["detail"]
        assert await stored_body(gw, doc["code"]) == before
        # What no finished step sent may still be corrected.
        phone = {**doc["applicant"], "phone": "0912345678"}
        status, body = await patch(gw, doc["code"], {"reason": "số điện thoại", "applicant": phone})
        assert status == 200, body


async def test_a_correction_of_a_write_whose_answer_was_lost_is_refused_until_resumed(
    make_gateway: Any,
) -> None:
    """Found by probing: the birth register took the birth but every reply was lost, so the flow
    stopped (failed) with the step not done. A correction of the child's name was accepted (200),
    and the resumed step, the same idempotency key for another request, was refused for ever
    ("used for a different request"): the dossier could never finish. Now the correction is 409
    until a resume has learnt the outcome."""
    lost = {"lost_reply_rate": 1.0}
    async with birth_stopped_by(make_gateway, "civil_status", lost) as (gw, doc, view):
        assert view["status"] == "failed", view
        assert [s["status"] for s in view["steps"][:3]] == ["done", "done", "failed"], view
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert (status, body["type"]) == (409, PROBLEM + "status-transition"), body
        assert "register_birth" in body["detail"] and "resume" in body["detail"], body
        # What the unanswered step did not send may still be corrected.
        phone = {**doc["applicant"], "phone": "0912345678"}
        status, body = await patch(gw, doc["code"], {"reason": "số điện thoại", "applicant": phone})
        assert status == 200, body

        root = "/".join(gw.sandbox("civil_status").split("/")[:3])
        async with gw.http.put(root + "/_sandbox/faults", json={}) as r:
            assert r.status == 200, await r.text()
        async with await gw.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
        assert view["status"] == "completed", view
        # The register answered with the birth it had taken from the first, unanswered attempt.
        born = step(view, "register_birth")
        assert born["reference"].endswith(".000001"), born


class BirthRegisterBehindAWaf:
    """The civil-status connector behind a proxy that handles its birth registrations as
    ``script`` says, one word a request, then lets them through: ``lost`` (the register takes it,
    the reply is lost), ``reset`` (dropped before the register saw it), ``refuse`` (the proxy
    answers 403 itself)."""

    def __init__(self, connector: Any, script: list[str]) -> None:
        self.connector, self.script = connector, script
        self.sent: list[dict[str, Any]] = []  # the birth registrations' parameters, in order

    async def call(self, operation: str, params: Any, **kw: Any) -> Any:
        if operation == "birth.register":
            self.sent.append(params)
        what = self.script.pop(0) if operation == "birth.register" and self.script else "pass"
        if what == "refuse":
            raise PermanentError("civil_status", "HTTP 403: Forbidden (WAF)", code="http-403")
        if what == "reset":
            raise TransientError("civil_status", "ConnectionResetError: reset by peer")
        result = await self.connector.call(operation, params, **kw)
        if what == "lost":
            raise TransientError("civil_status", "ConnectionResetError: the reply was lost")
        return result


@asynccontextmanager
async def birth_behind_a_waf(
    make_gateway: Any, script: list[str]
) -> AsyncIterator[tuple[Gateway, dict[str, Any], dict[str, Any]]]:
    """A birth dossier run until its flow stopped, its registration handled as ``script`` says
    (two attempts a run): (gateway, dossier, its view)."""
    retry = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
    async with make_gateway(registries={"civil_status": {"timeout_s": 2.0, "retry": retry}}) as gw:
        connectors = gw.runtime.connectors
        connectors["civil_status"] = BirthRegisterBehindAWaf(connectors["civil_status"], script)
        doc = copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=0)))
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
        yield gw, doc, view


async def resumed(gw: Gateway, code: str) -> dict[str, Any]:
    async with await gw.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()
    return await gw.wait_status(code, {"failed", "needs_attention", "completed"})


async def test_a_write_whose_reply_was_lost_before_a_refusal_is_not_corrected_unresumed(
    make_gateway: Any,
) -> None:
    """Found by probing: the register took the birth and its reply was lost; the retry met a
    proxy's 403, a permanent refusal, so the flow stopped needs_attention (not failed), and the
    guard, which looked at how the flow ended, let the child's name be corrected (200). The
    resumed step, another request under the same idempotency key, was refused for ever. Now the
    step's own attempts decide: the correction is 409 until a resume has heard the register."""
    async with birth_behind_a_waf(make_gateway, ["lost", "refuse"]) as (gw, doc, view):
        assert view["status"] == "needs_attention", view
        born = step(view, "register_birth")
        assert [h["outcome"] for h in born["history"]] == ["retry", "dead"], born
        before = await stored_body(gw, doc["code"])
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert (status, body["type"]) == (409, PROBLEM + "status-transition"), body
        assert "register_birth" in body["detail"] and "resume" in body["detail"], body
        assert await stored_body(gw, doc["code"]) == before
        # What the unanswered step did not send may still be corrected.
        phone = {**doc["applicant"], "phone": "0912345678"}
        status, body = await patch(gw, doc["code"], {"reason": "số điện thoại", "applicant": phone})
        assert status == 200, body

        view = await resumed(gw, doc["code"])
        assert view["status"] == "completed", view
        # The register answered with the birth it had taken from the first, unanswered attempt.
        assert step(view, "register_birth")["reference"].endswith(".000001"), view


async def test_a_refusal_heard_after_a_resume_lets_the_write_be_corrected(
    make_gateway: Any,
) -> None:
    """The guard does not hold a dossier for ever: once a resume has sent the request again and
    the answer was a refusal, with no fault since, what it refused may be corrected."""
    async with birth_behind_a_waf(make_gateway, ["reset", "refuse", "refuse"]) as (gw, doc, _):
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert (status, body["type"]) == (409, PROBLEM + "status-transition"), body

        view = await resumed(gw, doc["code"])
        assert view["status"] == "needs_attention", view
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert status == 200, body
        view = await resumed(gw, doc["code"])
        assert view["status"] == "completed", view


async def test_a_write_retried_after_an_upgrade_sends_what_it_first_sent(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Noticed in review: each attempt built its request again, so an upgrade that changed what
    a step sends (MaDVC, MaDonVi both changed so) sent another request, under the same
    idempotency key, for a write the register had taken with its reply lost: refused for ever as
    a reused key, the dossier stuck. A write now sends the request it was first built as."""
    async with birth_behind_a_waf(make_gateway, ["lost", "lost"]) as (gw, doc, view):
        assert view["status"] == "failed", view
        # The upgrade: the new version names the declarant's relation otherwise.
        birth = FLOWS["birth"]
        register = birth.step("register_birth")

        def params_now(ctx: Context) -> dict[str, Any]:
            p = register.params(ctx)
            return {**p, "declarant": {**p["declarant"], "relation": "Mẹ đẻ"}}

        upgraded = replace(register, params=params_now)
        steps = tuple(upgraded if s is register else s for s in birth.steps)
        monkeypatch.setitem(FLOWS, "birth", replace(birth, steps=steps))

        view = await resumed(gw, doc["code"])
        assert view["status"] == "completed", view
        waf = gw.runtime.connectors["civil_status"]
        assert len(waf.sent) == 3 and waf.sent[2] == waf.sent[0], waf.sent
        # The register answered with the birth it had taken from the first, unanswered attempt.
        assert step(view, "register_birth")["reference"].endswith(".000001"), view


async def test_a_corrected_write_sends_the_corrected_request(make_gateway: Any) -> None:
    """A write the register refused (the proxy's 403: the register never saw it) is corrected;
    the resumed step sends the request built from the corrected dossier, not the one kept."""
    async with birth_behind_a_waf(make_gateway, ["refuse"]) as (gw, doc, view):
        assert view["status"] == "needs_attention", view
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, doc["code"], {"reason": "tên", "data": renamed})
        assert status == 200, body
        view = await resumed(gw, doc["code"])
        assert view["status"] == "completed", view
        sent = gw.runtime.connectors["civil_status"].sent
        assert [p["child"]["full_name"] for p in sent] == [
            doc["data"]["child"]["full_name"],
            "Nguyễn Văn Đổi",
        ], sent


def step(view: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in view["steps"] if s["name"] == name)
    return found


async def test_a_steps_attempts_are_counted_across_resumes(make_gateway: Any) -> None:
    """Found by probing: after a resume the view counted from 1 again (a step tried five times
    said attempts: 1), and a step without history had no history field at all."""
    retry = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
    async with make_gateway(
        registries={"insurance": {"timeout_s": 2.0, "retry": retry}},
        sandbox={"faults": {"insurance": {"error_rate": 1.0}}},
    ) as gw:
        doc = copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=0)))
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        async with await gw.get(f"/v1/dossiers/{doc['code']}") as r:
            fresh = await r.json()
        # Every field is there, null or empty when there is nothing to say (the last step has
        # not run yet).
        assert step(fresh, "issue_health_card")["history"] == [], fresh
        assert all(set(s) >= {"result", "reference", "error", "history"} for s in fresh["steps"])
        view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
        card = step(view, "issue_health_card")
        assert (card["status"], card["attempts"]) == ("failed", 2), card
        async with await gw.post(f"/v1/dossiers/{doc['code']}/resume", None, who="operator") as r:
            assert r.status == 202, await r.text()
        for _ in range(400):  # bounded: until the resumed step has failed again
            async with await gw.get(f"/v1/dossiers/{doc['code']}") as r:
                view = await r.json()
            if view["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        card = step(view, "issue_health_card")
        assert card["attempts"] == 4, card
        assert [(h["attempt"], h["outcome"]) for h in card["history"]] == [
            (1, "retry"),
            (2, "dead"),
            (2, "resumed"),
            (3, "retry"),
            (4, "dead"),
        ], card["history"]


async def test_an_unknown_query_parameter_is_named(gateway: Gateway) -> None:
    async with await gateway.get("/v1/audit/events?dossier=X&dosier=Y", who="auditor") as r:
        problem = await r.json()
    assert (r.status, problem["parameter"]) == (400, "dosier"), problem
    assert "dossier" in problem["detail"]  # what the route reads
    async with await gateway.get("/v1/audit/events?dossier=X&limit=5", who="auditor") as r:
        assert r.status == 200, await r.text()


async def test_a_birth_registered_before_its_certificate_was_refused_is_not_corrected(
    make_gateway: Any, store_section: dict[str, str], tmp_path: Any
) -> None:
    """Found by probing: the register registered the birth, then the gateway refused the
    certificate's signature (its trust anchors missed the register's CA). The step stopped
    needs_attention with only the refusal shown; a correction of the child's name was accepted
    (200) and the kept request dropped, so the resumed step sent another request under the same
    idempotency key, refused for ever while the register held the birth under the old name. Now
    the step shows the registration, and what it sent is not corrected."""
    retry = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
    registries = {"civil_status": {"timeout_s": 5.0, "retry": retry}}
    async with make_gateway(store=store_section, registries=registries) as gw:
        register = gw.runtime.connectors["civil_status"]
        trusted = register.trust
        stranger = TestPKI.create(tmp_path / "other", base_url="http://127.0.0.1:9")
        register.trust = stranger.trust()  # the register's CA is missing from the anchors
        doc = copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=0)))
        code = doc["code"]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        view = await gw.wait_status(code, {"failed", "needs_attention", "completed"})
        assert view["status"] == "needs_attention", view
        born = step(view, "register_birth")
        assert "signature refused" in born["error"], born
        # What the register answered is shown: the birth is registered, under this number.
        number = born["reference"]
        assert number and number.startswith("KS."), born
        assert born["history"][-1]["reference"] == number, born
        assert (await sandbox_stats(gw, "civil_status"))["writes"] == {"birth.register": 1}

        before = await stored_body(gw, code)
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, code, {"reason": "tên", "data": renamed})
        assert (status, body["type"]) == (409, PROBLEM + "status-transition"), body
        assert "register_birth" in body["detail"] and number in body["detail"], body
        assert await stored_body(gw, code) == before
        # What the registered step did not send may still be corrected; its request stays kept.
        phone = {**doc["applicant"], "phone": "0912345678"}
        status, body = await patch(gw, code, {"reason": "số điện thoại", "applicant": phone})
        assert status == 200, body
        assert await kept_request(gw, code, 2) is not None

        register.trust = trusted  # the operator adds the register's CA
        view = await resumed(gw, code)
        assert view["status"] == "completed", view
        assert step(view, "register_birth")["reference"] == number, view
        assert (await sandbox_stats(gw, "civil_status"))["writes"] == {"birth.register": 1}


async def kept_request(gw: Gateway, code: str, idx: int) -> Any:
    return await gw.runtime.store.read(lambda tx: tx.one("dossiers.request", dossier=code, idx=idx))


async def sandbox_stats(gw: Gateway, name: str) -> dict[str, Any]:
    root = "/".join(gw.sandbox(name).split("/")[:3])
    async with gw.http.get(root + "/_sandbox/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def test_a_corrected_write_keeps_its_rebuilt_request_through_an_upgrade(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: a correction forgets the kept request of a refused write so that it is
    built again; the resume replayed the step's dead job without keeping the new one, so every
    later attempt built it anew: after an upgrade, another request under the key the register
    may hold. Now the resume keeps it, and the attempts after it send it."""
    async with birth_behind_a_waf(make_gateway, ["refuse", "refuse"]) as (gw, doc, view):
        assert view["status"] == "needs_attention", view
        code = doc["code"]
        renamed = {"child": {**doc["data"]["child"], "full_name": "Nguyễn Văn Đổi"}}
        status, body = await patch(gw, code, {"reason": "tên", "data": renamed})
        assert status == 200, body
        view = await resumed(gw, code)  # the proxy refuses the corrected request too
        assert view["status"] == "needs_attention", view
        assert await kept_request(gw, code, 2) is not None

        birth = FLOWS["birth"]
        register = birth.step("register_birth")

        def params_now(ctx: Context) -> dict[str, Any]:  # the upgrade builds it otherwise
            p = register.params(ctx)
            return {**p, "declarant": {**p["declarant"], "relation": "Mẹ đẻ"}}

        upgraded = replace(register, params=params_now)
        steps = tuple(upgraded if s is register else s for s in birth.steps)
        monkeypatch.setitem(FLOWS, "birth", replace(birth, steps=steps))

        view = await resumed(gw, code)
        assert view["status"] == "completed", view
        sent = gw.runtime.connectors["civil_status"].sent
        assert len(sent) == 3 and sent[2] == sent[1], sent
        assert sent[1]["child"]["full_name"] == "Nguyễn Văn Đổi", sent
