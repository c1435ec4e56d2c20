"""A document's fetch is logged and counted once its body has been sent, not when its handler
returns: an 11 s download was logged as 2 ms, and one its reader left halfway as a 200.

The gateway runs as ``serve`` runs it (``web.AppRunner``, a TCP site), with and without aiohttp's
handler cancellation. The reader is a raw socket with a small receive buffer, so that the body
(over 12 MB) cannot all be in flight while it does not read.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.cli import build_app
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.xmldsig import sign_bytes
from signing.testing import TestPKI
from tests.e2e.conftest import gateway_config
from tests.exchange.factories import NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for

TOKENS = {TAY_NINH_STC: "t-stc-0123456789", NGHE_AN: "t-ubnd-0123456789"}
ROUTE = 'lienthong_http_requests_total{method="GET",route="/v1/documents/{id}",status="%d"}'


@asynccontextmanager
async def serving(tmp_path: Path, pki: TestPKI, cancellation: bool) -> AsyncIterator[str]:
    settings = gateway_config(
        tmp_path,
        pki.directory,
        subsystems=[
            {"id": f"VN:GOV:{a}:vanban", "token": t, "rights": ["documents.exchange"]}
            for a, t in TOKENS.items()
        ],
        agencies=[{"id": TAY_NINH_STC, "name": "Sở Tài chính"}, {"id": NGHE_AN, "name": "UBND"}],
        documents={"blob_dir": str(tmp_path / "blobs")},
    )
    runner = web.AppRunner(build_app(settings), access_log=None, handler_cancellation=cancellation)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _big_package(pki: TestPKI) -> bytes:
    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), "777")
    # Three parts of 3 MB (4 MB in base64: lxml parses no text node over 10 MB in memory).
    parts = [NewAttachment(f"so-lieu-{i}.bin", os.urandom(3 << 20), "application/octet-stream") for i in range(3)]  # fmt: skip
    return sign_bytes(build_package(header, trace_for(header, 0), parts), pki.key(f"agency-{TAY_NINH_STC}"))  # fmt: skip


async def _count(http: aiohttp.ClientSession, url: str, status: int) -> float:
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    wanted = ROUTE % status
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(wanted))


async def _fetch_head(url: str, doc: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET of the document on a socket that takes 16 KB at a time; returns once the answer's
    head and the first bytes of its body have arrived."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
    writer.write(
        f"GET /v1/documents/{doc} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKENS[NGHE_AN]}\r\nConnection: close\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    await reader.readexactly(1024)
    return reader, writer


async def _eventually(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """(200s, 499s) counted for the route, once either is."""
    for _ in range(600):  # bounded: 30 s; a condition, never a time
        counts = await _count(http, url, 200), await _count(http, url, 499)
        if any(counts):
            return counts
        await asyncio.sleep(0.05)
    raise AssertionError("the fetch was never counted")


@pytest.mark.parametrize("cancellation", [True, False], ids=["cancelling", "not-cancelling"])
async def test_a_download_is_counted_when_sent_and_an_abandoned_one_as_499(
    tmp_path: Path, pki: TestPKI, pki_server: str, cancellation: bool
) -> None:
    data = await asyncio.to_thread(_big_package, pki)
    async with serving(tmp_path, pki, cancellation) as url, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKENS[TAY_NINH_STC]}"}
        headers["Content-Type"] = "application/xml"
        async with http.post(url + "/v1/documents", data=io.BytesIO(data), headers=headers) as r:
            assert r.status == 202, await r.text()
            doc = r.headers["X-Lienthong-Document"]

        reader, writer = await _fetch_head(url, doc)
        try:
            # The reader has the head and is not reading: the body is still being sent.
            assert (await _count(http, url, 200), await _count(http, url, 499)) == (0, 0)
            body = await reader.read()  # to the end
        finally:
            writer.transport.abort()
        assert len(body) > 8 << 20
        assert await _eventually(http, url) == (1, 0)

        reader, writer = await _fetch_head(url, doc)
        writer.transport.abort()  # the reader leaves halfway
        for _ in range(600):  # bounded: 30 s
            if await _count(http, url, 499):
                break
            await asyncio.sleep(0.05)
        assert (await _count(http, url, 200), await _count(http, url, 499)) == (1, 1)
