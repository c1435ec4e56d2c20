"""How a JSON request body is read, over a real socket: a body that keeps arriving is read
however long it takes.
"""

from __future__ import annotations

import asyncio
import json

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
