"""How a JSON request body is read, over a real socket: ``Expect: 100-continue`` invites it only
once the request passed every check made without it, any other expectation is a problem+json
417 like every error, and a body that keeps arriving is read however long it takes.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.e2e.conftest import TOKENS, Gateway

PROBLEM = "urn:lienthong:problem:"
LOOKUP = "/v1/lookups/citizen"
# Read whole, then refused for what it says (no registry is asked).
BAD_LOOKUP = b'{"personal_id": "001", "full_name": "Lan", "birth_date": "1990-01-01"}'


def _head(path: str, *fields: str, token: str | None = "motcua") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {TOKENS[token]}")
    return ("\r\n".join([*lines, *fields]) + "\r\n\r\n").encode()


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def _connect(gateway: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _send(gateway: Gateway, data: bytes) -> bytes:
    """``data`` on a fresh connection; everything the gateway answers, up to its closing it."""
    reader, writer = await _connect(gateway)
    try:
        writer.write(data)
        # read() ends at EOF only: a connection the gateway left open fails here.
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


async def test_an_expectation_other_than_100_continue_is_a_problem_logged_and_counted(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by probing: aiohttp answered it before any middleware, a text/plain 417 echoing the
    header ("Unknown Expect: …"), with no request id, no access-log line and no metric."""
    caplog.set_level(logging.INFO, logger="lienthong.http")
    answer = await _send(
        gateway,
        _head(
            LOOKUP,
            "Content-Type: application/json",
            "Expect: secret-words",
            f"Content-Length: {len(BAD_LOOKUP)}",
            "X-Request-Id: req-expect-1",
        )
        + BAD_LOOKUP,
    )
    status, headers, body = _parse(answer)
    assert status == 417, answer[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"] == "req-expect-1"
    problem = json.loads(body)
    assert problem["type"] == PROBLEM + "expectation-failed"
    assert problem["title"] == "Expectation failed" and problem["request_id"] == "req-expect-1"
    assert b"secret-words" not in answer
    logged = [r.getMessage() for r in caplog.records if r.name == "lienthong.http"]
    assert f"POST {LOOKUP} 417" in logged, logged
    async with gateway.http.get(gateway.url + "/metrics") as r:
        metrics = await r.text()
    assert f'route="{LOOKUP}",status="417"}} 1.0' in metrics


@pytest.mark.parametrize(
    ("fields", "token", "status", "slug"),
    [
        pytest.param((), None, 401, "unauthenticated", id="no-identity"),
        pytest.param((), "auditor", 403, "forbidden-service", id="no-right"),
        pytest.param(("Content-Length: 99999999",), "motcua", 413, "payload-too-large", id="size"),
        pytest.param(
            ("Content-Type: text/plain",), "motcua", 415, "unsupported-media-type", id="type"
        ),
    ],
)
async def test_100_continue_is_not_sent_for_a_request_refused_without_its_body(
    gateway: Gateway, fields: tuple[str, ...], token: str | None, status: int, slug: str
) -> None:
    """Found by probing: aiohttp told every ``Expect: 100-continue`` client to send its body at
    once, with no credentials or a Content-Length of 99,999,999 on a 1 MiB route: the body was
    invited, then refused. Now the refusal comes first, and the connection ends with it (the
    client still holds its body)."""
    defaults = {"Content-Type: application/json", "Content-Length: 5000"}
    named = {f.split(":", 1)[0] for f in fields}
    fields = (*fields, *(f for f in defaults if f.split(":", 1)[0] not in named))
    head = _head(LOOKUP, "Expect: 100-continue", *fields, token=token)
    answer = await _send(gateway, head)  # the body is never sent
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    _, headers, body = _parse(answer)
    assert json.loads(body)["type"] == PROBLEM + slug
    assert headers["connection"] == "close"


async def test_100_continue_invites_the_body_once_the_request_passed_its_checks(
    gateway: Gateway,
) -> None:
    reader, writer = await _connect(gateway)
    try:
        writer.write(
            _head(
                LOOKUP,
                "Content-Type: application/json",
                "Expect: 100-continue",
                f"Content-Length: {len(BAD_LOOKUP)}",
            )
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(BAD_LOOKUP)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status, _, body = _parse(answer)
    assert status == 422, answer[:300]  # the body was read, and judged
    assert "personal_id" in json.loads(body)["detail"]


async def test_a_json_body_that_keeps_arriving_slowly_is_read_whole(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: one 30 s timer covered the whole body, not each wait for more of it, so a
    body sent steadily but slowly (10 bytes a second) was a 408 "the body stopped arriving"."""
    from gateway.api import common

    monkeypatch.setattr(common, "BODY_IDLE_S", 1.0)
    body = BAD_LOOKUP[:-1] + b" " * 200 + b"}"  # ~27 pieces, 0.1 s apart: past the 1 s
    reader, writer = await _connect(gateway)
    try:
        writer.write(
            _head(LOOKUP, "Content-Type: application/json", f"Content-Length: {len(body)}")
        )
        for at in range(0, len(body), 10):
            await asyncio.sleep(0.1)
            writer.write(body[at : at + 10])
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status, _, problem = _parse(answer)
    assert status == 422, answer[:300]
    assert "personal_id" in json.loads(problem)["detail"]
