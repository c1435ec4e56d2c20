"""Two agencies exchange edXML documents through a real gateway over real sockets.

Tây Ninh's Finance Department (000.00.11.H53) receives by push (its own HTTP endpoint, which
fails once to exercise the outbox's retry); Nghệ An's People's Committee (000.00.00.H41) and the
Ministry of Justice (000.00.00.G15) pull their inbox. Every refusal is a precise problem+json and
leaves nothing stored: no document row, no delivery, no blob, no audit event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from gateway.app import RUNTIME, Runtime
from gateway.cli import build_app
from gateway.exchange.blobs import BlobWriter
from gateway.exchange.builder import SIGNATURE_PARENT, NewAttachment, build_package, build_status
from gateway.exchange.edxml import q
from gateway.exchange.model import VN_TZ, Organization, ResponseFor, StaffInfo, StatusMessage
from gateway.exchange.receipt import read_receipt
from gateway.exchange.xmldsig import sign_bytes, sign_file
from gateway.problems import STORE_NOTHING_KEPT
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from signing.xml import sign_xml, verify_xml
from tests.e2e.conftest import gateway_config
from tests.exchange.factories import (
    NGHE_AN,
    SAMPLES,
    TAY_NINH_STC,
    TU_PHAP,
    cong_van_header,
    trace_for,
)

TOKENS = {
    TAY_NINH_STC: "t-stc-0123456789",
    NGHE_AN: "t-ubnd-0123456789",
    TU_PHAP: "t-btp-0123456789",
    "outsider": "t-out-0123456789",
}
PROBLEM = "urn:lienthong:problem:"


@dataclass
class AgencyEndpoint:
    """Tây Ninh's own document system: records what the hub pushes; answers 503 the first time."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 1
    calls: int = 0
    failure: int = 503  # how it fails: an HTTP status, or 0 to hang up without an answer

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            if not self.failure:
                assert request.transport is not None
                request.transport.close()
            return web.Response(status=self.failure or 503)
        assert request.headers["Authorization"] == "Bearer push-secret"
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    def kinds(self) -> list[str]:
        return [h["X-Lienthong-Kind"] for h, _ in self.received]


@dataclass
class Hub:
    http: aiohttp.ClientSession
    url: str
    runtime: Runtime
    endpoint: AgencyEndpoint
    blob_dir: Path

    def h(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}", **extra}

    async def send(self, who: str, data: bytes) -> aiohttp.ClientResponse:
        return await self.http.post(
            self.url + "/v1/documents",
            data=data,
            headers=self.h(who, **{"Content-Type": "application/xml"}),
        )

    async def status(self, who: str, doc: str, data: bytes) -> aiohttp.ClientResponse:
        return await self.http.post(
            f"{self.url}/v1/documents/{doc}/status",
            data=data,
            headers=self.h(who, **{"Content-Type": "application/xml"}),
        )

    async def json(self, method: str, path: str, who: str) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=self.h(who)) as r:
            return r.status, await r.json(content_type=None)

    async def store_counts(self) -> dict[str, int]:
        def count(tx: Any) -> dict[str, int]:
            return {
                "documents": _n(tx, "documents"),
                "deliveries": _n(tx, "document_deliveries"),
                "statuses": _n(tx, "document_statuses"),
            }

        counts = await self.runtime.store.read(count)
        counts["blobs"] = (
            sum(1 for p in (self.blob_dir / "sha256").rglob("*") if p.is_file())
            if (self.blob_dir / "sha256").exists()
            else 0
        )
        counts["staged"] = (
            sum(1 for _ in (self.blob_dir / "tmp").iterdir())
            if (self.blob_dir / "tmp").exists()
            else 0
        )
        return counts


def _n(tx: Any, table: str) -> int:
    # Counting through the audit-free path: the store exposes only named queries.
    return len(tx.all(f"documents.count_{table}"))


@asynccontextmanager
async def running_hub(
    tmp_path: Path,
    pki: TestPKI,
    store: dict[str, str] | None = None,
    unlisted: tuple[str, ...] = (),
    push_to: str = "/edoc",
    **gateway: Any,
) -> AsyncIterator[Hub]:
    """The hub with the three agencies' subsystems; ``unlisted`` left out of [[agencies]];
    ``push_to``: Tây Ninh's endpoint on its server (a path, and perhaps a query)."""
    endpoint = AgencyEndpoint()
    receiver = web.Application()
    receiver.router.add_post("/edoc", endpoint.handle)
    agency_server = TestServer(receiver, host="127.0.0.1")
    await agency_server.start_server()
    settings = gateway_config(
        tmp_path,
        pki.directory,
        subsystems=[
            {"id": f"VN:GOV:{a}:vanban", "token": t, "rights": ["documents.exchange"]}
            for a, t in TOKENS.items() if a != "outsider"
        ] + [{"id": "VN:GOV:000.00.00.H29:motcua", "token": TOKENS["outsider"], "rights": ["dossiers.submit"]}],
        agencies=[a for a in [
            {"id": TAY_NINH_STC, "name": "Sở Tài chính Tây Ninh",
             "endpoint": str(agency_server.make_url("")).rstrip("/") + push_to, "token": "push-secret"},
            {"id": NGHE_AN, "name": "UBND tỉnh Nghệ An"},
            {"id": TU_PHAP, "name": "Bộ Tư pháp"},
        ] if a["id"] not in unlisted],
        documents={"blob_dir": str(tmp_path / "blobs")},
        gateway=gateway,
        **({"store": store} if store else {}),
    )  # fmt: skip
    app = build_app(settings)
    runtime = app[RUNTIME]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            url = str(server.make_url("")).rstrip("/")
            yield Hub(http, url, runtime, endpoint, tmp_path / "blobs")
    finally:
        await server.close()
        await agency_server.close()


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI, pki_server: str) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


@pytest.fixture(scope="module")
def stc_pdf(pki: TestPKI) -> bytes:
    return asyncio.run(
        sign_pdf(sample_pdf("Cong van 2491/STC-BCTC"), pki.key(f"agency-{TAY_NINH_STC}"))
    )


def package(
    pki: TestPKI, sender: str, to: tuple[str, ...], pdf: bytes, number: str = "2491", **kw: Any
) -> bytes:
    header = cong_van_header(sender, to, number)
    data = build_package(
        header, trace_for(header, kw.pop("doc_type", 0)), [NewAttachment("cong-van.pdf", pdf)]
    )
    return sign_bytes(data, pki.key(kw.pop("signer", f"agency-{sender}")))


def status_message(pki: TestPKI, who: str, document_id: str, code: str, note: str = "") -> bytes:
    msg = StatusMessage(
        from_=Organization(who),
        response_for=ResponseFor(
            document_id.split(",")[0], document_id.split(",")[-1], date(2020, 10, 30), document_id
        ),
        status_code=code,
        timestamp=datetime.now(VN_TZ),
        description=note or f"Trạng thái {code}",
        staff_info=StaffInfo("Văn phòng", "Lê Văn Minh"),
    )
    return sign_bytes(build_status(msg), pki.key(f"agency-{who}"))


async def _verify_forwarded(hub: Hub, data: bytes) -> list[str]:
    """The hub's own (streaming) verifier on a forwarded copy: who appended TraceHeaders."""
    from gateway.exchange.stream import scan_file
    from gateway.exchange.xmldsig import verify_envelope

    path = hub.blob_dir.parent / f"forwarded-{hashlib.sha256(data).hexdigest()[:12]}.xml"
    await asyncio.to_thread(path.write_bytes, data)
    scan = await asyncio.to_thread(scan_file, path, None)
    result = await verify_envelope(scan, hub.runtime.extras["signing"].trust)
    return result.appended_by


async def eventually(check: Callable[[], Any], what: str, limit: float = 30.0) -> None:
    """Poll a condition (bounded); never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + limit
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_both_directions_with_status_round_trips(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    # -- Tây Ninh → Nghệ An and the Ministry of Justice (both pull) ---------------------------
    data = package(pki, TAY_NINH_STC, (NGHE_AN, TU_PHAP), stc_pdf)
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()
        assert r.content_type == "application/xml"
        receipt_bytes = await r.read()
        doc = r.headers["X-Lienthong-Document"]
        assert r.headers["Location"] == f"/v1/documents/{doc}"
    signed = await verify_xml(receipt_bytes, hub.runtime.extras["signing"].trust)
    assert signed.report.valid and signed.report.signer == "gateway"
    receipt = read_receipt(receipt_bytes)
    assert receipt.document_id == "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    assert receipt.package_sha256 == hashlib.sha256(data).hexdigest()
    assert receipt.attachments[0].sha256 == hashlib.sha256(stc_pdf).hexdigest()
    assert receipt.trace.organ_id == "000.00.00.H41"  # the hub's own id (its registry client id)

    status, inbox = await hub.json("GET", "/v1/documents/inbox", NGHE_AN)
    assert status == 200
    (item,) = inbox["items"]
    assert item["id"] == doc and item["from"] == TAY_NINH_STC and item["size"] == len(data)
    # A status before the recipient has even fetched the package is refused.
    async with await hub.status(
        NGHE_AN, doc, status_message(pki, NGHE_AN, receipt.document_id, "01")
    ) as r:
        assert r.status == 409 and (await r.json())["type"] == PROBLEM + "not-delivered"
    # So is an ack: it stood for a delivery that never happened, and let statuses through.
    status, refused = await hub.json("POST", f"/v1/documents/{doc}/ack", NGHE_AN)
    assert (status, refused["type"]) == (409, PROBLEM + "not-delivered"), refused
    status, seen = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
    (mine,) = [d for d in seen["recipients"] if d["recipient"] == NGHE_AN]
    assert (mine["delivery"], mine["delivered_at"], mine["acked_at"]) == ("pending", None, None)
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200 and r.content_type == "application/xml"
        fetched = await r.read()
    # The forwarded copy carries the hub's TraceHeader after the sender's, nothing else changed.
    hub_trace = b"<edXML:TraceHeader><edXML:OrganId>000.00.00.H41</edXML:OrganId><edXML:Timestamp>"
    at = fetched.index(hub_trace)
    end = fetched.index(b"</edXML:TraceHeader>", at) + len(b"</edXML:TraceHeader>")
    assert fetched[:at] + fetched[end:] == data
    assert await _verify_forwarded(hub, fetched) == ["000.00.00.H41"]
    # The original, byte for byte, verifies with a strict XMLDSig verifier.
    async with hub.http.get(
        f"{hub.url}/v1/documents/{doc}?original=true", headers=hub.h(NGHE_AN)
    ) as r:
        assert await r.read() == data
    assert (
        await verify_xml(data, hub.runtime.extras["signing"].trust)
    ).report.signer == f"agency-{TAY_NINH_STC}"
    status, acked = await hub.json("POST", f"/v1/documents/{doc}/ack", NGHE_AN)
    assert (status, acked["delivery"]) == (200, "acked")
    assert (await hub.json("GET", f"/v1/documents/inbox?after={item['cursor']}", NGHE_AN))[1][
        "items"
    ] == []
    assert (await hub.json("GET", "/v1/documents/inbox", NGHE_AN))[1]["items"] == []

    for code in ("01", "03", "04", "05", "06"):
        message = status_message(pki, NGHE_AN, receipt.document_id, code)
        async with await hub.status(NGHE_AN, doc, message) as r:
            assert r.status == 201, await r.text()
            first = await r.json()
        # The same message again (a retry after a lost reply): answered, not recorded twice,
        # where a new "01" after "01" is a step the chain refuses.
        async with await hub.status(NGHE_AN, doc, message) as r:
            assert (r.status, await r.json()) == (200, first)
    # Out of order: back from 06 to 03 (a new message: the same bytes again would be a retry).
    async with await hub.status(
        NGHE_AN, doc, status_message(pki, NGHE_AN, receipt.document_id, "03", "again")
    ) as r:
        problem = await r.json()
        assert r.status == 409 and r.content_type == "application/problem+json"
        assert problem["type"] == PROBLEM + "status-transition"
        assert (problem["current"], problem["requested"]) == ("06", "03")
        assert problem["request_id"]
    # The Ministry never fetched it; Tây Ninh is not a recipient at all.
    async with await hub.status(
        TU_PHAP, doc, status_message(pki, TU_PHAP, receipt.document_id, "01")
    ) as r:
        assert r.status == 409 and (await r.json())["type"] == PROBLEM + "not-delivered"
    async with await hub.status(
        TAY_NINH_STC, doc, status_message(pki, TAY_NINH_STC, receipt.document_id, "01")
    ) as r:
        assert r.status == 404 and (await r.json())["type"] == PROBLEM + "unknown-document"

    # The sender sees each recipient apart; statuses were pushed back to its endpoint.
    status, view = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
    assert status == 200
    by = {r["recipient"]: r for r in view["recipients"]}
    assert [h["code"] for h in by[NGHE_AN]["history"]] == ["01", "03", "04", "05", "06"]
    assert by[NGHE_AN]["status"] == "06" and by[NGHE_AN]["delivery"] == "acked"
    assert by[TU_PHAP]["history"] == [] and by[TU_PHAP]["delivery"] == "pending"

    async def five_statuses() -> bool:
        return hub.endpoint.kinds().count("status") == 5

    await eventually(five_statuses, "status messages pushed back to Tây Ninh")
    pushed = [b for h, b in hub.endpoint.received if h["X-Lienthong-Kind"] == "status"]
    for body in pushed:
        assert (
            await verify_xml(body, hub.runtime.extras["signing"].trust)
        ).report.signer == f"agency-{NGHE_AN}"
    # A recipient sees only its own line; an outsider sees nothing.
    status, mine = await hub.json("GET", f"/v1/documents/{doc}/status", TU_PHAP)
    assert [r["recipient"] for r in mine["recipients"]] == [TU_PHAP]
    assert (await hub.json("GET", f"/v1/documents/{doc}", "outsider"))[0] == 403

    # -- Nghệ An → Tây Ninh (push, first attempt answered 503, retried by the outbox) ----------
    ubnd_pdf = await sign_pdf(sample_pdf("Cong van 77/UBND-KT"), pki.key(f"agency-{NGHE_AN}"))
    back = package(pki, NGHE_AN, (TAY_NINH_STC,), ubnd_pdf, number="77")
    hub.endpoint.fail_first = hub.endpoint.calls + 1  # the next call (the package push) gets 503
    async with await hub.send(NGHE_AN, back) as r:
        assert r.status == 202, await r.text()
        back_id = r.headers["X-Lienthong-Document"]

    async def pushed_package() -> bool:
        return "edoc" in hub.endpoint.kinds()

    await eventually(pushed_package, "the package pushed to Tây Ninh")
    assert hub.endpoint.calls >= 2  # the 503 was retried
    # Its endpoint's breaker is the gateway's ([outbox] breaker_*), in the circuit-state gauge.
    async with hub.http.get(hub.url + "/metrics") as r:
        gauges = await r.text()
    (stc,) = (a for a in hub.runtime.settings.agencies if a.id == TAY_NINH_STC)
    pushed_to = "/".join(str(stc.endpoint).split("/")[:3])
    assert f'lienthong_circuit_state{{endpoint="documents {pushed_to}"}} 0.0' in gauges
    (package_body,) = [b for h, b in hub.endpoint.received if h["X-Lienthong-Kind"] == "edoc"]
    assert package_body != back and await _verify_forwarded(hub, package_body) == ["000.00.00.H41"]
    document_id = "000.00.00.H41,2020/10/30,77/STC-BCTC"
    for code, expect in (("01", 201), ("02", 201), ("03", 409)):
        async with await hub.status(
            TAY_NINH_STC, back_id, status_message(pki, TAY_NINH_STC, document_id, code)
        ) as r:
            assert r.status == expect, await r.text()
    status, view = await hub.json("GET", f"/v1/documents/{back_id}/status", NGHE_AN)
    (line,) = view["recipients"]
    assert (line["delivery"], line["mode"], line["status"]) == ("acked", "push", "02")
    # Its first push was answered 503 and retried: the error is gone once the push went.
    assert line["attempts"] >= 1 and line["last_error"] is None


@pytest.mark.parametrize(
    ("failure", "said"),
    [(503, "answered 503"), (403, "refused the package with 403"), (0, "ServerDisconnected")],
)
async def test_a_push_endpoints_credentials_are_never_shown_when_a_push_fails(
    tmp_path: Path,
    pki: TestPKI,
    pki_server: str,
    stc_pdf: bytes,
    caplog: pytest.LogCaptureFixture,
    failure: int,
    said: str,
) -> None:
    """Found by probing: an agency endpoint taking its key in the query (``?apikey=…``) was
    quoted whole in each failed push's error: the sender's ``GET …/status`` (another agency),
    the log, and the append-only audit log, where a credential stays for good."""
    key = "PushApiKeyXyz42"
    async with running_hub(tmp_path, pki, push_to=f"/edoc?apikey={key}&v=2") as hub:
        hub.endpoint.fail_first, hub.endpoint.failure = 10**6, failure
        ubnd_pdf = await sign_pdf(sample_pdf("Cong van 77/UBND-KT"), pki.key(f"agency-{NGHE_AN}"))
        with caplog.at_level(logging.INFO):
            async with await hub.send(
                NGHE_AN, package(pki, NGHE_AN, (TAY_NINH_STC,), ubnd_pdf)
            ) as r:
                assert r.status == 202, await r.text()
                doc = r.headers["X-Lienthong-Document"]
            errors: list[str] = []

            async def failed() -> bool:
                _, view = await hub.json("GET", f"/v1/documents/{doc}/status", NGHE_AN)
                errors[:] = [
                    line["last_error"] for line in view["recipients"] if line["last_error"]
                ]
                return bool(errors)

            await eventually(failed, "the push's failure shown to its sender")

            async def audited() -> bool:
                rows = await hub.runtime.store.read(
                    lambda tx: tx.all("audit.range", start=0, stop=1000)
                )
                failures = (b'"step.failed"', b'"job.dead"')
                return any(a in bytes(row["entry"]) for row in rows for a in failures)

            await eventually(audited, "the failed push audited")
        rows = await hub.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=1000))
    [error] = errors
    assert said in error and "/edoc?apikey=***&v=***" in error, error
    assert key not in error
    assert [bytes(row["entry"]) for row in rows if key.encode() in bytes(row["entry"])] == []
    # The agency's own server (this test's) logs its requests; the gateway's lines must not.
    logged = [r for r in caplog.records if r.name != "aiohttp.access"]
    assert [r.getMessage() for r in logged if key in r.getMessage()] == []


async def test_duplicates_reissue_the_receipt_and_deliver_nothing_twice(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
    async with await hub.send(TAY_NINH_STC, data) as r:
        first = await r.read()
        doc = r.headers["X-Lienthong-Document"]
    before = await hub.store_counts()
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202 and r.headers["X-Lienthong-Duplicate"] == "true"
        assert r.headers["X-Lienthong-Document"] == doc
        assert await r.read() == first
    assert await hub.store_counts() == before
    assert len((await hub.json("GET", "/v1/documents/inbox", NGHE_AN))[1]["items"]) == 1
    # Same DocumentId, other content: a conflict, not a silent overwrite.
    other = package(pki, TAY_NINH_STC, (NGHE_AN, TU_PHAP), stc_pdf)
    async with await hub.send(TAY_NINH_STC, other) as r:
        body = await r.json()
        assert (
            r.status == 409 and body["type"] == PROBLEM + "duplicate-conflict" and body["id"] == doc
        )
    assert await hub.store_counts() == before


def _tamper_attachment(data: bytes) -> bytes:
    start = (
        data.index(b"<edXML:ContentTransferEncoded>") + len(b"<edXML:ContentTransferEncoded>") + 200
    )
    flipped = b"B" if data[start : start + 1] != b"B" else b"C"
    return data[:start] + flipped + data[start + 1 :]


@pytest.mark.parametrize(
    ("name", "who", "make", "status", "slug"),
    [
        ("tampered attachment", TAY_NINH_STC, lambda p, pdf: _tamper_attachment(package(p, TAY_NINH_STC, (NGHE_AN,), pdf)), 422, "signature-invalid"),
        ("missing signature", TAY_NINH_STC,
         lambda p, pdf: build_package(cong_van_header(), trace_for(cong_van_header()), [NewAttachment("a.pdf", pdf)]),
         422, "signature-invalid"),
        ("untrusted signer", TAY_NINH_STC, lambda p, pdf: package(p, TAY_NINH_STC, (NGHE_AN,), pdf, signer="expired"), 422, "signature-invalid"),
        ("forged sender", NGHE_AN, lambda p, pdf: package(p, TAY_NINH_STC, (NGHE_AN,), pdf), 403, "forged-sender"),
        ("signed by another agency", TAY_NINH_STC,
         lambda p, pdf: package(p, TAY_NINH_STC, (NGHE_AN,), pdf, signer=f"agency-{NGHE_AN}"), 403, "forged-sender"),
        ("unknown recipient", TAY_NINH_STC, lambda p, pdf: package(p, TAY_NINH_STC, (NGHE_AN, "000.00.00.H99"), pdf), 422, "unknown-recipient"),
        ("doctype", TAY_NINH_STC,
         lambda p, pdf: b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY x SYSTEM "file:///etc/passwd">]><edXML>&x;</edXML>',
         400, "doctype-forbidden"),
        ("not edXML", TAY_NINH_STC, lambda p, pdf: b"<edXML><unclosed></edXML>", 400, "invalid-edxml"),
        ("revoke of an unknown document", TAY_NINH_STC,
         lambda p, pdf: package(p, TAY_NINH_STC, (NGHE_AN,), pdf, number="9999", doc_type=1), 404, "unknown-document"),
    ],
)  # fmt: skip
async def test_refusals_are_precise_and_store_nothing(
    hub: Hub, pki: TestPKI, stc_pdf: bytes, name: str, who: str, make: Any, status: int, slug: str
) -> None:
    before = await hub.store_counts()
    async with await hub.send(who, make(pki, stc_pdf)) as r:
        body = await r.json()
        assert r.status == status, (name, body)
        assert r.content_type == "application/problem+json"
        assert body["type"] == PROBLEM + slug and body["detail"] and body["request_id"], body
    assert await hub.store_counts() == before, name
    audit = await hub.runtime.store.read(lambda tx: tx.all("audit.query", after=-1, start=None, stop=None, member=None,
                                                           service=None, dossier=None, document=None, citizen=None, limit=1000))  # fmt: skip
    assert not [e for e in audit if b"document.accepted" in bytes(e["entry"])]


async def test_oversized_package_is_refused(tmp_path: Path, pki: TestPKI, stc_pdf: bytes) -> None:
    async with running_hub(tmp_path, pki, max_document_bytes=20_000) as hub:
        big = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf + b"%" + b"x" * 30_000)
        async with await hub.send(TAY_NINH_STC, big) as r:
            body = await r.json()
            assert r.status == 413 and body["type"] == PROBLEM + "payload-too-large"
            assert body["max_bytes"] == 20_000

        # Chunked (no Content-Length): the stream cap catches it while spooling.
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 4096):
                yield big[i : i + 4096]

        async with hub.http.post(
            hub.url + "/v1/documents",
            data=chunks(),
            headers=hub.h(TAY_NINH_STC, **{"Content-Type": "application/xml"}),
        ) as r:
            assert r.status == 413 and (await r.json())["type"] == PROBLEM + "payload-too-large"
        assert (await hub.store_counts())["documents"] == 0
        assert (await hub.store_counts())["staged"] == 0


async def test_a_full_disk_is_a_503_to_retry_and_stores_nothing(
    hub: Hub, pki: TestPKI, stc_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sending agency's system retries on 503 + Retry-After; a 500 says "do not"."""
    real_write = BlobWriter.write

    def full(self: BlobWriter, data: bytes | memoryview) -> None:
        # The writer's temp file is swapped for the kernel's own full disk: writes get ENOSPC.
        if self._file is not None and self._file.name != "/dev/full":
            self._file.close()
            self._file = open("/dev/full", "wb", buffering=0)  # the writer closes it
        real_write(self, data)

    monkeypatch.setattr(BlobWriter, "write", full)
    before = await hub.store_counts()
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
    async with await hub.send(TAY_NINH_STC, data) as r:
        body = await r.json()
        assert (r.status, body["type"]) == (503, PROBLEM + "store-unavailable"), body
        assert r.headers["Retry-After"].isdigit()
        assert body["detail"] == STORE_NOTHING_KEPT  # not the system's "No space left on device"
    assert await hub.store_counts() == before
    monkeypatch.undo()  # room again: the same package is taken
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()


def _lose_the_folder(blobs: Path) -> None:
    shutil.rmtree(blobs)  # an unmounted volume, a folder removed by hand


def _make_it_unwritable(blobs: Path) -> None:
    # Its temp area cannot take a file (root writes through a mode bit: a file in its place).
    shutil.rmtree(blobs / "tmp")
    (blobs / "tmp").write_bytes(b"")


@pytest.mark.parametrize("break_folder", [_lose_the_folder, _make_it_unwritable])
async def test_a_blob_folder_gone_or_unwritable_is_a_503_that_names_no_path(
    hub: Hub,
    pki: TestPKI,
    stc_pdf: bytes,
    break_folder: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As a database outage: the sender is told to send again later, in the same fixed words;
    why (the folder's path, the system's error) is the operator's, in the log."""
    first = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf, number="1")
    async with await hub.send(TAY_NINH_STC, first) as r:
        assert r.status == 202, await r.text()  # the hub is built, its folder taken
    break_folder(hub.blob_dir)
    before = await hub.runtime.store.read(_document_count)
    with caplog.at_level(logging.WARNING):
        async with await hub.send(
            TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
        ) as r:
            body = await r.json()
    assert (r.status, body["type"]) == (503, PROBLEM + "store-unavailable"), body
    assert r.headers["Retry-After"].isdigit()
    assert body["detail"] == STORE_NOTHING_KEPT
    assert str(hub.blob_dir) not in json.dumps(body)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("lienthong")]
    assert any(str(hub.blob_dir) in m for m in logged), logged  # the operator sees which, why
    assert await hub.runtime.store.read(_document_count) == before


def _document_count(tx: Any) -> int:
    return _n(tx, "documents")


async def test_packages_shaped_like_those_in_service(
    hub: Hub, pki: TestPKI, tmp_path: Path
) -> None:
    # CRLF, default namespace beside the edXML prefix, dd/MM/yyyy dates, a zipped attachment,
    # then a replacement (BussinessDocType 3, spelled "Business") of that document.
    key = pki.key(f"agency-{TAY_NINH_STC}")
    signed = tmp_path / "cong-van.xml"
    await asyncio.to_thread(sign_file, SAMPLES / "cong-van-stc-tay-ninh.xml", signed, key)
    async with await hub.send(TAY_NINH_STC, await asyncio.to_thread(signed.read_bytes)) as r:
        assert r.status == 202, await r.text()
        original = r.headers["X-Lienthong-Document"]
    # signing.xml (signxml) signed packages are accepted too.
    replacement = await sign_xml(
        (SAMPLES / "thay-the-stc-tay-ninh.xml").read_bytes(), key, parent=SIGNATURE_PARENT
    )
    async with await hub.send(TAY_NINH_STC, replacement) as r:
        assert r.status == 202, await r.text()
    _, view = await hub.json("GET", f"/v1/documents/{original}/status", TAY_NINH_STC)
    assert view["replaced_by"] == r.headers["X-Lienthong-Document"]
    (first, second) = (await hub.json("GET", "/v1/documents/inbox", NGHE_AN))[1]["items"]
    assert (first["doc_type"], second["doc_type"]) == (0, 3)


async def test_revoke_asks_every_recipient_and_they_answer(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)) as r:
        doc = r.headers["X-Lienthong-Document"]
    document_id = "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    async with await hub.status(NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, "01")) as r:
        assert r.status == 201
    async with await hub.send(
        TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf, doc_type=1)
    ) as r:
        assert r.status == 202, await r.text()
    _, view = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
    assert [h["code"] for h in view["recipients"][0]["history"]] == ["01", "13"]
    # Only the sender may ask for a recall; the recipient answers 15 (accepted).
    async with await hub.status(NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, "13")) as r:
        assert r.status == 409
    async with await hub.status(NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, "15")) as r:
        assert r.status == 201
    async with await hub.status(NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, "03")) as r:
        assert r.status == 409 and (await r.json())["type"] == PROBLEM + "status-transition"


async def test_cli_send_inbox_status(
    hub: Hub, pki: TestPKI, stc_pdf: bytes, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from gateway.exchange.cli import docs

    runner = CliRunner()

    async def cli(who: str, *args: str) -> Any:
        env = {"LIENTHONG_URL": hub.url, "LIENTHONG_TOKEN": TOKENS[who]}
        return await asyncio.to_thread(
            runner.invoke, docs, list(args), env=env, catch_exceptions=False
        )

    pdf = tmp_path / "cong-van-2491.pdf"
    pdf.write_bytes(stc_pdf)
    key = str(pki.key_path(f"agency-{TAY_NINH_STC}"))
    sent = await cli(TAY_NINH_STC, "send", str(pdf), "--to", NGHE_AN, "--from", TAY_NINH_STC,
                     "--key", key, "--subject", "Báo cáo dự toán", "--number", "2491", "--notation", "STC-BCTC", "--json")  # fmt: skip
    assert sent.exit_code == 0, sent.output
    receipt = json.loads(sent.output)
    assert receipt["to"] == [NGHE_AN] and not receipt["duplicate"]
    again = await cli(TAY_NINH_STC, "send", str(pdf), "--to", NGHE_AN, "--from", TAY_NINH_STC, "--key", key,
                      "--subject", "Báo cáo dự toán", "--number", "2491", "--notation", "STC-BCTC")  # fmt: skip
    assert again.exit_code == 1 and "duplicate-conflict" in again.output  # re-signed: other bytes

    # A package that cannot be written (here: a folder in its way) is one line, leaves no
    # partial file behind, and is not acknowledged: it stays in the inbox.
    (tmp_path / "in" / f"{receipt['id']}.xml").mkdir(parents=True)
    blocked = await cli(NGHE_AN, "inbox", "--fetch", str(tmp_path / "in"), "--ack")
    assert blocked.exit_code == 1 and blocked.output.count("\n") == 1, blocked.output
    assert "cannot write" in blocked.output, blocked.output
    assert [p.name for p in (tmp_path / "in").iterdir()] == [f"{receipt['id']}.xml"]
    (tmp_path / "in" / f"{receipt['id']}.xml").rmdir()
    box = await cli(NGHE_AN, "inbox", "--fetch", str(tmp_path / "in"), "--ack", "--json")
    assert box.exit_code == 0, box.output
    (item,) = json.loads(box.output)["items"]
    assert item["id"] == receipt["id"] and item["acked"]
    assert (await asyncio.to_thread(Path(item["file"]).read_bytes)).startswith(b"<?xml")

    ubnd_key = str(pki.key_path(f"agency-{NGHE_AN}"))
    for code in ("01", "03"):
        st = await cli(
            NGHE_AN, "status", receipt["id"], code, "--key", ubnd_key, "--description", "Đã vào sổ"
        )
        assert st.exit_code == 0, st.output
    back = await cli(NGHE_AN, "status", receipt["id"], "01", "--key", ubnd_key)
    assert back.exit_code == 1 and "status-transition" in back.output
    # What the CLI sent carries its sender's TraceHeader and the answered document's date.
    rows = await hub.runtime.store.read(
        lambda tx: tx.all("documents.history", document=receipt["id"])
    )
    sha = rows[-1]["message_sha256"]
    sent_status = etree.fromstring(
        (hub.blob_dir / "sha256" / sha[:2] / sha[2:4] / sha).read_bytes()
    )
    trace = [t.findtext(q("OrganId")) for t in sent_status.iter(q("TraceHeader"))]
    assert trace == [NGHE_AN]
    issued = receipt["document_id"].split(",")[1]
    assert sent_status.findtext(f".//{q('ResponseFor')}/{q('PromulgationDate')}") == issued
    shown = await cli(TAY_NINH_STC, "status", receipt["id"], "--json")
    history = json.loads(shown.output)["recipients"][0]["history"]
    assert [h["code"] for h in history] == ["01", "03"]
    wrong = await cli(
        TAY_NINH_STC, "send", str(SAMPLES / "cong-van-stc-tay-ninh.xml"), "--to", TU_PHAP
    )
    assert wrong.exit_code == 2 and "addressed to 000.00.00.H41" in wrong.output

    # Bad input: one line each, and nothing sent.
    def one_line(result: Any, code: int, *words: str) -> None:
        assert result.exit_code == code, result.output
        assert len(result.output.strip().splitlines()) == 1 or code == 2, result.output
        assert all(w in result.output for w in words), result.output

    truncated = tmp_path / "truncated.xml"  # an edXML root: a package, which cannot be read
    truncated.write_bytes((SAMPLES / "cong-van-stc-tay-ninh.xml").read_bytes()[:500])
    result = await cli(TAY_NINH_STC, "send", str(truncated), "--to", NGHE_AN)
    one_line(result, 1, f"{truncated}: ")
    # Another root, a DOCTYPE (never processed): a file to wrap, which needs --from, --key, --number.
    for name, content in {
        "doctype.xml": b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
        "other-root.xml": b"<a><b/></a>",
    }.items():
        (tmp_path / name).write_bytes(content)
        result = await cli(TAY_NINH_STC, "send", str(tmp_path / name), "--to", NGHE_AN)
        one_line(result, 2, "is not an edXML package", "--number")
    no_number = await cli(TAY_NINH_STC, "send", str(pdf), "--to", NGHE_AN, "--from", TAY_NINH_STC, "--key", key)  # fmt: skip
    one_line(no_number, 2, "--number")
    signed = tmp_path / "signed.xml"
    await asyncio.to_thread(
        sign_file, SAMPLES / "cong-van-stc-tay-ninh.xml", signed, pki.key(f"agency-{TAY_NINH_STC}")
    )
    signed_again = await cli(TAY_NINH_STC, "send", str(signed), "--to", NGHE_AN, "--key", key)
    one_line(signed_again, 2, "signed already")  # a second signature the hub would refuse
    receipt_nowhere = await cli(TAY_NINH_STC, "send", str(pdf), "--to", NGHE_AN, "--from", TAY_NINH_STC, "--key", key,
                                "--number", "2492", "--receipt-out", str(tmp_path / "no" / "r.xml"))  # fmt: skip
    one_line(receipt_nowhere, 2, "--receipt-out: no folder")
    fetch_nowhere = await cli(NGHE_AN, "inbox", "--fetch", str(pdf / "in"))
    one_line(fetch_nowhere, 1, "--fetch: cannot make")
    box = await cli(NGHE_AN, "inbox", "--json")
    assert json.loads(box.output)["items"] == []  # none of the refused sends reached the hub


async def test_multipart_related_package(hub: Hub, pki: TestPKI, stc_pdf: bytes) -> None:
    """The envelope as one part, the signed PDF as another (Content-ID = the manifest's cid)."""
    from lxml import etree

    from gateway.exchange.edxml import q

    header = cong_van_header(number="3001")
    data = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", stc_pdf)])
    root = etree.fromstring(data)
    cid = root.findtext(f".//{q('Reference')}/{q('ContentId')}")
    root.remove(root.find(q("AttachmentEncoded")))  # the attachment travels as a MIME part
    envelope = sign_bytes(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        pki.key(f"agency-{TAY_NINH_STC}"),
    )

    def body(pdf: bytes, with_cid: str = cid) -> aiohttp.MultipartWriter:
        w = aiohttp.MultipartWriter("related")
        w.append(envelope, {"Content-Type": "application/xml", "Content-ID": "<edxml>"})
        part = w.append(
            pdf,
            {"Content-Type": "application/pdf", "Content-ID": f"<{with_cid.removeprefix('cid:')}>"},
        )
        part.set_content_disposition("attachment", filename="cong-van.pdf")
        return w

    async def post(w: aiohttp.MultipartWriter) -> aiohttp.ClientResponse:
        return await hub.http.post(hub.url + "/v1/documents", data=w, headers=hub.h(TAY_NINH_STC))

    before = await hub.store_counts()
    async with await post(body(stc_pdf.replace(b"Cong van 2491", b"Cong van 9999"))) as r:
        assert r.status == 422 and (await r.json())["type"] == PROBLEM + "signature-invalid"
    async with await post(body(stc_pdf, "cid:other")) as r:
        assert r.status == 400 and (await r.json())["type"] == PROBLEM + "invalid-edxml"
    unsigned = aiohttp.MultipartWriter("related")  # a part no signature covers: refused
    unsigned.append(envelope, {"Content-Type": "application/xml", "Content-ID": "<edxml>"})
    unsigned.append(
        b"so lieu da sua",
        {"Content-Type": "text/plain", "Content-ID": f"<{cid.removeprefix('cid:')}>"},
    )
    async with await post(unsigned) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + "signature-invalid")
        assert "outside the signed envelope" in problem["detail"]
    assert await hub.store_counts() == before

    async with await post(body(stc_pdf)) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
        receipt = read_receipt(await r.read())
    assert receipt.attachments[0].sha256 == hashlib.sha256(stc_pdf).hexdigest()
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200 and r.content_type == "multipart/related"
        reader = aiohttp.MultipartReader.from_response(r)
        got = []
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            got.append((part.headers.get("Content-ID"), await part.read()))
    assert got[1] == (f"<{cid.removeprefix('cid:')}>", stc_pdf)
    assert got[0][0] == "<edxml>" and await _verify_forwarded(hub, got[0][1]) == ["000.00.00.H41"]
    async with hub.http.get(
        f"{hub.url}/v1/documents/{doc}?original=1", headers=hub.h(NGHE_AN)
    ) as r:
        reader = aiohttp.MultipartReader.from_response(r)
        first = await reader.next()
        assert isinstance(first, aiohttp.BodyPartReader) and await first.read() == envelope


# -- bad input found by fuzzing: never a 500, nothing stored --------------------------------------


def _related(*parts: tuple[dict[str, str], bytes], boundary: str = "xyz") -> bytes:
    """A multipart/related body written by hand: aiohttp's writer would encode the parts itself."""
    out = bytearray()
    for headers, content in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        out += b"\r\n" + content + b"\r\n"
    return bytes(out + f"--{boundary}--\r\n".encode())


def _mime_base64(data: bytes) -> bytes:
    """base64 as MIME writes it: lines of 76 characters, CRLF between them."""
    import base64

    text = base64.b64encode(data)
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


_ENVELOPE = {"Content-Type": "application/xml", "Content-ID": "<edxml>"}


@pytest.mark.parametrize(
    ("name", "headers", "content", "status", "slug"),
    [
        ("invalid base64", {"Content-Transfer-Encoding": "base64"}, lambda env: b"!!!notbase64", 400, "invalid-multipart"),
        ("base64 cut mid-quartet", {"Content-Transfer-Encoding": "base64"}, lambda env: _mime_base64(env)[:-1], 400, "invalid-multipart"),
        ("base64 after its padding", {"Content-Transfer-Encoding": "base64"},
         lambda env: _mime_base64(b"x") + b"\r\n" + _mime_base64(env), 400, "invalid-multipart"),
        ("base64 with a stray byte", {"Content-Transfer-Encoding": "BASE64"},
         lambda env: _mime_base64(env)[:1000] + b"*" + _mime_base64(env)[1000:], 400, "invalid-multipart"),
        ("unknown transfer encoding", {"Content-Transfer-Encoding": "x-foo"}, lambda env: env, 415, "unsupported-media-type"),
        ("quoted-printable", {"Content-Transfer-Encoding": "quoted-printable"}, lambda env: env, 415, "unsupported-media-type"),
        ("gzip, not gzip", {"Content-Encoding": "gzip"}, lambda env: env, 415, "unsupported-media-type"),
        ("gzip", {"Content-Encoding": "gzip"}, lambda env: __import__("gzip").compress(env), 415, "unsupported-media-type"),
        ("deflate, base64", {"Content-Encoding": "deflate", "Content-Transfer-Encoding": "base64"},
         lambda env: _mime_base64(__import__("zlib").compress(env)), 415, "unsupported-media-type"),
    ],
)  # fmt: skip
async def test_envelope_part_encodings_are_refused_cleanly(
    hub: Hub,
    pki: TestPKI,
    stc_pdf: bytes,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    headers: dict[str, str],
    content: Callable[[bytes], bytes],
    status: int,
    slug: str,
) -> None:
    """A bad Content-Transfer-Encoding or any Content-Encoding on the envelope part is a 400 or
    415 problem (it was a 500: binascii.Error, RuntimeError, zlib.error), and nothing is kept."""
    import gateway.api.documents

    monkeypatch.setattr(gateway.api.documents, "_CHUNK", 1001)  # many chunks, none aligned
    envelope = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
    before = await hub.store_counts()
    async with hub.http.post(
        hub.url + "/v1/documents",
        data=_related(({**_ENVELOPE, **headers}, content(envelope))),
        headers=hub.h(TAY_NINH_STC, **{"Content-Type": "multipart/related; boundary=xyz"}),
    ) as r:
        body = await r.json(content_type=None)
        assert (r.status, r.content_type) == (status, "application/problem+json"), (name, body)
        assert body["type"] == PROBLEM + slug and body["detail"], (name, body)
    assert await hub.store_counts() == before, name
    assert (await hub.json("GET", "/v1/documents/inbox", NGHE_AN))[1]["items"] == []


@pytest.mark.parametrize(
    ("name", "headers", "content", "status", "slug"),
    [
        ("invalid base64", {"Content-Transfer-Encoding": "base64"}, lambda pdf: b"!!!notbase64", 400, "invalid-multipart"),
        ("unknown transfer encoding", {"Content-Transfer-Encoding": "x-foo"}, lambda pdf: pdf, 415, "unsupported-media-type"),
        ("gzip", {"Content-Encoding": "gzip"}, lambda pdf: __import__("gzip").compress(pdf), 415, "unsupported-media-type"),
    ],
)  # fmt: skip
async def test_attachment_part_encodings_are_refused_cleanly(
    hub: Hub,
    pki: TestPKI,
    stc_pdf: bytes,
    name: str,
    headers: dict[str, str],
    content: Callable[[bytes], bytes],
    status: int,
    slug: str,
) -> None:
    from lxml import etree

    from gateway.exchange.edxml import q

    header = cong_van_header(number="3002")
    data = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", stc_pdf)])
    root = etree.fromstring(data)
    cid = str(root.findtext(f".//{q('Reference')}/{q('ContentId')}")).removeprefix("cid:")
    root.remove(root.find(q("AttachmentEncoded")))
    envelope = sign_bytes(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        pki.key(f"agency-{TAY_NINH_STC}"),
    )
    pdf_part = {"Content-Type": "application/pdf", "Content-ID": f"<{cid}>"}
    before = await hub.store_counts()
    async with hub.http.post(
        hub.url + "/v1/documents",
        data=_related((_ENVELOPE, envelope), ({**pdf_part, **headers}, content(stc_pdf))),
        headers=hub.h(TAY_NINH_STC, **{"Content-Type": "multipart/related; boundary=xyz"}),
    ) as r:
        body = await r.json(content_type=None)
        assert (r.status, r.content_type) == (status, "application/problem+json"), (name, body)
        assert body["type"] == PROBLEM + slug, (name, body)
    assert await hub.store_counts() == before, name
    # The same package with its parts base64-encoded, as MIME mailers write them, is taken.
    b64 = {"Content-Transfer-Encoding": "base64"}
    async with hub.http.post(
        hub.url + "/v1/documents",
        data=_related(
            ({**_ENVELOPE, **b64}, _mime_base64(envelope)),
            ({**pdf_part, **b64}, _mime_base64(stc_pdf)),
        ),
        headers=hub.h(TAY_NINH_STC, **{"Content-Type": "multipart/related; boundary=xyz"}),
    ) as r:
        assert r.status == 202, await r.text()
        receipt = read_receipt(await r.read())
    assert receipt.package_sha256 == hashlib.sha256(envelope).hexdigest()
    assert receipt.attachments[0].sha256 == hashlib.sha256(stc_pdf).hexdigest()


async def test_base64_envelope_over_many_chunks_is_taken(
    hub: Hub, pki: TestPKI, stc_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.api.documents

    monkeypatch.setattr(gateway.api.documents, "_CHUNK", 1001)
    envelope = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
    async with hub.http.post(
        hub.url + "/v1/documents",
        data=_related(
            ({**_ENVELOPE, "Content-Transfer-Encoding": "base64"}, _mime_base64(envelope))
        ),
        headers=hub.h(TAY_NINH_STC, **{"Content-Type": "multipart/related; boundary=xyz"}),
    ) as r:
        assert r.status == 202, await r.text()
        receipt = read_receipt(await r.read())
    assert receipt.package_sha256 == hashlib.sha256(envelope).hexdigest()


def _status_for(pki: TestPKI, who: str, organ_id: str, document_id: str, code: str) -> bytes:
    msg = StatusMessage(
        from_=Organization(who),
        response_for=ResponseFor(organ_id, "2491/STC-BCTC", date(2020, 10, 30), document_id),
        status_code=code,
        timestamp=datetime.now(VN_TZ),
        description=f"Trạng thái {code}",
    )
    return sign_bytes(build_status(msg), pki.key(f"agency-{who}"))


async def test_status_must_answer_the_documents_sender(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    """ResponseFor names the document answered: its DocumentId and its sender's OrganId."""
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    document_id = "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    before = await hub.store_counts()
    for organ_id, doc_id, field_name in (
        (NGHE_AN, document_id, "ResponseFor/OrganId"),  # the recipient itself
        (TU_PHAP, document_id, "ResponseFor/OrganId"),  # some other agency
        (TAY_NINH_STC, document_id.replace("2491", "2492"), "ResponseFor/DocumentId"),
    ):
        async with await hub.status(
            NGHE_AN, doc, _status_for(pki, NGHE_AN, organ_id, doc_id, "01")
        ) as r:
            problem = await r.json()
            assert (r.status, r.content_type) == (400, "application/problem+json"), problem
            assert problem["type"] == PROBLEM + "invalid-edxml", problem
            assert problem["field"] == field_name, problem
        assert await hub.store_counts() == before, organ_id  # no status row, no blob
    # A non-recipient learns nothing about the document from a wrong ResponseFor.
    async with await hub.status(
        TU_PHAP, doc, _status_for(pki, TU_PHAP, TU_PHAP, document_id, "01")
    ) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (404, PROBLEM + "unknown-document"), problem
        assert TAY_NINH_STC not in problem["detail"] and document_id not in problem["detail"]
    assert await hub.store_counts() == before
    _, view = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
    assert view["recipients"][0]["history"] == []
    async with await hub.status(
        NGHE_AN, doc, _status_for(pki, NGHE_AN, TAY_NINH_STC, document_id, "01")
    ) as r:
        assert r.status == 201, await r.text()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_body_that_is_not_in_its_content_encoding_is_a_400(
    hub: Hub, pki: TestPKI, stc_pdf: bytes, coding: str
) -> None:
    """aiohttp inflates a request body itself; one that does not inflate was a 500."""
    import gzip

    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)) as r:
        doc = r.headers["X-Lienthong-Document"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    document_id = "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    other = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf, number="2492")
    status = status_message(pki, NGHE_AN, document_id, "01")
    before = await hub.store_counts()
    for who, path, content_type, data, slug in (
        (TAY_NINH_STC, "/v1/documents", "application/xml", other, "invalid-edxml"),
        (TAY_NINH_STC, "/v1/documents", "multipart/related; boundary=xyz",
         _related((_ENVELOPE, other)), "invalid-multipart"),
        (NGHE_AN, f"/v1/documents/{doc}/status", "application/xml", status, "invalid-edxml"),
    ):  # fmt: skip
        headers = hub.h(who, **{"Content-Type": content_type, "Content-Encoding": coding})
        async with hub.http.post(hub.url + path, data=data, headers=headers) as r:
            problem = await r.json(content_type=None)
            assert (r.status, r.content_type) == (400, "application/problem+json"), problem
            assert problem["type"] == PROBLEM + slug and coding in problem["detail"], problem
        assert await hub.store_counts() == before, path
    # A coding aiohttp does not decode would be streamed still encoded: refused before reading.
    foo = {"Content-Type": "application/xml", "Content-Encoding": "x-foo"}
    async with hub.http.post(
        hub.url + "/v1/documents", data=other, headers=hub.h(TAY_NINH_STC, **foo)
    ) as r:
        problem = await r.json(content_type=None)
        assert (r.status, problem["type"]) == (415, PROBLEM + "unsupported-media-type"), problem
        assert r.headers["Accept-Encoding"] == "gzip, deflate"
    assert await hub.store_counts() == before
    # The same bodies, really compressed, are taken.
    gz = {"Content-Type": "application/xml", "Content-Encoding": "gzip"}
    async with hub.http.post(
        hub.url + "/v1/documents", data=gzip.compress(other), headers=hub.h(TAY_NINH_STC, **gz)
    ) as r:
        assert r.status == 202, await r.text()
    async with hub.http.post(
        f"{hub.url}/v1/documents/{doc}/status",
        data=gzip.compress(status),
        headers=hub.h(NGHE_AN, **gz),
    ) as r:
        assert r.status == 201, await r.text()


def _envelope_and_part(pki: TestPKI, pdf: bytes, number: str) -> tuple[bytes, str]:
    """A signed envelope whose one attachment (``pdf``) travels as a MIME part; its cid."""
    from lxml import etree

    from gateway.exchange.edxml import q

    header = cong_van_header(number=number)
    data = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", pdf)])
    root = etree.fromstring(data)
    cid = str(root.findtext(f".//{q('Reference')}/{q('ContentId')}")).removeprefix("cid:")
    root.remove(root.find(q("AttachmentEncoded")))
    envelope = sign_bytes(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        pki.key(f"agency-{TAY_NINH_STC}"),
    )
    return envelope, cid


async def test_multipart_cap_counts_the_bytes_received_not_decoded(
    tmp_path: Path, pki: TestPKI, stc_pdf: bytes
) -> None:
    """base64 blanks decode to nothing but are read all the same: the cap counts what comes,
    also without a Content-Length (chunked), where only the stream can be counted."""
    envelope, cid = _envelope_and_part(pki, stc_pdf, "3003")
    cap = len(envelope) + len(stc_pdf) + 8000  # room for the package as sent, headers and all
    pdf_part = {"Content-Type": "application/pdf", "Content-ID": f"<{cid}>"}
    b64 = {"Content-Transfer-Encoding": "base64"}
    ok = _related((_ENVELOPE, envelope), ({**pdf_part, **b64}, _mime_base64(stc_pdf)))
    blank = _related(
        (_ENVELOPE, envelope), ({**pdf_part, **b64}, b" " * 3 * cap + _mime_base64(stc_pdf))
    )
    content_type = {"Content-Type": "multipart/related; boundary=xyz"}

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    async with running_hub(tmp_path, pki, max_document_bytes=cap) as hub:
        for body in (blank, chunked(blank)):
            async with hub.http.post(
                hub.url + "/v1/documents", data=body, headers=hub.h(TAY_NINH_STC, **content_type)
            ) as r:
                problem = await r.json(content_type=None)
                assert (r.status, r.content_type) == (413, "application/problem+json"), problem
                assert problem["type"] == PROBLEM + "payload-too-large", problem
                assert problem["max_bytes"] == cap, problem
            counts = await hub.store_counts()
            assert (counts["documents"], counts["blobs"], counts["staged"]) == (0, 0, 0)
        async with hub.http.post(
            hub.url + "/v1/documents", data=chunked(ok), headers=hub.h(TAY_NINH_STC, **content_type)
        ) as r:
            assert r.status == 202, await r.text()


async def test_multipart_parts_are_capped_in_number(hub: Hub, pki: TestPKI, stc_pdf: bytes) -> None:
    from gateway.exchange.hub import MAX_PARTS

    envelope, _ = _envelope_and_part(pki, stc_pdf, "3004")
    parts = [
        ({"Content-Type": "application/pdf", "Content-ID": f"<p{i}>"}, b"%P")
        for i in range(MAX_PARTS + 1)
    ]
    before = await hub.store_counts()
    async with hub.http.post(
        hub.url + "/v1/documents",
        data=_related((_ENVELOPE, envelope), *parts),
        headers=hub.h(TAY_NINH_STC, **{"Content-Type": "multipart/related; boundary=xyz"}),
    ) as r:
        problem = await r.json(content_type=None)
        assert (r.status, problem["type"]) == (413, PROBLEM + "payload-too-large"), problem
        assert problem["max_parts"] == MAX_PARTS and str(MAX_PARTS) in problem["detail"], problem
    assert await hub.store_counts() == before


async def test_multipart_body_content_encoding_is_checked_like_xml(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    envelope = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf, number="3005")
    before = await hub.store_counts()
    for content_type, data in (
        ("application/xml", envelope),
        ("multipart/related; boundary=xyz", _related((_ENVELOPE, envelope))),
    ):
        headers = {"Content-Type": content_type, "Content-Encoding": "x-foo"}
        async with hub.http.post(
            hub.url + "/v1/documents", data=data, headers=hub.h(TAY_NINH_STC, **headers)
        ) as r:
            problem = await r.json(content_type=None)
            assert (r.status, problem["type"]) == (415, PROBLEM + "unsupported-media-type"), (
                content_type,
                problem,
            )
    assert await hub.store_counts() == before


async def test_a_path_id_that_cannot_be_a_document_is_unknown_on_each_store(
    tmp_path: Path, pki: TestPKI, store_section: dict[str, str]
) -> None:
    """Before, on PostgreSQL, a NUL in the path reached the database: 500 (SQLite: 404)."""
    async with running_hub(tmp_path, pki, store=store_section) as hub:
        for method, path in (
            ("GET", "/v1/documents/%00"),
            ("GET", "/v1/documents/d%00"),
            ("POST", "/v1/documents/%00/ack"),
            ("GET", "/v1/documents/%00/status"),
            ("GET", "/v1/documents/no-such-document"),
        ):
            status, problem = await hub.json(method, path, NGHE_AN)
            assert (status, problem["type"]) == (404, PROBLEM + "unknown-document"), path
        async with hub.http.get(hub.url + "/readyz") as r:
            assert r.status == 200, await r.text()


def test_not_accepting_documents_says_when_to_retry() -> None:
    # While the audit log fails closed the hub refuses new packages and statuses as dossiers are
    # refused: a 503 with Retry-After (it had none).
    from gateway.api.common import refuse_unless_accepting
    from gateway.problems import Problem

    failing = {"accepting": lambda: (False, "audit checkpoints failing")}
    with pytest.raises(Problem) as refused:
        refuse_unless_accepting(failing)
    assert (refused.value.status, refused.value.slug) == (503, "not-accepting")
    assert int(refused.value.headers["Retry-After"]) > 0


async def test_a_document_whose_blob_is_gone_is_a_500_problem_and_stays_undelivered(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    """Before: a bare 404 with an XML content type and an empty body, logged as 200, and the
    delivery marked delivered (and audited) though nothing was sent."""
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    for blob in (hub.blob_dir / "sha256").rglob("*"):
        if blob.is_file() and blob.read_bytes().startswith(b"<?xml"):
            blob.unlink()  # the package as received and its forwarded copy
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 500 and r.content_type == "application/problem+json"
        problem = await r.json()
    assert problem["type"] == PROBLEM + "blob-store", problem
    assert "sha256" not in problem["detail"]  # the paths are the operator's, in the log
    _, seen = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
    assert [(d["delivery"], d["delivered_at"]) for d in seen["recipients"]] == [("pending", None)]
    rows = await hub.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=1000))
    assert not [r for r in rows if b"document.delivered" in bytes(r["entry"])]


async def test_an_agency_allowed_to_exchange_can_be_answered_though_not_listed(
    tmp_path: Path, pki: TestPKI, pki_server: str, stc_pdf: bytes
) -> None:
    """The Ministry of Justice has a subsystem with documents.exchange but no [[agencies]] entry:
    it could send, and every reply addressed to it was refused as to an unknown recipient. Its
    subsystem makes it a pulling agency; an agency with neither is still unknown."""
    pdf = await sign_pdf(sample_pdf("Cong van 17/BTP"), pki.key(f"agency-{TU_PHAP}"))
    async with running_hub(tmp_path, pki, unlisted=(TU_PHAP,)) as hub:
        async with await hub.send(TU_PHAP, package(pki, TU_PHAP, (NGHE_AN,), pdf, "17")) as r:
            assert r.status == 202, await r.text()
        reply = package(pki, NGHE_AN, (TU_PHAP,), stc_pdf, "18", signer=f"agency-{NGHE_AN}")
        async with await hub.send(NGHE_AN, reply) as r:
            assert r.status == 202, await r.text()
        status, inbox = await hub.json("GET", "/v1/documents/inbox", TU_PHAP)
        assert status == 200 and [i["from"] for i in inbox["items"]] == [NGHE_AN], inbox
        stranger = package(pki, NGHE_AN, ("000.00.00.H99",), stc_pdf, "19")
        async with await hub.send(NGHE_AN, stranger) as r:
            assert (r.status, (await r.json())["type"]) == (422, PROBLEM + "unknown-recipient")


async def test_an_agency_not_party_to_a_document_cannot_tell_it_exists(
    hub: Hub, pki: TestPKI, stc_pdf: bytes
) -> None:
    """Found by probing: the Ministry of Justice, neither sender nor recipient, was told "no
    document X for 000.00.00.G15" for a real document and "no document Y" for an unknown one."""
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), stc_pdf)) as r:
        assert r.status == 202, await r.text()
        real = r.headers["X-Lienthong-Document"]
    unknown = "d" + "0" * 32  # shaped like a hub id, given to no document
    message = status_message(pki, TU_PHAP, "000.00.11.H53,2020/10/30,2491/STC-BCTC", "01")
    for doc in (real, unknown):
        answers = []
        for method, path in (("GET", f"/v1/documents/{doc}"), ("GET", f"/v1/documents/{doc}/status"),
                             ("POST", f"/v1/documents/{doc}/ack")):  # fmt: skip
            status, body = await hub.json(method, path, TU_PHAP)
            answers.append((status, body["type"], body["detail"].replace(doc, "ID")))
        async with await hub.status(TU_PHAP, doc, message) as r:
            body = await r.json()
            answers.append((r.status, body["type"], body["detail"].replace(doc, "ID")))
        if doc == real:
            seen = answers
    assert answers == seen, (seen, answers)
    assert {a[:2] for a in answers} == {(404, PROBLEM + "unknown-document")}
