"""An attachment's name is its signed manifest Reference's AttachmentName, whichever way it
travels. A multipart part's file name (its Content-Disposition) is covered by no signature: one
named ``../../../etc/cron.d/x.pdf`` beside a manifest saying ``cong-van.pdf`` was forwarded, and
put in the signed receipt, under that name, where an embedded Attachment so named is refused.
And no attachment is named with a path (recipients file attachments by name)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.receipt import read_receipt
from gateway.exchange.xmldsig import sign_bytes
from signing.testing import TestPKI
from tests.e2e.test_documents import PROBLEM, Hub, running_hub

from .factories import NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for
from .test_api_refusals import _envelope_without_attachments, _related


@pytest.fixture
async def served(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _embedded(pki: TestPKI, pdf: bytes, number: str, name: str) -> bytes:
    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), number)
    data = build_package(header, trace_for(header), [NewAttachment(name, pdf)])
    return sign_bytes(data, pki.key(f"agency-{TAY_NINH_STC}"))


async def _post(hub: Hub, w: aiohttp.MultipartWriter) -> aiohttp.ClientResponse:
    return await hub.http.post(hub.url + "/v1/documents", data=w, headers=hub.h(TAY_NINH_STC))


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../../etc/cron.d/x.pdf"',
        'attachment; filename="cong-van-khac.pdf"',
        "attachment; filename*=UTF-8''C%C3%B4ng%20v%C4%83n.pdf",
        'attachment; filename="Cong-van.pdf"',
    ],
)
async def test_a_part_named_otherwise_than_its_manifest_reference_is_refused(
    served: Hub, pki: TestPKI, signed_pdf: bytes, disposition: str
) -> None:
    hub = served
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3201")
    before = await hub.store_counts()
    async with await _post(
        hub, _related(envelope, (cid, signed_pdf), disposition=disposition)
    ) as r:
        assert r.status == 400, (await r.text())[:300]
        body = await r.json(content_type=None)
    assert body["type"] == PROBLEM + "invalid-edxml", body
    assert body["content_id"] == cid and body["field"] == "Attachment", body
    assert "its manifest Reference says 'cong-van.pdf'" in body["detail"], body
    assert await hub.store_counts() == before


async def test_a_part_without_a_file_name_takes_its_manifest_reference_s(
    served: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    hub = served
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3202")
    w = aiohttp.MultipartWriter("related")
    w.append(envelope, {"Content-Type": "application/xml", "Content-ID": "<edxml>"})
    w.append(signed_pdf, {"Content-Type": "application/pdf", "Content-ID": f"<{cid}>"})
    async with await _post(hub, w) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
        receipt = read_receipt(await r.read())
    assert [a.name for a in receipt.attachments] == ["cong-van.pdf"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
        raw = f"Content-Type: {r.headers['Content-Type']}\r\n\r\n".encode() + await r.read()
    _, part = email.message_from_bytes(raw, policy=email.policy.default).iter_parts()
    assert part.get_filename() == "cong-van.pdf"


@pytest.mark.parametrize(
    "name", ["../../../etc/cron.d/x.pdf", "thu-muc/cong-van.pdf", "..\\cong-van.pdf", ".."]
)
async def test_an_attachment_name_that_is_a_path_is_refused(
    served: Hub, pki: TestPKI, signed_pdf: bytes, name: str
) -> None:
    """The manifest is signed, but a name that is a path would put the file elsewhere than the
    recipient's folder for the document: refused, embedded or as a part alike."""
    hub = served
    before = await hub.store_counts()
    async with await hub.send(TAY_NINH_STC, _embedded(pki, signed_pdf, "3203", name)) as r:
        assert r.status == 400, (await r.text())[:300]
        body = await r.json(content_type=None)
    assert (body["type"], body["field"]) == (PROBLEM + "invalid-edxml", "AttachmentName"), body
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3204", name)
    quoted = name.replace("\\", "\\\\")
    w = _related(envelope, (cid, signed_pdf), disposition=f'attachment; filename="{quoted}"')
    async with await _post(hub, w) as r:
        assert r.status == 400, (await r.text())[:300]
        body = await r.json(content_type=None)
    assert (body["type"], body["field"]) == (PROBLEM + "invalid-edxml", "AttachmentName"), body
    assert "is a path" in body["detail"], body
    assert await hub.store_counts() == before
