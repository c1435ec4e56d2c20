"""``lienthong serve``'s stderr is its log, one JSON object a line: aiohttp's start-up banner
(``======== Running on http://… ========``) was printed between them, and a shipper parsing
the stream refused it."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from signing.testing import TestPKI
from tests.e2e.test_serve_client_gone import _serve


async def test_every_line_serve_writes_is_json(tmp_path: Path, pki: TestPKI) -> None:
    async with _serve(tmp_path, pki) as (base, log), aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
    lines = log.read_text("utf-8").splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]  # each line, or this fails
    assert any(e["message"] == f"Running on {base}" for e in entries), entries[:5]
