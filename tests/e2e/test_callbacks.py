"""Callbacks go only where the operator let a subsystem's callbacks go, over real sockets.

The gateway POSTs from inside the province's network: a ``callback_url`` a client could choose
freely would let it reach whatever the gateway can reach (databases, admin ports, the registries).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.outbox import list_jobs
from gateway.samples import sample_dossiers
from tests.e2e.conftest import Gateway

PROBLEM = "urn:lienthong:problem:"


@dataclass
class Receiver:
    base: str  # http://127.0.0.1:<port>
    status: int = 204  # what /hook answers
    hits: dict[str, int] = field(default_factory=dict)  # path → requests received


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """``/hook`` answers ``status``; ``/redirect`` sends the caller on to ``/elsewhere``."""
    app = web.Application()
    got = Receiver(base="")

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        got.hits[request.path] = got.hits.get(request.path, 0) + 1
        if request.path.startswith("/redirect"):
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.Response(status=got.status if request.path.startswith("/hook") else 204)

    app.router.add_post("/{tail:.*}", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    got.base = str(server.make_url("")).rstrip("/")
    try:
        yield got
    finally:
        await server.close()


@asynccontextmanager
async def hook_at(hook: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A callback receiver answering POST /hook with ``hook``; yields its URL."""
    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        await server.close()


def birth(n: int, callback_url: str | None) -> dict[str, Any]:
    doc = next(iter(sample_dossiers(1, seed=0, start=n, death_share=0, callback_url=callback_url)))
    return doc


async def jobs(gw: Gateway, state: str) -> list[dict[str, Any]]:
    async with await gw.get(f"/v1/admin/outbox?state={state}", who="operator") as r:
        assert r.status == 200, await r.text()
        return [j for j in (await r.json())["items"] if j["kind"] == "callback"]


async def dead_callbacks(gw: Gateway, code: str, *, within: float = 30.0) -> list[dict[str, Any]]:
    """The dossier's callback jobs once it has completed and one of them is dead."""
    await gw.wait_status(code, {"completed"})
    deadline = asyncio.get_running_loop().time() + within
    while True:
        dead = [j for j in await jobs(gw, "dead") if j["dossier"] == code]
        if dead or asyncio.get_running_loop().time() > deadline:
            return dead
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "path",
    [
        ":1/hook",  # another port: the receiver's port is replaced below
        "/hookx",  # a sibling of the allowed folder
        "/hook/../admin",  # sent as /admin
        "/hook/%2e%2e/admin",
        "/hook/%2E%2E%2fadmin",  # sent as /hook/..%2Fadmin: /admin once %2F is decoded (nginx)
        "/hook/..%2f..%2fadmin",
        "/hook/x%5C..%5C..%5Cadmin",
        "/hook/x/%2E%2E/y",  # a dot segment spelled encoded
        # Sent as written: Tomcat, Jetty and Spring drop each segment's ";…" before they
        # resolve dot segments, and serve /admin.
        "/hook/..;/admin",
        "/hook/%2e%2e;/admin",
        "/hook/..%3B/admin",
        "/",
    ],
)
async def test_a_callback_url_outside_the_subsystems_callback_urls_is_refused_and_nothing_stored(
    make_gateway: Any, path: str
) -> None:
    async with receiver() as rx, make_gateway(callback_urls=[rx.base + "/hook"]) as gw:
        url = rx.base.rsplit(":", 1)[0] + path if path.startswith(":") else rx.base + path
        doc = birth(1, url)
        async with await gw.post("/v1/dossiers", doc) as r:
            problem = await r.json()
            assert r.status == 422, problem
        assert problem["type"] == PROBLEM + "callback-not-allowed"
        assert problem["field"] == "callback_url" and rx.base + "/hook" in problem["detail"]
        async with await gw.get(f"/v1/dossiers/{doc['code']}") as r:
            assert r.status == 404  # nothing was stored
    assert rx.hits == {}


async def test_a_subsystem_without_callback_urls_gets_no_callbacks(gateway: Gateway) -> None:
    doc = birth(1, "https://motcua.hanoi.gov.vn/hook")
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
        assert r.status == 422, problem
    assert problem["type"] == PROBLEM + "callback-not-allowed"
    assert "none: ask the operator" in problem["detail"]
    async with await gateway.post("/v1/dossiers", birth(1, None)) as r:
        assert r.status == 202, await r.text()  # without a callback_url, as before


async def test_a_host_that_is_not_valid_idna_is_refused_not_a_500(make_gateway: Any) -> None:
    async with make_gateway(callback_urls=["https://motcua.hanoi.gov.vn/hook"]) as gw:
        async with await gw.post("/v1/dossiers", birth(1, "http://XN--/hook")) as r:
            problem = await r.json()
            assert (r.status, problem["type"]) == (422, PROBLEM + "callback-not-allowed"), problem


async def test_callbacks_under_the_callback_urls_are_delivered(make_gateway: Any) -> None:
    async with receiver() as rx, make_gateway(callback_urls=[rx.base + "/hook"]) as gw:
        doc = birth(1, rx.base + "/hook/dossiers?from=motcua")
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        await gw.wait_status(doc["code"], {"completed"})
        for _ in range(200):  # the last callback is queued with the change to completed
            if not await jobs(gw, "pending") and not await jobs(gw, "running"):
                break
            await asyncio.sleep(0.05)
        assert rx.hits["/hook/dossiers"] >= 2
        assert await jobs(gw, "dead") == []


async def test_redirects_are_not_followed(make_gateway: Any) -> None:
    async with receiver() as rx, make_gateway(callback_urls=[rx.base + "/redirect"]) as gw:
        doc = birth(1, rx.base + "/redirect")
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        dead = await dead_callbacks(gw, doc["code"])
        assert dead and "307: redirects are not followed" in dead[0]["last_error"]
        assert rx.hits.get("/redirect", 0) >= 1
        assert "/elsewhere" not in rx.hits


@pytest.mark.parametrize(("status", "said"), [(503, "answered 503"), (403, "refused the callback")])
async def test_a_callback_urls_query_values_are_never_shown_when_a_callback_fails(
    make_gateway: Any, caplog: pytest.LogCaptureFixture, status: int, said: str
) -> None:
    """Found by probing: a receiver taking its token in the query (``?access_token=…``, allowed:
    the query is the client's) had it quoted whole in each failed callback's error: the log, the
    outbox job's last_error (``outbox list``, the admin API) and the audit events the auditors'
    API and the evidence bundles return, from an append-only log."""
    token = "CbAccessTokenAbCdEfGhIj"
    async with receiver() as rx, make_gateway(callback_urls=[rx.base + "/hook"]) as gw:
        rx.status = status
        doc = birth(1, f"{rx.base}/hook/q?access_token={token}&v=2")
        with caplog.at_level(logging.INFO):
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            dead = await dead_callbacks(gw, doc["code"])
        async with await gw.get(f"/v1/audit/events?dossier={doc['code']}", who="auditor") as r:
            events = await r.text()
            assert r.status == 200, events
    assert dead and said in dead[0]["last_error"], dead
    assert "/hook/q?access_token=***&v=***" in dead[0]["last_error"], dead
    assert [j["last_error"] for j in dead if token in j["last_error"]] == []
    assert '"job.dead"' in events and token not in events
    # The receiver (this test's server) logs its requests; the gateway's lines must not.
    logged = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert [line for line in logged if token in line] == []


async def test_callback_urls_are_checked_again_when_the_callback_is_sent(
    make_gateway: Any,
) -> None:
    """A dossier accepted while its URL was allowed; the operator then narrows callback_urls and
    replays the failed callback: it is not sent, and says why."""
    async with receiver() as rx:
        rx.status = 503  # each callback fails until its attempts run out
        async with make_gateway(callback_urls=[rx.base + "/hook"]) as gw:
            doc = birth(1, rx.base + "/hook")
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            dead = await dead_callbacks(gw, doc["code"])
            assert dead and "answered 503" in dead[0]["last_error"]
        sent = rx.hits["/hook"]
        async with make_gateway(callback_urls=[rx.base + "/other"]) as gw:
            job = dead[0]["id"]
            async with await gw.post(f"/v1/admin/outbox/{job}/replay", None, who="operator") as r:
                assert r.status == 200, await r.text()
            for _ in range(400):
                again = [j for j in await jobs(gw, "dead") if j["id"] == job]
                if again and "callback_urls" in (again[0]["last_error"] or ""):
                    break
                await asyncio.sleep(0.05)
            assert again and again[0]["last_error"].endswith(
                "is not under the callback_urls of subsystem VN:GOV:000.00.00.H41:motcua"
            ), again
        assert rx.hits["/hook"] == sent


async def test_a_retried_callback_tells_the_state_it_was_queued_for(make_gateway: Any) -> None:
    """The receiver refuses the needs_attention callback until the dossier has been corrected,
    resumed and completed; the callback retried then must still say needs_attention under its
    version (it said the dossier's current status: the client never heard it needed attention)."""
    from tests.e2e.test_dossier_operators import WRONG_NAME

    held = asyncio.Event()
    received: list[tuple[int, str]] = []
    refused: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if body["status"] == "needs_attention" and not refused:
            refused.append(body["version"])
            await held.wait()
            return web.Response(status=503)
        received.append((body["version"], body["status"]))
        return web.Response(status=204)

    async with hook_at(hook) as url:
        async with make_gateway(callback_urls=[url.rsplit("/", 1)[0] + "/"]) as gw:
            doc = birth(1, url)
            right = doc["applicant"]["full_name"]
            doc["applicant"]["full_name"] = WRONG_NAME
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"needs_attention"})
            for _ in range(400):  # bounded: until the receiver holds that callback
                if refused:
                    break
                await asyncio.sleep(0.05)
            assert refused, received
            fix = {"reason": "tên", "applicant": {**doc["applicant"], "full_name": right}}
            async with gw.http.patch(
                f"{gw.url}/v1/dossiers/{doc['code']}", json=fix, headers=gw.headers("operator")
            ) as r:
                assert r.status == 200, await r.text()
            async with await gw.post(
                f"/v1/dossiers/{doc['code']}/resume", None, who="operator"
            ) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"completed"})
            held.set()
            for _ in range(400):
                if any(v == refused[0] for v, _ in received):
                    break
                await asyncio.sleep(0.05)
    assert (refused[0], "needs_attention") in received, received


async def test_acceptance_is_announced_to_the_client_and_the_portal(make_gateway: Any) -> None:
    """The dossier's first state, accepted, is told like every later one: a callback with its
    version, and a portal sync (the portal heard of a dossier only once its first step was done,
    or when it stopped)."""
    received: list[tuple[int, str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.append((body["version"], body["status"]))
        return web.Response(status=204)

    async with hook_at(hook) as url:
        async with make_gateway(callback_urls=[url.rsplit("/", 1)[0] + "/"]) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"completed"})
            synced: list[Any] = []
            for _ in range(200):
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                synced = [j for j in listed if j.key == f"{doc['code']}/portal/1"]
                if (1, "accepted") in received and synced and synced[0].state == "done":
                    break
                await asyncio.sleep(0.05)
    assert (1, "accepted") in received, received
    assert synced and synced[0].state == "done", synced
    # What it carried (status accepted, the applicant) is not kept once it is done (see
    # test_done_notifications).
    assert synced[0].payload == {}


async def test_a_dossiers_callbacks_arrive_in_order_though_one_is_retried(
    make_gateway: Any,
) -> None:
    """The receiver refuses version 2 (503) until the dossier has completed. Every later version
    was sent meanwhile, and version 2 arrived last: the client's final word was "accepted" or
    "in progress" of a completed dossier. Now each waits for the earlier ones."""
    done = asyncio.Event()
    answered: list[int] = []  # versions the receiver took, in order

    async def hook(request: web.Request) -> web.Response:
        version = (await request.json())["version"]
        if version == 2 and not done.is_set():
            return web.Response(status=503)
        answered.append(version)
        return web.Response(status=204)

    patient = {"max_attempts": 1000, "base_delay_s": 0.05, "max_delay_s": 0.2, "jitter": 0.1}
    async with hook_at(hook) as url:
        async with make_gateway(
            callback_urls=[url.rsplit("/", 1)[0] + "/"], registries={"portal": {"retry": patient}}
        ) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"completed"})
            done.set()
            queued: list[Any] = []
            for _ in range(400):
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                queued = [j for j in listed if j.kind == "callback"]
                if queued and all(j.state == "done" for j in queued):
                    break
                await asyncio.sleep(0.05)
    assert len(queued) >= 4 and all(j.state == "done" for j in queued), queued
    assert answered == list(range(1, len(queued) + 1)), answered


async def test_a_receiver_that_hangs_holds_a_quarter_of_the_workers(make_gateway: Any) -> None:
    """Callbacks share the outbox's workers with every registry call. A receiver that never
    answered held every worker until its timeout, and no dossier of any province moved; now at
    most a quarter of them (here one of four) wait on one receiver."""
    release = asyncio.Event()
    calls = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        return web.Response(status=204)

    async with hook_at(hang) as url:
        try:
            async with make_gateway(
                callback_urls=[url.rsplit("/", 1)[0] + "/"],
                gateway={"callback_timeout_s": 600},
                outbox={"workers": 4},
            ) as gw:
                docs = list(sample_dossiers(6, seed=0, death_share=0, callback_url=url))
                for doc in docs:
                    async with await gw.post("/v1/dossiers", doc) as r:
                        assert r.status == 202, await r.text()
                for doc in docs:  # bounded polls: the flows run while the receiver hangs
                    await gw.wait_status(doc["code"], {"completed"}, within=45)
                assert calls == 1  # one callback in flight; the others wait their turn
                release.set()  # before the gateway stops: it would wait for the one in flight
        finally:
            release.set()


async def test_a_receiver_down_for_a_while_gets_every_callback_when_it_is_back(
    make_gateway: Any,
) -> None:
    """Callbacks spent their attempts against a receiver that was down (a redeploy), each within
    a second, and went dead: the client never heard of its dossier again. Now the receiver's
    circuit opens after two failures and the callbacks wait, without using attempts, until a
    trial call finds it back."""
    with socket.socket() as parked:  # the receiver's port, refusing connections while it is down
        parked.bind(("127.0.0.1", 0))
        port = parked.getsockname()[1]
        url = f"http://127.0.0.1:{port}/hook"
        answered: list[int] = []
        few = {"max_attempts": 4, "base_delay_s": 0.02, "max_delay_s": 0.1, "jitter": 0.1}
        async with make_gateway(
            callback_urls=[f"http://127.0.0.1:{port}/"],
            registries={"portal": {"retry": few}},
            outbox={"breaker_failures": 2, "breaker_reset_s": 2},
        ) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            receiver = f"callback http://127.0.0.1:{port}"
            for _ in range(400):
                if gw.runtime.breakers.states().get(receiver) == "open":
                    break
                await asyncio.sleep(0.05)
            assert gw.runtime.breakers.states().get(receiver) == "open", (
                gw.runtime.breakers.states()
            )

            async def hook(request: web.Request) -> web.Response:
                answered.append((await request.json())["version"])
                return web.Response(status=204)

            app = web.Application()
            app.router.add_post("/hook", hook)
            parked.close()
            server = TestServer(app, host="127.0.0.1", port=port)
            await server.start_server()
            try:
                await gw.wait_status(doc["code"], {"completed"})
                queued: list[Any] = []
                for _ in range(400):
                    listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                    queued = [j for j in listed if j.kind == "callback"]
                    if queued and all(j.state in ("done", "dead") for j in queued):
                        break
                    await asyncio.sleep(0.05)
            finally:
                await server.close()
    assert [j.state for j in queued] == ["done"] * len(queued), queued
    assert answered == list(range(1, len(queued) + 1)), answered


async def test_a_receiver_failing_through_many_trials_still_gets_every_callback(
    make_gateway: Any,
) -> None:
    """Found by probing: each time the receiver's circuit let a trial through, that callback
    used one of its attempts, and a receiver answering 500 for about a minute ran the dossier's
    first callbacks dead one after another. A failed trial uses no attempt now: here each
    callback may be tried 4 times and the receiver fails 12 calls in a row."""
    answered: list[int] = []
    failed = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal failed
        version = (await request.json())["version"]
        if failed < 12:
            failed += 1
            return web.Response(status=503)
        answered.append(version)
        return web.Response(status=204)

    few = {"max_attempts": 4, "base_delay_s": 0.02, "max_delay_s": 0.1, "jitter": 0.1}
    async with hook_at(hook) as url:
        async with make_gateway(
            callback_urls=[url.rsplit("/", 1)[0] + "/"],
            registries={"portal": {"retry": few}},
            outbox={"breaker_failures": 2, "breaker_reset_s": 0.1},
        ) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"completed"})
            queued: list[Any] = []
            for _ in range(600):  # bounded: until every callback is done or dead
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                queued = [j for j in listed if j.kind == "callback"]
                if queued and all(j.state in ("done", "dead") for j in queued):
                    break
                await asyncio.sleep(0.05)
    assert failed == 12
    assert [j.state for j in queued] == ["done"] * len(queued), queued
    assert answered == list(range(1, len(queued) + 1)), answered


async def test_a_replayed_dead_callback_is_not_sent_after_a_later_one(make_gateway: Any) -> None:
    """Found by probing: version 1 died (the receiver answered 503 to it), the later versions
    were sent, and an operator's replay of version 1 sent it last: the receiver's final word was
    "accepted" of a completed dossier. Now it is done unsent, "superseded by version N", as a
    portal sync is."""
    healed = asyncio.Event()
    answered: list[int] = []  # versions the receiver took, in order

    async def hook(request: web.Request) -> web.Response:
        version = (await request.json())["version"]
        if version == 1 and not healed.is_set():
            return web.Response(status=503)
        answered.append(version)
        return web.Response(status=204)

    async with hook_at(hook) as url:
        async with make_gateway(callback_urls=[url.rsplit("/", 1)[0] + "/"]) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            [dead] = await dead_callbacks(gw, doc["code"])
            versions: list[int] = []
            for _ in range(400):  # bounded: until every later version has been taken
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                versions = [int(j.key.rsplit("/", 1)[1]) for j in listed if j.kind == "callback"]
                if sorted(answered) == sorted(versions)[1:]:
                    break
                await asyncio.sleep(0.05)
            assert answered == sorted(versions)[1:], (answered, versions)

            healed.set()
            async with await gw.post(
                f"/v1/admin/outbox/{dead['id']}/replay", None, who="operator"
            ) as r:
                assert r.status == 200, await r.text()
            for _ in range(400):
                job = await gw.runtime.store.read(lambda tx: tx.one("outbox.get", id=dead["id"]))
                if job["state"] == "done":
                    break
                await asyncio.sleep(0.05)
            assert job["state"] == "done", job
            async with await gw.get(f"/v1/audit/events?dossier={doc['code']}", who="auditor") as r:
                events = (await r.json())["items"]
    assert 1 not in answered, answered
    [delivered] = [e for e in events if e["action"] == "step.delivered" and e["job"] == dead["id"]]
    assert f"not sent, superseded by version {max(versions)}" in delivered["detail"], delivered


async def test_a_receivers_cookies_are_never_sent_back(make_gateway: Any) -> None:
    """Callbacks and agency pushes share one HTTP session. It kept a cookie jar: a cookie one
    receiver set went back with every later callback to that host (another subsystem's too, on
    a host serving several), and a receiver could grow it, and every request's Cookie header,
    without bound. A push has no use for cookies: none is kept. (On ``localhost``: aiohttp's jar
    keeps no cookie of an IP address.)"""
    cookies: list[tuple[int, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        version = (await request.json())["version"]
        cookies.append((version, request.headers.get("Cookie")))
        response = web.Response(status=204)
        response.set_cookie(f"session{version}", "x" * 100, path="/")
        return response

    async with hook_at(hook) as url:
        url = url.replace("127.0.0.1", "localhost")
        async with make_gateway(callback_urls=[url]) as gw:
            doc = birth(1, url)
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            await gw.wait_status(doc["code"], {"completed"})
            queued: list[Any] = []
            for _ in range(400):
                listed = await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                queued = [j for j in listed if j.kind == "callback"]
                if queued and all(j.state == "done" for j in queued):
                    break
                await asyncio.sleep(0.05)
    assert len(queued) >= 4 and all(j.state == "done" for j in queued), queued
    assert len(cookies) >= 4, cookies
    assert [cookie for _, cookie in cookies] == [None] * len(cookies), cookies
