"""Push delivery: what the hub sends an agency's endpoint for each kind of message."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.api import PermanentError
from gateway.exchange.delivery import PushHandler
from gateway.exchange.hub import PUSH_KIND, STATUS_PUSH_KIND, AgencyRoute, DocumentHub
from gateway.outbox import Job

from .factories import NGHE_AN, TAY_NINH_STC, chunks, signed_status


class _Answer:
    status = 200

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class _Session:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def post(self, url: str, *, data: Any, headers: dict[str, str], **_: Any) -> _Answer:
        if hasattr(data, "close"):
            data.close()
        self.headers.append(headers)
        return _Answer()


def _job(kind: str, payload: dict[str, Any]) -> Job:
    return Job(
        id=1,
        kind=kind,
        key="k",
        payload=payload,
        dossier=None,
        document=payload["document"],
        state="running",
        attempts=1,
        run_after=0,
        last_error=None,
        created_at=0,
        updated_at=0,
    )


async def test_the_pushed_kind_follows_bussiness_doc_type(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    session = _Session()
    routes = {
        **hub.agencies,
        NGHE_AN: AgencyRoute(NGHE_AN, "http://nghe-an.invalid/edoc"),
        TAY_NINH_STC: AgencyRoute(TAY_NINH_STC, "http://stc.invalid/edoc"),
    }
    push = PushHandler(hub.store, hub.blobs, routes, lambda: session)  # type: ignore[arg-type,return-value]
    status_push = PushHandler(
        hub.store,
        hub.blobs,
        routes,
        lambda: session,  # type: ignore[arg-type,return-value]
        kind=STATUS_PUSH_KIND,
    )
    kinds = {}
    first = ""
    for doc_type in (0, 1, 2, 3):  # new, revoke, update (of the first), replace
        # A replacement takes a DocumentId of its own; a revoke or update names the original's.
        number = "2492" if doc_type == 3 else "2491"
        accepted = await hub.receive(
            chunks(make_package(doc_type=doc_type, number=number)),
            sender=TAY_NINH_STC,
            subsystem="s",
        )
        await push.run(_job(PUSH_KIND, {"document": accepted.id, "recipient": NGHE_AN}))
        kinds[doc_type] = session.headers[-1]["X-Lienthong-Kind"]
        if not first:  # the recipient answers the new document: its status goes back
            first = accepted.id
            await hub.fetch(first, NGHE_AN, subsystem="s")
            status = signed_status(key, NGHE_AN)
            await hub.record_status(first, chunks(status), sender=NGHE_AN, subsystem="s")
            message = hashlib.sha256(status).hexdigest()
            job = {"document": first, "recipient": TAY_NINH_STC, "message": message}
            await status_push.run(_job(STATUS_PUSH_KIND, job))
            assert session.headers[-1]["X-Lienthong-Kind"] == "status"
    assert kinds == {0: "edoc", 1: "revocation", 2: "update", 3: "replacement"}


async def test_a_redirecting_endpoint_gets_no_package_sent_on(
    hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    # Over real sockets: an agency endpoint answering 307 elsewhere. aiohttp would follow it and
    # post the package (with the bearer token, within the origin) where nobody configured.
    hits: dict[str, int] = {"edoc": 0, "elsewhere": 0}

    async def edoc(request: web.Request) -> web.Response:
        hits["edoc"] += 1
        await request.read()
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        hits["elsewhere"] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/edoc", edoc)
    app.router.add_post("/elsewhere", elsewhere)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            routes = {**hub.agencies, NGHE_AN: AgencyRoute(NGHE_AN, str(server.make_url("/edoc")))}
            push = PushHandler(hub.store, hub.blobs, routes, lambda: session)
            accepted = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
            with pytest.raises(PermanentError, match=r"redirected the package \(307\)"):
                await push.run(_job(PUSH_KIND, {"document": accepted.id, "recipient": NGHE_AN}))
    finally:
        await server.close()
    assert hits == {"edoc": 1, "elsewhere": 0}
