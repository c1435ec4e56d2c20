"""What aiohttp's HTTP parser refuses, before any middleware runs, is still a problem+json answer:
a stable type, a short detail that does not quote the client's bytes back, the connection closed,
and one WARNING line in the log — never an ERROR with a traceback (gateway/parse_errors.py).

These go over a real socket to a real gateway; they fail if aiohttp changes how it answers a
request its parser refuses (the part of parse_errors.py that is not public aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.logs import JsonFormatter
from gateway.parse_errors import ServerLog
from tests.e2e.conftest import TOKENS, Gateway

PROBLEM = "urn:lienthong:problem:"
LONG = b"a" * 9000  # over aiohttp's 8190-byte line and field limits
QUOTED = b"a" * 40  # what must not come back
POST = b"POST /v1/dossiers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

MALFORMED = [
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        400,
        "malformed-request",
        id="nul-in-a-header",
    ),
    pytest.param(
        b"GET /" + LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "uri-too-long",
        id="request-line-too-long",
    ),
    pytest.param(  # one byte under the line's limit: still too long for a header field
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8191 + b"\r\n\r\n",
        431,
        "header-fields-too-large",
        id="header-too-long",
    ),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big" + LONG + b": 1\r\n\r\n",
        431,
        "header-fields-too-large",
        id="header-name-too-long",
    ),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: 1\r\n" % i for i in range(200))
        + b"\r\n",
        431,
        "header-fields-too-large",
        id="too-many-headers",
    ),
    pytest.param(
        POST + b"Content-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
        415,
        "unsupported-media-type",
        id="content-encoding-br",
    ),
    pytest.param(
        POST + b"Content-Encoding: zstd\r\nContent-Length: 2\r\n\r\n{}",
        415,
        "unsupported-media-type",
        id="content-encoding-zstd",
    ),
    pytest.param(b"BLAH\r\n\r\n", 400, "malformed-request", id="invalid-method"),
    pytest.param(
        POST + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
        400,
        "malformed-request",
        id="invalid-chunk-size",
    ),
    pytest.param(
        POST + b"Content-Length: abc\r\n\r\n", 400, "malformed-request", id="bad-content-length"
    ),
    pytest.param(
        POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "malformed-request",
        id="two-content-lengths",
    ),
]


def _address(gateway: Gateway) -> tuple[str, int]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def _send(gateway: Gateway, data: bytes) -> bytes:
    """``data`` on a fresh connection; everything the gateway answers, up to its closing it."""
    reader, writer = await asyncio.open_connection(*_address(gateway))
    try:
        writer.write(data)
        # read() ends at EOF only: a connection the gateway left open fails here.
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def _one_warning(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    (record,) = warnings
    assert record.exc_info is None
    line = JsonFormatter().format(record)  # the gateway's log format: one JSON object a line
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and "error" not in entry  # no traceback
    assert QUOTED.decode() not in line
    return record


@pytest.mark.parametrize(("data", "status", "slug"), MALFORMED)
async def test_a_request_the_parser_refuses_is_a_problem(
    gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    status: int,
    slug: str,
) -> None:
    caplog.set_level(logging.INFO)
    answer = await _send(gateway, data)

    code, headers, body = _parse(answer)
    assert code == status, answer[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert headers["server"] == "lienthong"  # not aiohttp's, which names its version
    problem: dict[str, Any] = json.loads(body)
    assert problem["type"] == PROBLEM + slug
    assert problem["status"] == status
    assert (
        problem["title"]
        == {
            400: "Bad request",
            414: "URI too long",
            415: "Unsupported media type",
            431: "Request header fields too large",
        }[status]
    )
    assert problem["detail"].startswith("the request")
    assert len(problem["detail"]) <= 130  # aiohttp's own words, cut: a few dozen bytes at most
    assert QUOTED not in answer  # the client's bytes do not come back
    assert "install" not in problem["detail"].lower()  # aiohttp's advice is for us, not callers
    assert problem["instance"] == ""  # the target was never read
    assert problem["request_id"] == headers["x-request-id"]
    if status == 415:  # RFC 9110 §15.5.16: which content codings would do
        assert headers["accept-encoding"] == "gzip, deflate"

    record = _one_warning(caplog)
    assert record.name == "lienthong.http"
    assert record.__dict__["request_id"] == problem["request_id"]
    assert (record.__dict__["status"], record.__dict__["problem"]) == (status, slug)

    async with gateway.http.get(gateway.url + "/healthz") as r:  # a fresh connection still works
        assert r.status == 200
        assert (await r.json())["status"] == "ok"
    # Found by probing: a well-formed request in br was counted and logged as a malformed one,
    # quoting aiohttp's advice to install Brotli — the gateway refuses br by design.
    route = "unsupported-encoding" if status == 415 else "malformed"
    if status == 415:
        coding = data.split(b"Content-Encoding: ")[1].split(b"\r\n")[0].decode()
        assert record.getMessage() == (
            f"refused a request from 127.0.0.1: its Content-Encoding {coding} is not one this "
            "gateway decodes (gzip, deflate)"
        )
    else:
        assert record.getMessage().startswith("refused a malformed request from 127.0.0.1: ")
    async with gateway.http.get(gateway.url + "/metrics") as r:  # operators see it counted
        counted = (
            f'lienthong_http_requests_total{{method="-",route="{route}",status="{status}"}} 1.0'
        )
        assert counted in (await r.text()).splitlines()


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9"])
async def test_a_version_other_than_http1_is_a_505(gateway: Gateway, version: bytes) -> None:
    """aiohttp's parser takes any digit.digit, and the gateway answered ``HTTP/2.0 200 OK``."""
    answer = await _send(gateway, b"GET /healthz " + version + b"\r\nHost: x\r\n\r\n")
    code, headers, body = _parse(answer)
    assert code == 505, answer[:200]
    assert json.loads(body)["type"] == PROBLEM + "http-version-not-supported"
    assert headers["connection"] == "close"


async def test_a_client_gone_mid_body_is_no_server_error(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closed its connection before sending its whole body was logged as an
    unhandled error with a traceback, and counted as a 500."""
    _, writer = await asyncio.open_connection(*_address(gateway))
    writer.write(
        b"POST /v1/dossiers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-motcua-0123456789\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"code": '
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    writer.close()
    await writer.wait_closed()
    for _ in range(100):  # until the gateway has noticed and answered (to no one)
        async with gateway.http.get(gateway.url + "/metrics") as r:
            metrics = await r.text()
        if 'route="/v1/dossiers",status="499"' in metrics:
            break
        await asyncio.sleep(0.05)
    assert 'route="/v1/dossiers",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_malformed_request_after_a_good_one_on_the_same_connection(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(*_address(gateway))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        code, headers, _ = _parse(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))
        assert code == 200
        await reader.readexactly(int(headers["content-length"]))
        writer.write(b"BLAH\r\n\r\n")  # the second request on a kept-alive connection
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    code, headers, body = _parse(answer)
    assert (code, headers["content-type"]) == (400, "application/problem+json")
    assert json.loads(body)["type"] == PROBLEM + "malformed-request"
    _one_warning(caplog)


async def test_a_body_that_fails_to_decode_after_the_answer_is_a_warning(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused before its body is read (no credentials), then aiohttp drains the body and finds
    it is not gzip: a client's fault, one WARNING line, not an "Unhandled exception" ERROR."""
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(*_address(gateway))
    try:
        writer.write(POST + b"Content-Encoding: gzip\r\nContent-Length: 11\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        code, headers, _ = _parse(head)
        assert code == 401
        await reader.readexactly(int(headers["content-length"]))
        writer.write(b"not gzip at")
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # then it is closed
    finally:
        writer.close()
    record = _one_warning(caplog)
    assert "content-encoding" in record.getMessage().lower()


async def test_other_aiohttp_servers_keep_aiohttps_answer(gateway: Gateway) -> None:
    """The wrapped handle_error acts for the gateway's connections only (its ServerLog)."""
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
    finally:
        await server.close()
    code, headers, _ = _parse(answer)
    assert code == 400
    assert headers["content-type"].startswith("text/plain")


def test_server_log_passes_other_errors_on_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        ServerLog().exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("aiohttp.server", logging.ERROR)
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert record.getMessage() == "Error handling request from 127.0.0.1"


async def test_a_redirect_is_logged_and_counted_as_itself(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """``GET /console`` is aiohttp's 308 to ``/console/``; the access log and the metrics said
    500, a false server error for an operator's alerts."""
    caplog.set_level(logging.INFO, logger="lienthong.http")
    async with gateway.http.get(gateway.url + "/console", allow_redirects=False) as r:
        assert r.status == 308 and r.headers["Location"] == "/console/"
        assert r.headers["Server"] == "lienthong"
    async with gateway.http.get(gateway.url + "/metrics") as r:
        metrics = await r.text()
    assert 'route="/console",status="308"' in metrics and 'status="500"' not in metrics
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "lienthong.http"]
    assert logged[:1] == ["GET /console 308"]


async def test_a_body_that_stops_arriving_is_a_408_and_the_connection_ends(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: a client with a valid token that sent 5 bytes of a 100,000-byte body
    and stopped held its connection for ever (400 s and counting)."""
    from gateway.api import common

    monkeypatch.setattr(common, "BODY_IDLE_S", 0.5)
    head = (
        b"POST /v1/lookups/citizen HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKENS["motcua"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    answer = await _send(gateway, head + b'{"per')  # then nothing more: ends when it is closed
    code, headers, body = _parse(answer)
    assert code == 408, answer[:300]
    problem = json.loads(body)
    assert problem["type"] == PROBLEM + "request-timeout"
    assert problem["title"] == "Request timeout"  # was the generic "Error"
    assert headers["connection"] == "close"


async def test_every_answer_names_the_product_not_its_versions(gateway: Gateway) -> None:
    """aiohttp's Server header said ``Python/3.11 aiohttp/3.14.5``: which flaws to try."""
    for method, path in (
        ("GET", "/healthz"),  # a handler's answer
        ("GET", "/v1/nowhere"),  # a problem
        ("POST", "/v1/lookups/citizen"),  # refused before any handler: no identity
        ("GET", "/console/"),  # a file
    ):
        async with gateway.http.request(method, gateway.url + path) as r:
            await r.read()
            assert r.headers["Server"] == "lienthong", (path, r.status, r.headers)
