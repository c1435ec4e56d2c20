"""Bad input found by fuzzing the document endpoints: refused with its own error, nothing kept."""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lxml import etree

from gateway.api.documents import _Base64
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.edxml import q
from gateway.exchange.errors import ForgedSender, InvalidEdxml, SignatureInvalid, UnknownDocument
from gateway.exchange.hub import DocumentHub, IncomingPart
from gateway.exchange.receipt import read_receipt
from gateway.exchange.xmldsig import sign_bytes
from signing.pdf import sign_pdf
from signing.testing import sample_pdf

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


def _blobs(hub: DocumentHub) -> set[str]:
    return {p.name for p in (hub.blobs.root / "sha256").glob("*/*/*")}


async def _statuses(hub: DocumentHub) -> int:
    return len(await hub.store.read(lambda tx: tx.all("documents.count_document_statuses")))


@pytest.mark.parametrize(
    ("who", "organ_id", "doc", "error", "field"),
    [
        (NGHE_AN, NGHE_AN, STATUS_DOCUMENT_ID, InvalidEdxml, "ResponseFor/OrganId"),  # itself
        (
            NGHE_AN,
            TU_PHAP,
            STATUS_DOCUMENT_ID,
            InvalidEdxml,
            "ResponseFor/OrganId",
        ),  # a third agency
        (NGHE_AN, TAY_NINH_STC, STATUS_DOCUMENT_ID + "x", InvalidEdxml, "ResponseFor/DocumentId"),
        # Not a recipient: told nothing more, whatever its ResponseFor says.
        (TU_PHAP, TU_PHAP, STATUS_DOCUMENT_ID + "x", UnknownDocument, None),
    ],
)
async def test_status_for_another_document_is_refused_and_keeps_nothing(
    hub: DocumentHub,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
    who: str,
    organ_id: str,
    doc: str,
    error: type[Exception],
    field: str | None,
) -> None:
    accepted = await hub.receive(chunks(make_package()), sender=TAY_NINH_STC, subsystem="s")
    await hub.fetch(accepted.id, NGHE_AN, subsystem="s")
    blobs = _blobs(hub)
    with pytest.raises(error) as refused:
        await hub.record_status(
            accepted.id,
            chunks(signed_status(key, who, organ_id=organ_id, doc=doc)),
            sender=who,
            subsystem="s",
        )
    if field is not None:
        assert isinstance(refused.value, InvalidEdxml) and refused.value.extra["field"] == field
        assert refused.value.status == 400 and refused.value.slug == "invalid-edxml"
    else:
        assert TAY_NINH_STC not in str(refused.value) and STATUS_DOCUMENT_ID not in str(
            refused.value
        )
    assert await _statuses(hub) == 0
    assert _blobs(hub) == blobs  # the refused message's blob was never kept
    assert not list(hub.blobs.tmp_dir.iterdir())
    view = await hub.statuses(accepted.id, TAY_NINH_STC)
    assert view["recipients"][0]["history"] == []
    # The right answer is taken.
    result = await hub.record_status(
        accepted.id, chunks(signed_status(key, NGHE_AN)), sender=NGHE_AN, subsystem="s"
    )
    assert result == {"recipient": NGHE_AN, "history": ["01"]}


def _decode(chunks: list[bytes]) -> bytes:
    decoder = _Base64()
    out = b"".join(decoder.feed(c) for c in chunks)
    decoder.close()
    return out


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_base64_decodes_the_same_however_it_is_cut() -> None:
    rng = random.Random(2491)
    for size in (0, 1, 2, 3, 4, 5, 57, 58, 1000):
        data = rng.randbytes(size)
        text = base64.encodebytes(data).replace(b"\n", b"\r\n")  # MIME lines of 76
        for _ in range(20):
            assert _decode(_split(text, rng) if len(text) > 1 else [text]) == data


@pytest.mark.parametrize(
    "text",
    [
        b"!!!notbase64",
        b"aGk",  # a cut quartet
        b"aGk=aGk=",  # data after the padding
        b"aGk=\r\n\r\naGk=",
        b"aGVsbG8*d29ybGQ=",  # a byte outside the alphabet
        b"=aGk",
    ],
)
def test_base64_refuses_what_is_not_base64(text: bytes) -> None:
    rng = random.Random(len(text))
    for pieces in ([text], _split(text, rng), [bytes([b]) for b in text]):
        with pytest.raises(binascii.Error):
            _decode(pieces)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(
    "content_type",
    ["application/pdf", "application/pdf; name=evil.exe", " Application/PDF ", "application/pdf;"],
)
async def test_a_part_said_to_be_a_pdf_is_checked_as_one_whatever_its_parameters(
    hub: DocumentHub, key: Callable[[str], Any], content_type: str
) -> None:
    # The check that lets a MIME part in (only a signed PDF may come outside the envelope) and
    # the one that verifies PDFs read its type alike: none of these is let in unverified.
    header = cong_van_header()
    root = etree.fromstring(
        build_package(header, trace_for(header), [NewAttachment("evil.exe", b"x")])
    )
    cid = str(root.findtext(f".//{q('Reference')}/{q('ContentId')}"))
    root.remove(root.find(q("AttachmentEncoded")))  # the manifest names the part, as it must
    envelope = sign_bytes(etree.tostring(root, encoding="UTF-8"), key(TAY_NINH_STC))

    async def parts() -> AsyncIterator[IncomingPart]:
        yield IncomingPart(cid, "evil.exe", content_type, _one(b"MZ not a pdf, not signed"))

    blobs = _blobs(hub)
    with pytest.raises(SignatureInvalid, match=r"evil\.exe"):
        await hub.receive(
            chunks(envelope),
            sender=TAY_NINH_STC,
            subsystem="s",
            parts=parts(),
        )
    assert _blobs(hub) == blobs


async def test_an_embedded_attachment_the_manifest_does_not_list_is_refused(
    hub: DocumentHub, key: Callable[[str], Any], signed_pdf: bytes
) -> None:
    """The manifest is the document's list of parts, which recipients file: an attachment it
    does not list reached them unannounced (and unnamed in the receipt)."""
    header = cong_van_header()
    hidden = [NewAttachment("cv.pdf", signed_pdf), NewAttachment("hidden.exe", b"MZ")]
    root = etree.fromstring(build_package(header, trace_for(header), hidden))
    manifest = root.find(f".//{q('edXMLManifest')}")
    listed = manifest.findall(q("Reference"))
    manifest.remove(listed[1])  # the exe's Reference; its Attachment stays
    package = sign_bytes(etree.tostring(root, encoding="UTF-8"), key(TAY_NINH_STC))
    blobs = _blobs(hub)
    with pytest.raises(InvalidEdxml, match=r"\(hidden\.exe\) is not listed") as refused:
        await hub.receive(chunks(package), sender=TAY_NINH_STC, subsystem="s")
    assert refused.value.extra["field"] == "Reference"
    assert _blobs(hub) == blobs


async def test_a_part_must_be_signed_by_its_sender_not_by_any_trusted_signer(
    hub: DocumentHub, key: Callable[[str], Any], signed_pdf: bytes
) -> None:
    """A MIME part travels outside the signed envelope and the manifest carries no digest of it:
    anyone on the way could put in its place any PDF signed by anyone the hub trusts (another
    agency's decision), and it was forwarded as the sender's attachment. 403 forged-sender, as
    for an envelope signed by another agency."""
    header = cong_van_header()
    root = etree.fromstring(
        build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", b"%PDF-")])
    )
    cid = str(root.findtext(f".//{q('Reference')}/{q('ContentId')}"))
    root.remove(root.find(q("AttachmentEncoded")))
    envelope = sign_bytes(etree.tostring(root, encoding="UTF-8"), key(TAY_NINH_STC))
    by_justice = await sign_pdf(sample_pdf("Quyet dinh cua Bo Tu phap"), key(TU_PHAP))

    def parts(pdf: bytes) -> AsyncIterator[IncomingPart]:
        async def one() -> AsyncIterator[IncomingPart]:
            yield IncomingPart(cid, "cong-van.pdf", "application/pdf", _one(pdf))

        return one()

    blobs = _blobs(hub)
    with pytest.raises(ForgedSender, match=r"cong-van\.pdf is signed by agency-000\.00\.00\.G15"):
        await hub.receive(
            chunks(envelope), sender=TAY_NINH_STC, subsystem="s", parts=parts(by_justice)
        )
    assert _blobs(hub) == blobs
    # The sender's own signed PDF in the same place is accepted; so is one the sender signed
    # besides another agency (a document issued jointly): one of its signatures is the sender's.
    accepted = await hub.receive(
        chunks(envelope), sender=TAY_NINH_STC, subsystem="s", parts=parts(signed_pdf)
    )
    assert [a.name for a in read_receipt(accepted.receipt).attachments] == ["cong-van.pdf"]
    jointly = await sign_pdf(by_justice, key(TAY_NINH_STC))
    other = sign_bytes(  # another number: another document
        etree.tostring(root, encoding="UTF-8").replace(b"2491", b"2492"), key(TAY_NINH_STC)
    )
    await hub.receive(chunks(other), sender=TAY_NINH_STC, subsystem="s", parts=parts(jointly))


@pytest.mark.parametrize("change", ["no-list", "empty-list", "another-agencys"])
async def test_a_package_without_its_senders_trace_header_is_refused(
    hub: DocumentHub, key: Callable[[str], Any], signed_pdf: bytes, change: str
) -> None:
    """Found by probing: with no TraceHeaderList (or an empty one) the package was forwarded
    with no TraceHeader of the hub's, which edXML says every system that handles it appends —
    its sender first; nor may the only one name another agency."""
    header = cong_van_header()
    root = etree.fromstring(
        build_package(header, trace_for(header), [NewAttachment("cv.pdf", signed_pdf)])
    )
    trace_list = root.find(f".//{q('TraceHeaderList')}")
    if change == "no-list":
        trace_list.getparent().remove(trace_list)
    for th in trace_list.findall(q("TraceHeader")):
        if change == "empty-list":
            trace_list.remove(th)
        else:
            th.find(q("OrganId")).text = NGHE_AN
    package = sign_bytes(etree.tostring(root, encoding="UTF-8"), key(TAY_NINH_STC))
    blobs = _blobs(hub)
    with pytest.raises(
        InvalidEdxml, match="the package has no TraceHeader of its sender"
    ) as refused:
        await hub.receive(chunks(package), sender=TAY_NINH_STC, subsystem="s")
    assert refused.value.extra["field"] == "TraceHeaderList"
    assert _blobs(hub) == blobs
