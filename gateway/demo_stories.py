"""The demo's two shorter stories: agencies exchanging a signed official document through the hub,
and an auditor exporting and checking evidence offline. Each returns what it showed, for the summary.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.audit.bundle import Scope, build_bundle
from gateway.audit.verify import verify_bundle, verify_log
from gateway.exchange.builder import NewAttachment, build_package, build_status
from gateway.exchange.model import (
    VN_TZ,
    Business,
    Code,
    DocumentType,
    MessageHeader,
    Organization,
    PromulgationInfo,
    ResponseFor,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
)
from gateway.exchange.xmldsig import sign_bytes
from signing.files import write_private
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf

__all__ = ["AGENCIES", "evidence_story", "exchange_story"]

STC, UBND = "000.00.11.H53", "000.00.00.H41"
AGENCIES = {
    STC: ("Sở Tài chính tỉnh Tây Ninh", "demo-stc-vanban-token"),
    UBND: ("Ủy ban nhân dân tỉnh Nghệ An", "demo-ubnd-vanban-token"),
}


def _auth(agency: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {AGENCIES[agency][1]}", **extra}


def _package(
    pki: TestPKI, pdf: bytes, today: date, signer: str = f"agency-{STC}"
) -> tuple[bytes, str]:
    document_id = f"{STC},{today:%Y/%m/%d},2491/STC-BCTC"
    header = MessageHeader(
        from_=Organization(STC, AGENCIES[STC][0]),
        to=(Organization(UBND, AGENCIES[UBND][0]),),
        document_id=document_id,
        code=Code("2491", "STC-BCTC"),
        promulgation_info=PromulgationInfo("Tây Ninh", today),
        document_type=DocumentType(1, "Công văn"),
        subject="V/v báo cáo tình hình thực hiện dự toán ngân sách nhà nước năm 2026",
    )
    trace = TraceHeaderList((TraceHeader(STC, datetime.now(UTC)),), Business(document_id, 0))
    package = build_package(header, trace, [NewAttachment("bao-cao.pdf", pdf)])
    return sign_bytes(package, pki.key(signer)), document_id


def _status(pki: TestPKI, document_id: str, code: str, note: str) -> bytes:
    msg = StatusMessage(
        from_=Organization(UBND, AGENCIES[UBND][0]),
        response_for=ResponseFor(STC, "2491/STC-BCTC", None, document_id),
        status_code=code,
        timestamp=datetime.now(VN_TZ),
        description=note,
        staff_info=StaffInfo("Văn phòng UBND tỉnh", "Lê Văn Minh"),
    )
    return sign_bytes(build_status(msg), pki.key(f"agency-{UBND}"))


async def exchange_story(
    http: aiohttp.ClientSession, base: str, pki: TestPKI, out: Path
) -> dict[str, Any]:
    """Tây Ninh's Finance Department sends a signed Công văn (with a PAdES-signed PDF) to Nghệ An's
    People's Committee, which pulls it, acknowledges it and reports its handling back."""
    pdf = await sign_pdf(sample_pdf(), pki.key(f"agency-{STC}"))
    package, document_id = await asyncio.to_thread(_package, pki, pdf, datetime.now(VN_TZ).date())
    xml = {"Content-Type": "application/xml"}
    async with http.post(base + "/v1/documents", data=package, headers=_auth(STC, **xml)) as r:
        receipt = await r.read()
        sent = r.status
    async with http.post(base + "/v1/documents", data=package, headers=_auth(STC, **xml)) as r:
        duplicate = (r.status, r.headers.get("X-Lienthong-Duplicate"))
    async with http.get(base + "/v1/documents/inbox", headers=_auth(UBND)) as r:
        items = (await r.json())["items"]
    doc_id = items[0]["id"]
    async with http.get(f"{base}/v1/documents/{doc_id}", headers=_auth(UBND)) as r:
        received = await r.read()
    async with http.post(f"{base}/v1/documents/{doc_id}/ack", headers=_auth(UBND)) as r:
        acked = r.status
    codes = []
    for code, note in (("03", "Đã tiếp nhận, vào sổ"), ("05", "Đang xử lý"), ("06", "Hoàn thành")):
        status = await asyncio.to_thread(_status, pki, document_id, code, note)
        async with http.post(
            f"{base}/v1/documents/{doc_id}/status", data=status, headers=_auth(UBND, **xml)
        ) as r:
            codes.append((code, r.status))
    backwards = await asyncio.to_thread(_status, pki, document_id, "04", "lùi trạng thái")
    async with http.post(
        f"{base}/v1/documents/{doc_id}/status", data=backwards, headers=_auth(UBND, **xml)
    ) as r:
        refused = (r.status, (await r.json()).get("type"))
    async with http.get(f"{base}/v1/documents/{doc_id}/status", headers=_auth(STC)) as r:
        history = await r.json()
    art = out / "artifacts"
    await asyncio.to_thread(art.mkdir, exist_ok=True)
    await asyncio.to_thread((art / "cong-van-2491.edxml").write_bytes, package)
    await asyncio.to_thread((art / "cong-van-2491.receipt.xml").write_bytes, receipt)
    return {
        "document": document_id,
        "sent": sent,
        "duplicate": duplicate,
        "received_bytes": len(received),
        "acked": acked,
        "statuses": codes,
        "backwards_status": refused,
        "sender_sees": history,
    }


async def evidence_story(runtime: Any, code: str, trust_pem: Path, out: Path) -> dict[str, Any]:
    """An auditor's view: checkpoint the log, verify all of it, export a dossier's evidence and
    check that bundle offline against nothing but the root certificate."""
    checkpointer = runtime.extras["checkpointer"]
    await checkpointer.checkpoint_now()
    signing = runtime.extras["signing"]
    # The auditor pins the gateway's audit key (its published certificate) and the log's name: a
    # checkpoint signed by any other key under the same root proves nothing.
    pins = {"signers": [signing.signer.certificate], "origin": runtime.settings.audit.origin}
    log = await verify_log(runtime.store, signing.trust, **pins)
    bundle = await build_bundle(runtime.store, Scope(dossier=code))
    path = out / "artifacts" / f"evidence-{code}.zip"
    signer_pem = out / "artifacts" / "audit-signer.pem"
    await asyncio.to_thread(write_private, path, bundle)  # the owner's alone, as the store
    await asyncio.to_thread(
        signer_pem.write_bytes, signing.signer.certificate.public_bytes(Encoding.PEM)
    )
    report = await verify_bundle(bundle, [trust_pem], **pins)
    return {
        "log": log.describe(),
        "log_ok": log.ok,
        "checkpoints": log.checkpoints,
        "bundle": str(path),
        "signer": str(signer_pem),
        "bundle_ok": report.ok,
        "bundle_report": report.describe(),
    }
