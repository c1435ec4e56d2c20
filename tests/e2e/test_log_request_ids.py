"""Every line logged while a request is served carries its id, not only the access line: a 500
says "quote the request id", and the line that says what broke lacked it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.logs import configure_logging
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from tests.e2e.test_documents import package, running_hub
from tests.e2e.test_log_levels import restore_logging  # noqa: F401 - a fixture
from tests.exchange.factories import NGHE_AN, TAY_NINH_STC


async def test_the_line_that_says_what_broke_names_the_request(
    tmp_path: Path,
    pki: TestPKI,
    pki_server: str,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,  # noqa: F811
) -> None:
    pdf = await sign_pdf(sample_pdf("Cong van 2491/STC"), pki.key(f"agency-{TAY_NINH_STC}"))
    configure_logging("INFO")
    async with running_hub(tmp_path, pki) as hub:
        async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), pdf)) as r:
            assert r.status == 202, await r.text()
            doc = r.headers["X-Lienthong-Document"]
        for blob in (hub.blob_dir / "sha256").rglob("*"):
            if blob.is_file() and blob.read_bytes().startswith(b"<?xml"):
                blob.unlink()  # the package as received and its forwarded copy
        headers = hub.h(NGHE_AN, **{"X-Request-Id": "rid-blob-1"})
        async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=headers) as r:
            assert r.status == 500
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    missing = [e for e in lines if "missing from the blob store" in e["message"]]
    assert missing, [e["message"] for e in lines]
    assert [e.get("request_id") for e in missing] == ["rid-blob-1"] * len(missing), missing
    # Lines logged outside any request carry none (not the last request's).
    assert all("request_id" not in e for e in lines if e["logger"] == "lienthong.outbox")
