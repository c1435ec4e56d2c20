"""The document API over a real socket: what a client sends wrongly is a precise 4xx (never a
500 with a traceback), a read changes nothing, and a package is judged whole (envelope and parts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from signing.testing import TestPKI
from tests.e2e.test_documents import PROBLEM, Hub, package, running_hub, status_message

from .factories import NGHE_AN, TAY_NINH_STC

# Each an encoding Python knows but expat cannot use (or no XML encoding at all).
FOREIGN_ENCODINGS = [
    "x-nope",
    "utf-32",
    "utf-7",
    "shift_jis",
    "UTF-16LE",
    "rot13",
    "base64",
    "idna",
]


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _declaring(data: bytes, encoding: str) -> bytes:
    out = data.replace(b"encoding='UTF-8'", f"encoding='{encoding}'".encode(), 1)
    assert out != data
    return out


async def _problem(r: Any) -> tuple[int, str, dict[str, Any]]:
    body = await r.json(content_type=None)
    return r.status, str(body.get("type", "")).removeprefix(PROBLEM), body


async def test_an_encoding_other_than_utf8_is_invalid_edxml_on_both_endpoints(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    for encoding in FOREIGN_ENCODINGS:
        async with await hub.send(TAY_NINH_STC, _declaring(data, encoding)) as r:
            status, slug, body = await _problem(r)
            assert (status, slug) == (400, "invalid-edxml"), (encoding, body)
            assert "UTF-8" in body["detail"]
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    message = status_message(pki, NGHE_AN, "000.00.11.H53,2020/10/30,2491/STC-BCTC", "01")
    for encoding in FOREIGN_ENCODINGS:
        async with await hub.status(NGHE_AN, doc, _declaring(message, encoding)) as r:
            status, slug, body = await _problem(r)
            assert (status, slug) == (400, "invalid-edxml"), (encoding, body)
    async with await hub.status(NGHE_AN, doc, message) as r:
        assert r.status == 201, await r.text()
