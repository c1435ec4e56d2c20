"""Status messages racing in at once, on SQLite and on the real PostgreSQL server: one recipient's
history stays forward-only and a message is recorded once, however many requests carry it.

SQLite has one writer, so its units take turns; PostgreSQL runs them side by side (READ COMMITTED),
where two transactions that both read the history before either inserted would both record.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from gateway.exchange.blobs import BlobStore
from gateway.exchange.errors import StatusTransitionError
from gateway.exchange.hub import STATUS_PUSH_KIND, AgencyRoute, DocumentHub
from gateway.exchange.model import VN_TZ
from gateway.store import open_store

from .factories import AGENCIES, NGHE_AN, TAY_NINH_STC, chunks, signed_status

POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.encode())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hub(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Any, trust: Any
) -> AsyncIterator[DocumentHub]:
    """The hub on SQLite, then on a fresh schema of the real PostgreSQL server, with as many
    connections as the test sends requests at once. Tây Ninh pushes: its statuses are queued."""
    url, schema = f"sqlite:///{tmp_path / 'hub.db'}", None
    if request.param == "postgres":
        schema = f"t_{uuid.uuid4().hex}"
        _admin(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{sep}options={quote(f'-c search_path={schema}')}"
    agencies = {a: AgencyRoute(a) for a in AGENCIES}
    agencies[TAY_NINH_STC] = AgencyRoute(TAY_NINH_STC, "http://stc.invalid/edoc")
    try:
        async with open_store(url, pool_size=8) as store:
            yield DocumentHub(
                store,
                BlobStore(tmp_path / "blobs"),
                organ_id="000.00.00.G22",
                agencies=agencies,
                trust=trust,
                signer=pki.key("gateway"),
            )
    finally:
        if schema is not None:
            _admin(f'DROP SCHEMA "{schema}" CASCADE')


async def _delivered(hub: DocumentHub, make_package: Callable[..., bytes], number: str) -> str:
    accepted = await hub.receive(
        chunks(make_package(number=number)), sender=TAY_NINH_STC, subsystem="s"
    )
    await hub.fetch(accepted.id, NGHE_AN, subsystem="s")
    return accepted.id


def _document_id(number: int) -> str:
    return f"{TAY_NINH_STC},2020/10/30,{number}/STC-BCTC"


async def _send(hub: DocumentHub, doc: str, message: bytes) -> int | str:
    """201 recorded, 200 repeated, or the refusal's class name."""
    try:
        answer = await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")
    except StatusTransitionError as exc:
        return type(exc).__name__
    return 200 if answer.get("repeated") else 201


async def _rows(hub: DocumentHub, doc: str) -> list[str]:
    rows = await hub.store.read(
        lambda tx: tx.all("documents.recipient_history", document=doc, recipient=NGHE_AN)
    )
    return [r["code"] for r in rows]


async def test_one_message_sent_many_times_at_once_is_recorded_once(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    # A client retrying after time-outs: the same signed 01, eight requests at once.
    doc = await _delivered(hub, make_package, "2491")
    message = signed_status(key, NGHE_AN, "01")
    answers = await asyncio.gather(*(_send(hub, doc, message) for _ in range(8)))
    assert sorted(answers, key=str) == [200] * 7 + [201]
    assert await _rows(hub, doc) == ["01"]
    view = await hub.statuses(doc, TAY_NINH_STC)  # the history still replays
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01"]
    sha = hashlib.sha256(message).hexdigest()
    pushes = await hub.store.read(
        lambda tx: tx.all("outbox.list", after_id=0, state=None, limit=99)
    )
    assert [j["key"] for j in pushes if j["kind"] == STATUS_PUSH_KIND] == [
        f"{STATUS_PUSH_KIND}:{sha}"
    ]
    # And the course goes on: the next status is taken.
    later = datetime.now(VN_TZ) + timedelta(seconds=1)
    assert await _send(hub, doc, signed_status(key, NGHE_AN, "03", at=later)) == 201


async def test_different_statuses_at_once_take_turns(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    # 06 (done) and 01 (arrived) at once: whichever comes second is refused if it is a step
    # back, so the stored history always replays (never 06 then 01).
    at = datetime.now(VN_TZ)
    for n in range(4):
        doc = await _delivered(hub, make_package, f"{2500 + n}")
        messages = [
            signed_status(key, NGHE_AN, code, at=at, doc=_document_id(2500 + n))
            for code in ("06", "01", "03", "05")
        ]
        answers = await asyncio.gather(*(_send(hub, doc, m) for m in messages))
        assert answers.count(201) >= 1
        history = await _rows(hub, doc)
        assert len(history) == answers.count(201)
        view = await hub.statuses(doc, TAY_NINH_STC)
        assert [h["code"] for h in view["recipients"][0]["history"]] == history
