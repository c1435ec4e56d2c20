"""DocumentHub over the real SQLite store (no HTTP): races, recall rules, inbox paging."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.exchange.builder import SIGNATURE_PARENT, build_package, build_status
from gateway.exchange.edxml import DS_NS
from gateway.exchange.errors import InvalidEdxml, NotDelivered, ReceiptUnsigned, UnknownDocument
from gateway.exchange.hub import DocumentHub
from gateway.exchange.model import VN_TZ, Code, Organization, ResponseFor, StatusMessage
from gateway.exchange.xmldsig import EXC_C14N, sign_bytes
from gateway.store import StoreUnavailable

from .factories import (
    NGHE_AN,
    STATUS_DOCUMENT_ID,
    TAY_NINH_STC,
    TU_PHAP,
    chunks,
    cong_van_header,
    signed_status,
    trace_for,
)


async def _count(hub: DocumentHub, table: str) -> int:
    return len(await hub.store.read(lambda tx: tx.all(f"documents.count_{table}")))


async def test_concurrent_duplicates_store_one_document(
    hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    data = make_package(to=(NGHE_AN, TU_PHAP))
    results = await asyncio.gather(
        *(hub.receive(chunks(data), sender=TAY_NINH_STC, subsystem="s") for _ in range(4))
    )
    assert len({r.id for r in results}) == 1
    assert len({r.receipt for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert await _count(hub, "documents") == 1
    assert await _count(hub, "document_deliveries") == 2


async def test_update_of_unknown_document_keeps_nothing(
    hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    with pytest.raises(UnknownDocument):
        await hub.receive(chunks(make_package(doc_type=2)), sender=TAY_NINH_STC, subsystem="s")
    assert await _count(hub, "documents") == 0
    assert (
        not list((hub.blobs.root / "sha256").rglob("*"))
        if (hub.blobs.root / "sha256").exists()
        else True
    )
    assert not list(hub.blobs.tmp_dir.iterdir())


async def test_revoke_skips_recipients_whose_chain_is_closed(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    doc = (
        await hub.receive(
            chunks(make_package(to=(NGHE_AN, TU_PHAP))), sender=TAY_NINH_STC, subsystem="s"
        )
    ).id
    for who, codes in ((NGHE_AN, ("01", "02")), (TU_PHAP, ("01", "03"))):
        await hub.fetch(doc, who, subsystem="s")
        for code in codes:
            await hub.record_status(
                doc, chunks(signed_status(key, who, code)), sender=who, subsystem="s"
            )
    await hub.receive(
        chunks(make_package(to=(NGHE_AN, TU_PHAP), doc_type=1)), sender=TAY_NINH_STC, subsystem="s"
    )
    view = await hub.statuses(doc, TAY_NINH_STC)
    history = {r["recipient"]: [h["code"] for h in r["history"]] for r in view["recipients"]}
    assert history == {NGHE_AN: ["01", "02"], TU_PHAP: ["01", "03", "13"]}


async def test_a_revoke_asks_only_the_recipients_it_goes_to(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    """A recipient the revoke is not addressed to never receives it: asking it to answer a
    recall (13) would leave it stuck, every later status refused until it answers."""
    doc = (
        await hub.receive(
            chunks(make_package(to=(NGHE_AN, TU_PHAP))), sender=TAY_NINH_STC, subsystem="s"
        )
    ).id
    for who in (NGHE_AN, TU_PHAP):
        await hub.fetch(doc, who, subsystem="s")
        await hub.record_status(
            doc, chunks(signed_status(key, who, "01")), sender=who, subsystem="s"
        )
    await hub.receive(
        chunks(make_package(to=(NGHE_AN,), doc_type=1)), sender=TAY_NINH_STC, subsystem="s"
    )
    view = await hub.statuses(doc, TAY_NINH_STC)
    history = {r["recipient"]: [h["code"] for h in r["history"]] for r in view["recipients"]}
    assert history == {NGHE_AN: ["01", "13"], TU_PHAP: ["01"]}
    # The one not asked goes on as before.
    await hub.record_status(
        doc, chunks(signed_status(key, TU_PHAP, "03")), sender=TU_PHAP, subsystem="s"
    )


async def test_a_revoke_to_an_agency_the_original_did_not_go_to_is_refused(
    hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    with pytest.raises(InvalidEdxml, match=r"was not sent to 000\.00\.00\.G15") as refused:
        await hub.receive(
            chunks(make_package(to=(NGHE_AN, TU_PHAP), doc_type=1)),
            sender=TAY_NINH_STC,
            subsystem="s",
        )
    assert refused.value.extra == {"field": "MessageHeader/To"}
    assert await _count(hub, "documents") == 1  # nothing of the revoke kept
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [r["history"] for r in view["recipients"]] == [[]]


async def test_a_status_must_not_be_dated_ahead_or_before_the_last(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    """The sender reads the times back as the document's course: a status stamped years ahead,
    or before the one it follows, would tell it something that did not happen."""
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    now = datetime.now(UTC)

    async def send(code: str, at: datetime) -> dict[str, Any]:
        message = signed_status(key, NGHE_AN, code, at=at)
        return await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")

    with pytest.raises(InvalidEdxml, match="is in the future") as refused:
        await send("01", now + timedelta(days=2))
    assert refused.value.extra == {"field": "Timestamp"}
    await send("01", now + timedelta(minutes=1))  # a clock a little ahead is no lie
    with pytest.raises(InvalidEdxml, match="is before this recipient's previous status"):
        await send("03", now)
    await send("03", now + timedelta(minutes=1))  # the same instant is not before it
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01", "03"]


async def test_a_status_must_not_be_dated_before_the_document_or_the_recall_it_answers(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by probing: a 03 dated 2001 for a document the hub received that day, and a 16
    dated before the 13 (recall requested) it answers, were recorded, and the sender read them
    back as the document's course. A recipient's clock may lag the hub's by the skew a status
    may run ahead (and a status has whole seconds where the hub's 13 has microseconds)."""
    from gateway.exchange import hub as hub_module

    now = datetime.now(UTC)
    clock = [now - timedelta(hours=1)]  # the hub's clock: the document came an hour ago
    monkeypatch.setattr(hub_module, "_now", lambda: clock[0])
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    received = clock[0]

    async def send(code: str, at: datetime) -> None:
        message = signed_status(key, NGHE_AN, code, at=at)
        await hub.record_status(doc, chunks(message), sender=NGHE_AN, subsystem="s")

    for early in (datetime(2001, 1, 1, tzinfo=VN_TZ), received - timedelta(minutes=6)):
        with pytest.raises(InvalidEdxml, match="is before the hub received the document") as no:
            await send("01", early)
        assert no.value.extra == {"field": "Timestamp"}
    await send("01", received - timedelta(minutes=4))  # a recipient's clock a little behind
    clock[0] = now  # an hour later the sender revokes it: 13, at the hub's time
    await hub.receive(chunks(make_package(doc_type=1)), sender=TAY_NINH_STC, subsystem="s")
    with pytest.raises(InvalidEdxml, match=r"is before the recall \(13\) it answers") as no:
        await send("16", now - timedelta(minutes=30))  # after the 01, before the 13
    assert no.value.extra == {"field": "Timestamp"}
    await send("16", now - timedelta(minutes=4))
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01", "13", "16"]


async def test_inbox_pages_with_a_cursor(
    hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    ids = [
        (
            await hub.receive(
                chunks(make_package(number=str(n))), sender=TAY_NINH_STC, subsystem="s"
            )
        ).id
        for n in range(5)
    ]
    first = await hub.inbox(NGHE_AN, limit=2)
    second = await hub.inbox(NGHE_AN, after=int(first["next"]), limit=2)
    third = await hub.inbox(NGHE_AN, after=int(second["next"]), limit=2)
    assert [i["id"] for i in first["items"] + second["items"] + third["items"]] == ids
    # A next page is named only when more follow: not after the last, short or full.
    assert third["next"] is None
    assert (await hub.inbox(NGHE_AN, after=int(second["next"]), limit=1))["next"] is None
    assert (await hub.inbox(TU_PHAP))["items"] == []
    with pytest.raises(NotDelivered):  # an ack stands for a delivery: fetched (or pushed) first
        await hub.ack(ids[0], NGHE_AN, subsystem="s")
    await hub.fetch(ids[0], NGHE_AN, subsystem="s")
    await hub.ack(ids[0], NGHE_AN, subsystem="s")
    assert [i["id"] for i in (await hub.inbox(NGHE_AN))["items"]] == ids[1:]
    with pytest.raises(UnknownDocument):
        await hub.ack(ids[0], TU_PHAP, subsystem="s")


async def test_sweep_deletes_the_blobs_of_an_intake_whose_transaction_failed(
    hub: DocumentHub, make_package: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    # The same attachment in another package, whose transaction fails (the database gone):
    # its blobs were adopted just before, and no row names them.
    failed = make_package(number="2492")
    transact = hub.store.transact

    async def unavailable(work: Any) -> Any:
        raise StoreUnavailable("disk I/O error")

    monkeypatch.setattr(hub.store, "transact", unavailable)
    with pytest.raises(StoreUnavailable):
        await hub.receive(chunks(failed), sender=TAY_NINH_STC, subsystem="s")
    monkeypatch.setattr(hub.store, "transact", transact)
    root = hub.blobs.root / "sha256"
    before = {p.name for p in root.glob("*/*/*")}
    named = {
        d
        for d in before
        if await hub.store.read(lambda tx, d=d: tx.one("documents.blob_named", sha256=d))
    }
    orphans = before - named
    assert len(named) == 3 and len(orphans) == 2  # package + forwarded copy; the PDF is shared

    assert await hub.sweep() == []  # nothing is old yet
    old = time.time() - 2 * 86400
    for path in root.glob("*/*/*"):
        os.utime(path, (old, old))
    assert sorted(await hub.sweep()) == sorted(orphans)
    assert {p.name for p in root.glob("*/*/*")} == named
    doc = await hub.fetch(kept.id, NGHE_AN, subsystem="s")
    assert hub.blobs.read(doc["forward_sha256"]).startswith(b"<?xml")
    # The failed package sent again is taken, and its blobs are back.
    again = await hub.receive(chunks(failed), sender=TAY_NINH_STC, subsystem="s")
    assert not again.duplicate
    after = {p.name for p in root.glob("*/*/*")}
    # The package's own blob is the same; its forwarded copy is made anew (its TraceHeader's
    # time may have moved on a second), so only the count is compared for that one.
    assert hashlib.sha256(failed).hexdigest() in after and named <= after
    assert len(after) == len(before)


@pytest.mark.interop
async def test_a_weak_signature_is_accepted_and_shown_as_weak(
    hub: DocumentHub, make_package: Callable[..., bytes], pki: Any, tmp_path: Path
) -> None:
    """spec/edxml.md: older packages carry RSA-SHA1 and SHA-1 digests; verify them, flag them as
    weak. The flags were kept in the row's meta, which no answer showed."""
    if shutil.which("xmlsec1") is None:
        pytest.fail("xmlsec1 is one of the project's tools (make tools)")
    # Nghệ An's key is RSA (an RSA-SHA1 signature needs one), to Tây Ninh's department.
    root = etree.fromstring(make_package(sender=NGHE_AN, to=(TAY_NINH_STC,), signed=False))
    ds = f"{{{DS_NS}}}"
    sig = etree.SubElement(next(root.iter(SIGNATURE_PARENT)), ds + "Signature", nsmap={"ds": DS_NS})
    si = etree.SubElement(sig, ds + "SignedInfo")
    etree.SubElement(si, ds + "CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(si, ds + "SignatureMethod", Algorithm=DS_NS + "rsa-sha1")
    ref = etree.SubElement(si, ds + "Reference", URI="")
    transforms = etree.SubElement(ref, ds + "Transforms")
    etree.SubElement(transforms, ds + "Transform", Algorithm=DS_NS + "enveloped-signature")
    etree.SubElement(transforms, ds + "Transform", Algorithm=EXC_C14N)
    etree.SubElement(ref, ds + "DigestMethod", Algorithm=DS_NS + "sha1")
    etree.SubElement(ref, ds + "DigestValue")
    etree.SubElement(sig, ds + "SignatureValue")
    x509 = etree.SubElement(etree.SubElement(sig, ds + "KeyInfo"), ds + "X509Data")
    etree.SubElement(x509, ds + "X509Certificate")
    etree.SubElement(x509, ds + "X509Certificate")
    template, signed = tmp_path / "template.xml", tmp_path / "signed.xml"
    template.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    agency = f"agency-{NGHE_AN}"
    pem = f"{pki.key_path(agency)},{pki.cert_path(agency)},{pki.intermediate_pem}"
    done = await asyncio.to_thread(
        subprocess.run,
        ["xmlsec1", "--sign", "--privkey-pem", pem, "--output", str(signed), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = (await hub.receive(chunks(signed.read_bytes()), sender=NGHE_AN, subsystem="s")).id
    for who in (NGHE_AN, TAY_NINH_STC):  # the sender and the recipient both see it
        view = await hub.statuses(doc, who)
        assert view["signature"] == {
            "signer": agency,
            "weaknesses": ["SHA-1 digest", "RSA-SHA1 signature"],
        }


def _c14n(data: bytes) -> bytes:
    """What the envelope signature covers (exclusive C14N of the document, comments left out)."""
    return bytes(
        etree.tostring(etree.fromstring(data), method="c14n", exclusive=True, with_comments=False)
    )


async def test_a_comment_inside_a_signed_revoke_cannot_redirect_it_to_another_document(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    """The signature leaves comments out, so ``2102/STC<!---->-BCTC`` verifies as the signed
    ``2102/STC-BCTC``; the hub read only the text before the comment, ``2102/STC``, and recorded
    the recall (13) on that other document. A package with text split so is refused."""
    short = replace(
        cong_van_header(number="2102"),
        document_id=f"{TAY_NINH_STC},2020/10/30,2102/STC",
        code=Code("2102", "STC"),
    )
    other = sign_bytes(build_package(short, trace_for(short)), key(TAY_NINH_STC))
    other_id = (await hub.receive(chunks(other), sender=TAY_NINH_STC, subsystem="s")).id
    signed_for = (
        await hub.receive(chunks(make_package(number="2102")), sender=TAY_NINH_STC, subsystem="s")
    ).id
    for doc in (other_id, signed_for):
        await hub.fetch(doc, NGHE_AN, subsystem="s")

    revoke = make_package(number="2102", doc_type=1)
    target = f"<edXML:DocumentId>{TAY_NINH_STC},2020/10/30,2102/STC-BCTC</edXML:DocumentId>"
    business = revoke.index(b"<edXML:Bussiness>")
    at = revoke.index(target.encode(), business)
    tampered = (
        revoke[:at] + target.replace("/STC-", "/STC<!---->-").encode() + revoke[at + len(target) :]
    )
    assert _c14n(tampered) == _c14n(revoke)  # the signature still holds
    with pytest.raises(InvalidEdxml, match="comment") as refused:
        await hub.receive(chunks(tampered), sender=TAY_NINH_STC, subsystem="s")
    assert refused.value.extra == {"field": "DocumentId"}
    for doc in (other_id, signed_for):
        view = await hub.statuses(doc, TAY_NINH_STC)
        assert [r["history"] for r in view["recipients"]] == [[]]

    # The revoke as signed reaches the document it names, and only that one.
    await hub.receive(chunks(revoke), sender=TAY_NINH_STC, subsystem="s")
    history = {
        doc: [
            h["code"] for h in (await hub.statuses(doc, TAY_NINH_STC))["recipients"][0]["history"]
        ]
        for doc in (other_id, signed_for)
    }
    assert history == {other_id: [], signed_for: ["13"]}


async def test_a_status_whose_text_a_comment_splits_is_refused(
    hub: DocumentHub, make_package: Callable[..., bytes], key: Callable[[str], Any]
) -> None:
    """The same for a status message: its Description was read as the text before the comment
    (``Da tiep nhan``) and recorded so. A comment between elements stays harmless."""
    doc = (await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")).id
    await hub.fetch(doc, NGHE_AN, subsystem="s")
    message = StatusMessage(
        Organization(NGHE_AN),
        ResponseFor(TAY_NINH_STC, "2491/STC-BCTC", date(2020, 10, 30), STATUS_DOCUMENT_ID),
        "01",
        datetime.now(VN_TZ),
        description="Da tiep nhan, chuyen xu ly",
    )
    signed = sign_bytes(build_status(message), key(NGHE_AN))
    whole = b">Da tiep nhan, chuyen xu ly<"
    assert signed.count(whole) == 1
    with pytest.raises(InvalidEdxml, match="Description"):
        await hub.record_status(
            doc,
            chunks(signed.replace(whole, b">Da tiep nhan<!---->, chuyen xu ly<")),
            sender=NGHE_AN,
            subsystem="s",
        )
    between = signed.replace(b"<edXML:StatusCode>", b"<!-- ghi chu --><edXML:StatusCode>")
    assert between != signed
    await hub.record_status(doc, chunks(between), sender=NGHE_AN, subsystem="s")
    view = await hub.statuses(doc, TAY_NINH_STC)
    assert [(h["code"], h["description"]) for h in view["recipients"][0]["history"]] == [
        ("01", "Da tiep nhan, chuyen xu ly")
    ]


async def test_a_hub_whose_certificate_expired_keeps_nothing_and_says_so(
    hub: DocumentHub, make_package: Callable[..., bytes], pki: Any
) -> None:
    """A receipt signed with a certificate expired since the gateway started is refused by the
    sender who checks it (and a failing token was a 500): the package is refused, 503, and
    nothing of it is kept."""
    hub.signer = pki.key("expired")
    with pytest.raises(ReceiptUnsigned, match="certificate expired") as refused:
        await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    assert (refused.value.status, refused.value.slug) == (503, "documents-unavailable")
    assert await _count(hub, "documents") == 0
    assert list((hub.blobs.root / "sha256").glob("*/*/*")) == []
