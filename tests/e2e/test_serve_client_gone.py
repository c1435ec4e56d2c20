"""A client that goes away mid-request: what its cancelled handler leaves must be whole. A
lookup's audit event is written once the registry was asked, whenever its client leaves."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

from aiohttp import web

from connectors.sandboxes import serve_app
from gateway.audit import decode_entry
from tests.e2e.conftest import TOKENS
from tests.e2e.test_lookups import _pointed_at, _registry, citizen_query

CLIENT = "t-client"


async def _send_and_leave(
    base: str,
    path: str,
    body: dict[str, Any],
    request_id: str,
    until: asyncio.Event | None,
    token: str = CLIENT,
) -> None:
    """Send a whole request on a connection of its own, then close it without reading the
    answer: once ``until`` is set, else at once."""
    port = int(base.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    if until is not None:
        await asyncio.wait_for(until.wait(), 30)
    writer.close()
    await writer.wait_closed()


async def test_a_lookup_whose_client_leaves_while_it_is_audited_is_audited_all_the_same(
    make_gateway: Any, store_section: dict[str, str]
) -> None:
    """The lookup's event is written once the registry answered; on PostgreSQL a unit waiting
    for a free connection is dropped when its caller is cancelled, so a client that left then
    took the event with it: a registry asked, and no trace of who asked. Here the store's one
    connection is busy with another unit when the client leaves."""
    asked = asyncio.Event()

    async def busy(request: web.Request) -> web.Response:
        asked.set()
        return web.Response(status=503, text="busy")

    started, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:
        started.set()
        release.wait(30)

    async with (
        serve_app(_registry(busy)) as url,
        make_gateway(
            store={**store_section, "pool_size": 1},
            registries={"population": _pointed_at(url, "population")},
            gateway={"lookup_attempts": 1},
        ) as gw,
    ):
        token = TOKENS["motcua"]
        holding = asyncio.create_task(gw.runtime.store.transact(hold))
        try:
            await asyncio.to_thread(started.wait, 30)
            request_id = uuid.uuid4().hex
            leaving = asyncio.create_task(
                _send_and_leave(
                    gw.url, "/v1/lookups/citizen", citizen_query(), request_id, asked, token
                )
            )
            await asyncio.wait_for(asked.wait(), 30)
            await asyncio.sleep(0.3)  # a pace: the registry answered; its event waits its turn
            await leaving
        finally:
            release.set()
            await holding
        await gw.runtime.store.transact(lambda tx: None)  # in turn after the event's unit
        rows = await gw.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=50))
    events = [decode_entry(r["entry"]) for r in rows]
    lookups = [(e["request_id"], e["outcome"]) for e in events if e["action"] == "lookup.citizen"]
    assert lookups == [(request_id, "failed")], events
