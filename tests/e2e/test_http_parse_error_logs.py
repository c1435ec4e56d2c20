"""The WARNING for a request the parser refuses quoted the first bytes of a header too long: a
personal id, or the start of a bearer token, that the access log would never have held."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp.http_exceptions import BadStatusLine, InvalidHeader

from gateway.logs import JsonFormatter
from gateway.parse_errors import _summary
from tests.e2e.conftest import Gateway
from tests.e2e.test_http_parse_errors import _parse, _send

CCCD = "040199000123"
TOKEN = "s3cr3t-"


@pytest.mark.parametrize(
    "field",
    [b"C: " + CCCD.encode(), b"Authorization: Bearer " + TOKEN.encode()],
    ids=["personal-id", "bearer-token"],
)
async def test_a_header_too_long_is_logged_without_its_bytes(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, field: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger="lienthong.http")
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + field + b"a" * 9000 + b"\r\n\r\n"
    code, _, _ = _parse(await _send(gateway, data))
    assert code == 431
    (record,) = [r for r in caplog.records if r.name == "lienthong.http"]
    line = JsonFormatter().format(record)
    assert CCCD not in line and TOKEN not in line, line
    assert "more than 8190 bytes when reading a header" in json.loads(line)["message"]


def test_what_the_parser_quotes_is_masked() -> None:
    """aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) quotes the line it refuses."""
    header = _summary(InvalidHeader(b"Authorization: Bearer s3cr3t-tok\x00en"))
    assert TOKEN not in header and header.endswith("Authorization: ***"), header
    token = _summary(InvalidHeader(b"X-Auth: Bearer s3cr3t-tok\x00en"))
    assert TOKEN not in token and "Bearer ***" in token, token
    status = _summary(BadStatusLine(f"GET /{CCCD}\x00 HTTP/1.1"))
    assert CCCD not in status and "[number withheld]" in status, status
