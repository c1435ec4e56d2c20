"""A Subject (trích yếu) is a sentence or two, and nothing but the 8 MiB envelope cap bounded it:
each inbox page copied every Subject whole, so 30 packages of 7.5 MB Subjects made one
``GET /v1/documents/inbox`` a 225 MB JSON built on the event loop. A Subject is now capped at
intake, and the listing carries at most that much of one, whatever the store holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.exchange import check
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.check import MAX_SUBJECT
from gateway.exchange.xmldsig import sign_bytes
from signing.testing import TestPKI
from tests.e2e.test_documents import PROBLEM, Hub, running_hub

from .factories import NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for


@pytest.fixture
async def served(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _about(key: Callable[[str], Any], pdf: bytes, subject: str, number: str) -> bytes:
    header = replace(cong_van_header(TAY_NINH_STC, (NGHE_AN,), number), subject=subject)
    data = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", pdf)])
    return sign_bytes(data, key(TAY_NINH_STC))


# Vietnamese text: characters, not bytes, are counted (each of these is 2 or 3 bytes in UTF-8).
_WORDS = "V/v báo cáo tình hình thực hiện dự toán ngân sách nhà nước năm 2020 "


def _subject(length: int) -> str:
    return (_WORDS * (length // len(_WORDS) + 1))[:length]


async def test_a_subject_over_the_cap_is_invalid_edxml(
    served: Hub, key: Callable[[str], Any], signed_pdf: bytes
) -> None:
    hub = served
    before = await hub.store_counts()
    for length in (MAX_SUBJECT + 1, 300_000):
        async with await hub.send(
            TAY_NINH_STC, _about(key, signed_pdf, _subject(length), "2701")
        ) as r:
            assert r.status == 400, (await r.text())[:300]
            body = await r.json(content_type=None)
        assert body["type"] == PROBLEM + "invalid-edxml", body
        assert body["field"] == "MessageHeader/Subject", body
        assert f"{length} characters, longer than {MAX_SUBJECT}" in body["detail"], body
        assert len(body["detail"]) < 400  # said, not quoted
    assert await hub.store_counts() == before
    async with await hub.send(
        TAY_NINH_STC, _about(key, signed_pdf, _subject(MAX_SUBJECT), "2702")
    ) as r:
        assert r.status == 202, await r.text()
    _, inbox = await hub.json("GET", "/v1/documents/inbox", NGHE_AN)
    assert [i["subject"] for i in inbox["items"]] == [_subject(MAX_SUBJECT)]


async def test_the_inbox_carries_at_most_the_cap_of_a_subject_stored_before(
    served: Hub, key: Callable[[str], Any], signed_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Subject an earlier version took whole is cut in the listing (and the full package is
    still what a fetch answers)."""
    hub = served
    long = _subject(300_000)  # (under 1 MiB: aiohttp warns of larger bodies as bytes)
    with monkeypatch.context() as m:
        m.setattr(check, "MAX_SUBJECT", 10 * len(long))  # as before: no cap
        for number in ("2703", "2704", "2705"):
            async with await hub.send(TAY_NINH_STC, _about(key, signed_pdf, long, number)) as r:
                assert r.status == 202, await r.text()
    async with hub.http.get(f"{hub.url}/v1/documents/inbox", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
        raw = await r.read()
        inbox = await r.json()
    assert len(raw) < 3 * 4 * MAX_SUBJECT + 4096  # three items: not 1.2 MB of Subject
    subjects = [i["subject"] for i in inbox["items"]]
    assert len(subjects) == 3
    for subject in subjects:
        assert len(subject) == MAX_SUBJECT
        assert subject == long[: MAX_SUBJECT - 1] + "…"
    doc = inbox["items"][0]["id"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
        assert long.encode() in await r.read()
