"""A DocumentId is one line of text: recipients file the document by it, and a push carries it in
the ``X-Lienthong-Document-Id`` header. One holding a DEL (U+007F, which XML allows) was accepted
202, after which every push of it died inside aiohttp ("Forbidden control character detected in
headers"), with a traceback at ERROR, and the job ended dead. Now it is refused at intake; and a
document accepted before (or any header aiohttp refuses) makes a clear permanent failure, never
an unexpected one, and says nothing against the agency's endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.api import PermanentError
from gateway.exchange import delivery
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.delivery import PushHandler
from gateway.exchange.hub import PUSH_KIND, AgencyRoute, DocumentHub
from gateway.exchange.model import Code
from gateway.exchange.xmldsig import sign_bytes
from gateway.outbox import Breakers, Job
from signing.testing import TestPKI
from tests.e2e.test_documents import PROBLEM, Hub, eventually, running_hub

from .factories import NGHE_AN, TAY_NINH_STC, chunks, cong_van_header, trace_for


def _numbered(key: Callable[[str], Any], pdf: bytes, notation: str, number: str = "12") -> bytes:
    """Nghệ An's letter number ``{number}/{notation}`` to Tây Ninh (whose system takes pushes)."""
    header = cong_van_header(NGHE_AN, (TAY_NINH_STC,), number)
    header = replace(
        header,
        document_id=f"{NGHE_AN},2020/10/30,{number}/{notation}",
        code=Code(number, notation),
    )
    data = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", pdf)])
    return sign_bytes(data, key(NGHE_AN))


@pytest.fixture
async def served(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    """The whole gateway over a socket (``hub`` is the DocumentHub alone)."""
    async with running_hub(tmp_path, pki) as h:
        h.endpoint.fail_first = 0
        yield h


@pytest.mark.parametrize(
    "char", ["\x7f", "\t", "\x85", "\x9b", "\u2028", "\u2029"], ids=lambda c: f"U+{ord(c):04X}"
)
async def test_a_document_id_holding_a_control_character_is_refused_at_intake(
    served: Hub, key: Callable[[str], Any], signed_pdf: bytes, char: str
) -> None:
    hub = served
    before = await hub.store_counts()
    async with await hub.send(NGHE_AN, _numbered(key, signed_pdf, f"QĐ{char}UBND")) as r:
        assert r.status == 400, (await r.text())[:300]
        body = await r.json(content_type=None)
    assert body["type"] == PROBLEM + "invalid-edxml", body
    assert body["field"] == "MessageHeader/DocumentId", body
    assert f"control character U+{ord(char):04X}" in body["detail"], body
    assert await hub.store_counts() == before


async def test_a_document_id_beyond_ascii_is_taken_and_pushed_as_today(
    served: Hub, key: Callable[[str], Any], signed_pdf: bytes
) -> None:
    hub = served
    async with await hub.send(NGHE_AN, _numbered(key, signed_pdf, "QĐ-UBND")) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]

    async def pushed() -> bool:
        return bool(hub.endpoint.received)

    await eventually(pushed, "the package pushed to Tây Ninh")
    (headers, _), *_ = hub.endpoint.received
    assert headers["X-Lienthong-Document"] == doc
    assert headers["X-Lienthong-Document-Id"] == f"{NGHE_AN},2020/10/30,12/QĐ-UBND"


def _job(document: str, recipient: str) -> Job:
    return Job(
        id=1,
        kind=PUSH_KIND,
        key="k",
        payload={"document": document, "recipient": recipient},
        dossier=None,
        document=document,
        state="running",
        attempts=1,
        run_after=0,
        last_error=None,
        created_at=0,
        updated_at=0,
    )


async def _accepted_before(
    hub: DocumentHub, make_package: Callable[..., bytes], number: str, document_id: str
) -> str:
    """A document filed under ``document_id``, as an earlier version took it: its hub id."""
    accepted = await hub.receive(
        chunks(make_package(number=number)), sender=TAY_NINH_STC, subsystem="s"
    )

    def refile(tx: Any) -> int:
        was = tx.one("documents.get", id=accepted.id)["document_id"]
        return int(tx.execute("documents.refile", id=accepted.id, document_id=document_id, was=was))

    assert await hub.store.transact(refile) == 1
    return accepted.id


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A real agency endpoint: its URL, and the headers of what it received."""
    got: list[dict[str, str]] = []

    async def edoc(request: web.Request) -> web.Response:
        await request.read()
        got.append(dict(request.headers))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/edoc", edoc)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/edoc")), got
    finally:
        await server.close()


async def test_a_header_no_http_request_can_carry_fails_the_push_permanently(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[str, list[dict[str, str]]],
) -> None:
    url, got = endpoint
    bad = await _accepted_before(
        hub, make_package, "2491", "000.00.11.H53,2020/10/30,2491/CV\x7fUBND"
    )
    good = await _accepted_before(
        hub, make_package, "2492", "000.00.11.H53,2020/10/30,2492/QĐ-UBND"
    )
    breakers = Breakers(failure_threshold=1)
    async with aiohttp.ClientSession() as session:
        routes = {**hub.agencies, NGHE_AN: AgencyRoute(NGHE_AN, url)}
        push = PushHandler(hub.store, hub.blobs, routes, lambda: session, breakers=breakers)
        with pytest.raises(PermanentError, match=r"X-Lienthong-Document-Id .*U\+007F"):
            await push.run(_job(bad, NGHE_AN))
        assert got == []
        # Nothing was said against the endpoint (one failure opens this breaker): the next
        # push goes out.
        record = await push.run(_job(good, NGHE_AN))
    assert callable(record)
    assert [h["X-Lienthong-Document-Id"] for h in got] == ["000.00.11.H53,2020/10/30,2492/QĐ-UBND"]


async def test_a_header_aiohttp_refuses_is_a_permanent_failure_whatever_the_hub_knew(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    endpoint: tuple[str, list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should aiohttp refuse more than the hub looks for, its ValueError is still translated."""
    monkeypatch.setattr(delivery, "_NOT_IN_HEADERS", delivery.re.compile(r"(?!)"))
    url, got = endpoint
    bad = await _accepted_before(
        hub, make_package, "2491", "000.00.11.H53,2020/10/30,2491/CV\x7fUBND"
    )
    async with aiohttp.ClientSession() as session:
        routes = {**hub.agencies, NGHE_AN: AgencyRoute(NGHE_AN, url)}
        push = PushHandler(hub.store, hub.blobs, routes, lambda: session)
        with pytest.raises(PermanentError, match="cannot be sent: Forbidden control character"):
            await push.run(_job(bad, NGHE_AN))
    assert got == []
