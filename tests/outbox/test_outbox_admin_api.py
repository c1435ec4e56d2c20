from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.api import PermanentError
from gateway.api import admin
from gateway.app import RUNTIME, Runtime, identify_middleware
from gateway.auth import Authenticator
from gateway.metrics import Metrics
from gateway.outbox import Breakers, Job, Worker, enqueue, get_job
from gateway.outbox.testing import ScriptedHandler, audit_entries
from gateway.problems import problem_middleware
from gateway.requestid import request_id_middleware
from gateway.settings import Settings, Subsystem
from gateway.store import SQLiteStore, Tx

OPS = {"Authorization": "Bearer ops-token"}
CLERK = {"Authorization": "Bearer clerk-token"}


@pytest.fixture
async def runtime(store: SQLiteStore) -> Runtime:
    subsystems = (
        Subsystem(id="VN:GOV:000.00.00.H41:ops", rights=("admin",), token="ops-token"),
        Subsystem(
            id="VN:GOV:000.00.00.H41:motcua", rights=("dossiers.submit",), token="clerk-token"
        ),
    )
    return Runtime(
        settings=Settings(subsystems=subsystems),
        store=store,
        metrics=Metrics(),
        auth=Authenticator(subsystems),
        breakers=Breakers(),
    )


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # The lead's middlewares and state, without the registries and sandboxes of create_app.
    app = web.Application(
        middlewares=[request_id_middleware, problem_middleware, identify_middleware]
    )
    app[RUNTIME] = runtime
    app.router.add_routes(admin.routes)
    async with TestClient(TestServer(app)) as c:
        yield c


async def dead_job(store: SQLiteStore, key: str = "k1") -> int:
    def unit(tx: Tx) -> int:
        job_id = enqueue(tx, kind="callback", key=key, payload={"url": "x"}, dossier="D-1")
        assert job_id is not None
        tx.all("outbox.claim", owner="w/1", now=10**10, lease=1, limit=1)
        tx.execute("outbox.bury", id=job_id, owner="w/1", error="PermanentError: 410", now=1.0)
        return job_id

    return await store.transact(unit)


async def test_lists_dead_jobs_with_a_cursor(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    ids = [await dead_job(store, f"k{i}") for i in range(3)]
    await store.transact(lambda tx: enqueue(tx, kind="callback", key="live", payload={}))
    resp = await client.get("/v1/admin/outbox?state=dead&limit=2", headers=OPS)
    assert resp.status == 200
    body = await resp.json()
    assert [j["id"] for j in body["items"]] == ids[:2]
    assert body["next"] == ids[1]
    assert body["items"][0]["last_error"] == "PermanentError: 410"
    assert "payload" not in body["items"][0]
    resp = await client.get(f"/v1/admin/outbox?state=dead&after={body['next']}", headers=OPS)
    body = await resp.json()
    assert [j["id"] for j in body["items"]] == ids[2:]
    assert body["next"] is None
    everything = await (await client.get("/v1/admin/outbox", headers=OPS)).json()
    assert len(everything["items"]) == 4


async def test_a_full_last_page_has_no_next(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    """``next`` was set whenever a page came back full, though no job followed it: a client
    paging on ``next`` asked once more for an empty page."""
    ids = [await dead_job(store, f"k{i}") for i in range(2)]
    resp = await client.get("/v1/admin/outbox?state=dead&limit=2", headers=OPS)
    body = await resp.json()
    assert ([j["id"] for j in body["items"]], body["next"]) == (ids, None)


@pytest.mark.parametrize("query", ["state=stuck", "limit=0", "limit=x", "after=-1"])
async def test_bad_queries_are_problems(client: TestClient[Any, Any], query: str) -> None:
    resp = await client.get(f"/v1/admin/outbox?{query}", headers=OPS)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["type"] == "urn:lienthong:problem:invalid-query"
    assert body["request_id"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/admin/outbox"), ("POST", "/v1/admin/outbox/1/replay")]
)
async def test_operators_only(client: TestClient[Any, Any], method: str, path: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 401
    resp = await client.request(method, path, headers=CLERK)
    assert resp.status == 403
    assert (await resp.json())["type"] == "urn:lienthong:problem:forbidden-service"


async def test_replay_answers_the_job_and_audits_the_operator(
    client: TestClient[Any, Any], store: SQLiteStore
) -> None:
    job_id = await dead_job(store)
    resp = await client.post(
        f"/v1/admin/outbox/{job_id}/replay", headers={**OPS, "X-Request-Id": "replay-1"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["id"], body["state"], body["attempts"]) == (job_id, "pending", 0)
    [event] = await audit_entries(store)
    # The member is the agency, as in every other event (it was the subsystem's id, so a search
    # by member missed operators' actions); the request id and service were missing.
    assert (event["action"], event["member"], event["subsystem"]) == (
        "job.replayed",
        "VN:GOV:000.00.00.H41",
        "VN:GOV:000.00.00.H41:ops",
    )
    assert (event["service"], event["request_id"]) == ("admin", "replay-1")


async def test_replay_refusals(client: TestClient[Any, Any], store: SQLiteStore) -> None:
    live = await store.transact(lambda tx: enqueue(tx, kind="callback", key="live", payload={}))
    resp = await client.post(f"/v1/admin/outbox/{live}/replay", headers=OPS)
    assert resp.status == 409
    body = await resp.json()
    assert (body["type"], body["state"]) == ("urn:lienthong:problem:job-not-dead", "pending")
    for missing in ("999", "abc", str(2**64), "-1", "%2B5", "%D9%A1"):  # %D9%A1: an Arabic 1
        resp = await client.post(f"/v1/admin/outbox/{missing}/replay", headers=OPS)
        assert resp.status == 404
        assert (await resp.json())["type"] == "urn:lienthong:problem:unknown-job"
    assert await audit_entries(store) == []


async def test_replay_wakes_the_worker(
    client: TestClient[Any, Any], runtime: Runtime, store: SQLiteStore
) -> None:
    delivered = asyncio.Event()

    async def call(job: Job) -> None:
        delivered.set()

    handler = ScriptedHandler(PermanentError("portal", "410 gone"))
    job_id = await store.transact(
        lambda tx: enqueue(tx, kind="callback", key="cb", payload={"step": "callback"})
    )
    async with Worker(store, {"callback": handler}, poll_interval=0.01) as worker:
        for _ in range(200):
            job = await store.read(lambda tx: get_job(tx, job_id))
            if job is not None and job.state == "dead":
                break
            await asyncio.sleep(0.01)
        handler.call = call  # the portal is back
        worker.poll_interval = 30.0  # from now on only a wake can start the job soon
        await asyncio.sleep(0.05)
        runtime.worker = worker
        resp = await client.post(f"/v1/admin/outbox/{job_id}/replay", headers=OPS)
        assert resp.status == 200
        await asyncio.wait_for(delivered.wait(), 5)
