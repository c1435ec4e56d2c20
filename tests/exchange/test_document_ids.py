"""A DocumentId names one document of its sender, whichever way the sender writes its date, and
new and replacing documents share one namespace of them — on SQLite and on PostgreSQL.

spec/edxml.md: a DocumentId is ``{OrganId},{yyyy/MM/dd},{CodeNumber}/{CodeNotation}``; ``dd/MM/yyyy``
is seen in real packages: "accept both, emit the first".
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.errors import DuplicateConflict
from gateway.exchange.hub import Accepted, AgencyRoute, DocumentHub
from gateway.exchange.model import PromulgationInfo
from gateway.exchange.receipt import read_receipt
from gateway.exchange.xmldsig import sign_bytes
from gateway.store import open_store

from .factories import (
    AGENCIES,
    NGHE_AN,
    TAY_NINH_STC,
    chunks,
    cong_van_header,
    signed_status,
    trace_for,
)

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
    """The hub on a SQLite store, then on a fresh schema of the real PostgreSQL server."""
    url, schema = f"sqlite:///{tmp_path / 'hub.db'}", None
    if request.param == "postgres":
        schema = f"t_{uuid.uuid4().hex}"
        _admin(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{sep}options={quote(f'-c search_path={schema}')}"
    try:
        async with open_store(url) as store:
            yield DocumentHub(
                store,
                BlobStore(tmp_path / "blobs"),
                organ_id="000.00.00.G22",
                agencies={a: AgencyRoute(a) for a in AGENCIES},
                trust=trust,
                signer=pki.key("gateway"),
            )
    finally:
        if schema is not None:
            _admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def package(key: Callable[[str], Any], signed_pdf: bytes) -> Callable[..., bytes]:
    """Tây Ninh's signed Công văn ``number``/STC-BCTC of ``issued`` to Nghệ An, its DocumentId's
    date written ``spelled`` (yyyy/MM/dd by default)."""

    def make(
        spelled: str | None = None,
        *,
        number: str = "1501",
        issued: date = date(2020, 10, 30),
        doc_type: int = 0,
        subject: str = "V/v báo cáo tình hình thực hiện dự toán ngân sách nhà nước năm 2020",
    ) -> bytes:
        header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), number)
        header = replace(
            header,
            document_id=f"{TAY_NINH_STC},{spelled or f'{issued:%Y/%m/%d}'},{number}/STC-BCTC",
            promulgation_info=PromulgationInfo("Tây Ninh", issued),
            subject=subject,
        )
        # A revoke's or update's Bussiness/DocumentId names the original: here, as its header.
        data = build_package(
            header, trace_for(header, doc_type), [NewAttachment("cong-van.pdf", signed_pdf)]
        )
        return sign_bytes(data, key(TAY_NINH_STC))

    return make


async def _receive(hub: DocumentHub, data: bytes) -> Accepted:
    return await hub.receive(chunks(data), sender=TAY_NINH_STC, subsystem="s")


async def _documents(hub: DocumentHub) -> int:
    return len(await hub.store.read(lambda tx: tx.all("documents.count_documents")))


async def test_two_spellings_of_a_document_id_are_one_document(
    hub: DocumentHub, package: Callable[..., bytes]
) -> None:
    sent = package("30/10/2020")
    first = await _receive(hub, sent)
    # The receipt says what was sent; the hub files and shows the form the spec emits.
    assert read_receipt(first.receipt).document_id == f"{TAY_NINH_STC},30/10/2020,1501/STC-BCTC"
    view = await hub.statuses(first.id, TAY_NINH_STC)
    assert view["document_id"] == f"{TAY_NINH_STC},2020/10/30,1501/STC-BCTC"
    again = await _receive(hub, sent)  # the same package again
    assert (again.id, again.receipt, again.duplicate) == (first.id, first.receipt, True)
    # The same document spelled the standard's way: other bytes, so another package of the
    # DocumentId accepted — a conflict, not a second document in the recipient's inbox.
    for other in (package("2020/10/30"), package("2020/10/30", subject="Nội dung khác")):
        with pytest.raises(DuplicateConflict) as refused:
            await _receive(hub, other)
        assert refused.value.extra["id"] == first.id
    assert await _documents(hub) == 1


@pytest.mark.parametrize(
    ("sent", "answered"),
    [("5/1/2021", "2021/01/05"), ("2021/01/05", "05/01/2021"), ("2021/1/5", "5/1/2021")],
)
async def test_a_status_and_a_revoke_find_the_document_by_another_spelling(
    hub: DocumentHub,
    package: Callable[..., bytes],
    key: Callable[[str], Any],
    sent: str,
    answered: str,
) -> None:
    issued = date(2021, 1, 5)
    doc = (await _receive(hub, package(sent, issued=issued))).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    status = signed_status(key, NGHE_AN, "01", doc=f"{TAY_NINH_STC},{answered},1501/STC-BCTC")
    result = await hub.record_status(doc, chunks(status), sender=NGHE_AN, subsystem="s")
    assert result["history"] == ["01"]
    revoke = await _receive(hub, package(answered, issued=issued, doc_type=1))
    assert revoke.id != doc
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01", "13"]


async def test_new_and_replacing_documents_share_one_namespace_of_document_ids(
    hub: DocumentHub, package: Callable[..., bytes]
) -> None:
    original = await _receive(hub, package())
    with pytest.raises(DuplicateConflict) as refused:  # a replacement taking its DocumentId
        await _receive(hub, package(doc_type=3, subject="V/v thay thế"))
    assert refused.value.extra["id"] == original.id
    replacement = await _receive(hub, package(number="1502", doc_type=3))  # an id of its own
    with pytest.raises(DuplicateConflict) as refused:  # a new document taking the replacement's
        await _receive(hub, package(number="1502"))
    assert refused.value.extra["id"] == replacement.id
    # A revoke and an update name the original's DocumentId, as they must.
    await _receive(hub, package(doc_type=1))
    await _receive(hub, package(doc_type=2))
    assert await _documents(hub) == 4
    box = await hub.inbox(NGHE_AN)
    assert [(i["document_id"], i["doc_type"]) for i in box["items"]] == [
        (f"{TAY_NINH_STC},2020/10/30,1501/STC-BCTC", 0),
        (f"{TAY_NINH_STC},2020/10/30,1502/STC-BCTC", 3),
        (f"{TAY_NINH_STC},2020/10/30,1501/STC-BCTC", 1),
        (f"{TAY_NINH_STC},2020/10/30,1501/STC-BCTC", 2),
    ]


async def test_a_new_and_a_replacing_document_racing_in_store_one(
    hub: DocumentHub, package: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both have looked before either commits: the transactions themselves must tell."""
    both_looked = asyncio.Barrier(2)
    transact = hub.store.transact

    async def after_both(work: Any, **kw: Any) -> Any:
        await both_looked.wait()
        return await transact(work, **kw)

    monkeypatch.setattr(hub.store, "transact", after_both)
    results = await asyncio.gather(
        _receive(hub, package()), _receive(hub, package(doc_type=3)), return_exceptions=True
    )
    accepted = [r for r in results if isinstance(r, Accepted)]
    refused = [r for r in results if isinstance(r, DuplicateConflict)]
    assert (len(accepted), len(refused)) == (1, 1), results
    assert refused[0].extra["id"] == accepted[0].id
    assert await _documents(hub) == 1


async def test_document_ids_an_earlier_version_filed_as_sent_are_refiled(
    hub: DocumentHub,
    package: Callable[..., bytes],
    key: Callable[[str], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Earlier versions filed a DocumentId as the sender spelled it, and could take one document
    twice under two spellings. A row that moves is found by every spelling; a second spelling
    whose normal form is taken stays as it is, and is still answered."""
    normal = f"{TAY_NINH_STC},2020/10/30,1501/STC-BCTC"
    as_sent = f"{TAY_NINH_STC},30/10/2020,1501/STC-BCTC"
    twice = f"{TAY_NINH_STC},30/10/2020 08:00,1501/STC-BCTC"  # the date's time part is ignored
    doc = (await _receive(hub, package("30/10/2020"))).id
    copy = (await _receive(hub, package(number="1502"))).id  # stands for the second spelling

    def as_earlier_versions_filed(tx: Any) -> None:
        assert tx.execute("documents.refile", id=doc, document_id=as_sent, was=normal) == 1
        tx.execute(
            "documents.refile", id=copy, document_id=twice, was=normal.replace("1501", "1502")
        )

    await hub.store.transact(as_earlier_versions_filed)
    with caplog.at_level(logging.WARNING, logger="lienthong.documents"):
        assert await hub.refile_document_ids() == 1
    assert f"document {copy} keeps DocumentId {twice} as sent" in caplog.text
    assert (await hub.statuses(doc, TAY_NINH_STC))["document_id"] == normal
    assert await hub.refile_document_ids() == 0  # nothing left to move
    with pytest.raises(DuplicateConflict) as refused:
        await _receive(hub, package("2020/10/30"))
    assert refused.value.extra["id"] == doc
    for d, named in ((doc, "2020/10/30"), (copy, "30/10/2020")):
        await hub.fetch(d, NGHE_AN, subsystem="s")
        status = signed_status(key, NGHE_AN, "01", doc=f"{TAY_NINH_STC},{named},1501/STC-BCTC")
        await hub.record_status(d, chunks(status), sender=NGHE_AN, subsystem="s")
    await _receive(hub, package("2020/10/30", doc_type=1))  # the revoke finds the one refiled
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01", "13"]
