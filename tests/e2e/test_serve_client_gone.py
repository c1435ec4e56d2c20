"""A client that goes away mid-request, against ``lienthong serve`` itself (a subprocess), not
aiohttp's test server: that one cancels the handler of a client gone, and ``serve`` did not,
so a lookup nobody received was audited as answered and logged 200.

What a cancelled handler leaves must be whole: a dossier whose client went away while its
acceptance was being stored is stored whole (the dossier, its first job, its audit event) or
not at all; a lookup's audit event is written once the registry was asked, whenever its client
leaves."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from connectors.sandboxes import serve_app
from gateway.audit import decode_entry
from gateway.samples import sample_dossiers
from signing.testing import TestPKI, free_port
from tests.e2e.conftest import TOKENS
from tests.e2e.test_lookups import _pointed_at, _registry, citizen_query
from tests.serving import serving

LIENTHONG = str(Path(sys.executable).with_name("lienthong"))
CLIENT, AUDITOR = "t-client-0123456789", "t-auditor-0123456789"


def _config(tmp: Path, pki: TestPKI, port: int, population: dict[str, Any] | None) -> Path:
    lines = [
        f'[gateway]\nlisten = "127.0.0.1:{port}"\nlookup_attempts = 1\n',
        f'[store]\nurl = "sqlite:///{tmp / "gateway.db"}"\n',
        '[[subsystems]]\nid = "VN:GOV:000.00.00.H41:motcua"\n'
        f'token = "{CLIENT}"\nrights = ["dossiers.submit", "lookups.citizen"]\n',
        '[[subsystems]]\nid = "VN:GOV:000.00.00.H41:kiemtoan"\n'
        f'token = "{AUDITOR}"\nrights = ["audit.read"]\n',
        "[outbox]\npoll_s = 0.05\n",
        f'[sandbox]\nembedded = true\nseed = 0\npki = "{pki.directory}"\n',
    ]
    if population is not None:
        lines.append("[registries.population]\n")
        lines += [f"{key} = {json.dumps(value)}\n" for key, value in population.items()]
    path = tmp / "lienthong.toml"
    path.write_text("".join(lines), "utf-8")
    return path


@asynccontextmanager
async def _serve(
    tmp: Path, pki: TestPKI, population: dict[str, Any] | None = None
) -> AsyncIterator[tuple[str, Path]]:
    """``lienthong serve`` on a free port until the block ends; its base URL and its log."""
    port = free_port()
    log = tmp / "gateway.log"
    async with serving(_config(tmp, pki, port, population), port, log) as base:
        yield base, log


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


async def _logged(log: Path, request_id: str) -> dict[str, Any]:
    """The access-log line of ``request_id``, once it is written."""
    for _ in range(600):
        for line in (await asyncio.to_thread(log.read_text, "utf-8")).splitlines():
            if line.startswith("{") and request_id in line:
                entry: dict[str, Any] = json.loads(line)
                if entry.get("request_id") == request_id and "status" in entry:
                    return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}: {log.read_text('utf-8')}")  # noqa: ASYNC240


async def _events(http: aiohttp.ClientSession, base: str, **query: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {AUDITOR}"}
    async with http.get(base + "/v1/audit/events", params=query, headers=headers) as r:
        assert r.status == 200, await r.text()
        items: list[dict[str, Any]] = (await r.json())["items"]
        return items


async def test_a_lookup_its_client_left_is_audited_cancelled_and_logged_499(
    tmp_path: Path, pki: TestPKI
) -> None:
    """Found by probing: under ``lienthong serve`` the handler ran on after its client left; the
    lookup was audited with no outcome (answered) and counted as a 200 nobody received."""
    asked = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        asked.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async with serve_app(_registry(hang)) as url:
        # Old gateways answered once this ran out: the event then said "failed", not ok.
        population = {**_pointed_at(url, "population"), "timeout_s": 5.0}
        async with _serve(tmp_path, pki, population) as (base, log):
            request_id = uuid.uuid4().hex
            await _send_and_leave(base, "/v1/lookups/citizen", citizen_query(), request_id, asked)
            line = await _logged(log, request_id)
            async with aiohttp.ClientSession() as http:
                events = await _events(http, base, service="lookups.citizen")
                async with http.get(base + "/metrics") as r:
                    metrics = await r.text()
    assert line["status"] == 499, line
    assert [(e["request_id"], e["outcome"]) for e in events] == [(request_id, "cancelled")]
    assert 'route="/v1/lookups/citizen",status="499"' in metrics
    assert 'route="/v1/lookups/citizen",status="200"' not in metrics


def _hold_the_store(db: Path) -> sqlite3.Connection:
    """Another writer holding the store's write lock: the gateway's transactions wait for it."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _release(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_dossier_whose_client_left_mid_acceptance_is_stored_whole_or_not_at_all(
    tmp_path: Path, pki: TestPKI
) -> None:
    """The acceptance runs on the store's writer thread: a handler cancelled while it waits
    for the commit leaves the unit to commit whole (or fail whole). Each client here leaves
    while the store is held by another writer, so its handler is cancelled waiting."""
    *docs, barrier = list(sample_dossiers(4, seed=0, death_share=0))
    headers = {"Authorization": f"Bearer {CLIENT}"}
    async with _serve(tmp_path, pki) as (base, log), aiohttp.ClientSession() as http:
        held = await asyncio.to_thread(_hold_the_store, tmp_path / "gateway.db")
        try:
            left = []
            for doc in docs:
                request_id = uuid.uuid4().hex
                sent = asyncio.Event()
                leaving = asyncio.create_task(
                    _send_and_leave(base, "/v1/dossiers", doc, request_id, sent)
                )
                # The request is in; its handler has its body and waits on the held store (a
                # pace, not a measurement: earlier, its client leaves before it stored anything).
                await asyncio.sleep(0.3)
                sent.set()
                await leaving
                left.append((doc["code"], await _logged(log, request_id)))
        finally:
            await asyncio.to_thread(_release, held)
        assert [entry["status"] for _, entry in left] == [499] * len(docs), left
        # One writer commits in turn: once a dossier sent after them is accepted, whatever was
        # left of theirs is committed, or failed.
        async with http.post(base + "/v1/dossiers", json=barrier, headers=headers) as r:
            assert r.status == 202, await r.text()
        stored = []
        for code, _ in left:
            async with http.get(f"{base}/v1/dossiers/{code}", headers=headers) as r:
                view = await r.json()
            events = {e["action"] for e in await _events(http, base, dossier=code)}
            if r.status == 404:  # not stored at all: then nothing of it is
                assert not events, (code, events)
                continue
            assert r.status == 200, view
            assert "dossier.accepted" in events, (code, events)
            stored.append(code)
        # Its first job was stored with it: the flow runs to its end.
        for code in stored:
            for _ in range(600):
                async with http.get(f"{base}/v1/dossiers/{code}", headers=headers) as r:
                    view = await r.json()
                if view["status"] in ("completed", "needs_attention", "failed"):
                    break
                await asyncio.sleep(0.05)
            assert view["status"] == "completed", view


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
