"""The document API over a real socket: what a client sends wrongly is a precise 4xx (never a
500 with a traceback), a read changes nothing, and a package is judged whole (envelope and parts).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import struct
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.xmldsig import sign_bytes
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from tests.e2e.test_documents import PROBLEM, Hub, package, running_hub, status_message

from .factories import NGHE_AN, TAY_NINH_STC, TU_PHAP, cong_van_header, trace_for

# Each an encoding Python knows but expat cannot use (or no XML encoding at all).
FOREIGN_ENCODINGS = [
    "x-nope",
    "utf-32",
    "utf-7",
    "shift_jis",
    "UTF-16LE",
    "rot13",
    "base64",
    "idna",
]


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _declaring(data: bytes, encoding: str) -> bytes:
    out = data.replace(b"encoding='UTF-8'", f"encoding='{encoding}'".encode(), 1)
    assert out != data
    return out


async def _problem(r: Any) -> tuple[int, str, dict[str, Any]]:
    body = await r.json(content_type=None)
    return r.status, str(body.get("type", "")).removeprefix(PROBLEM), body


async def _delivered_to_nghe_an(hub: Hub, data: bytes) -> str:
    """Send ``data`` from Tây Ninh and fetch it as Nghệ An (statuses need a delivery): its id."""
    async with await hub.send(TAY_NINH_STC, data) as r:
        assert r.status == 202, await r.text()
        doc = str(r.headers["X-Lienthong-Document"])
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    return doc


async def test_an_encoding_other_than_utf8_is_invalid_edxml_on_both_endpoints(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    for encoding in FOREIGN_ENCODINGS:
        async with await hub.send(TAY_NINH_STC, _declaring(data, encoding)) as r:
            status, slug, body = await _problem(r)
            assert (status, slug) == (400, "invalid-edxml"), (encoding, body)
            assert "UTF-8" in body["detail"]
    doc = await _delivered_to_nghe_an(hub, data)
    message = status_message(pki, NGHE_AN, "000.00.11.H53,2020/10/30,2491/STC-BCTC", "01")
    for encoding in FOREIGN_ENCODINGS:
        async with await hub.status(NGHE_AN, doc, _declaring(message, encoding)) as r:
            status, slug, body = await _problem(r)
            assert (status, slug) == (400, "invalid-edxml"), (encoding, body)
    async with await hub.status(NGHE_AN, doc, message) as r:
        assert r.status == 201, await r.text()


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return bytearray(buf.getvalue())


def _encrypted(pdf: bytes) -> bytes:
    z = _zip([("a.pdf", pdf)])
    z[6] |= 1  # the local header's and the directory's "encrypted" flag
    z[z.rfind(b"PK\x01\x02") + 8] |= 1
    return bytes(z)


def _corrupt_deflate(pdf: bytes) -> bytes:
    z = _zip([("a.pdf", pdf)])
    data = 30 + struct.unpack("<H", z[26:28])[0] + struct.unpack("<H", z[28:30])[0]
    z[data + 10 : data + 40] = b"\xff" * 30
    return bytes(z)


def _bzip2_marked(pdf: bytes) -> bytes:
    z = _zip([("a.pdf", pdf)])  # deflated data said to be bzip2
    z[8:10] = struct.pack("<H", zipfile.ZIP_BZIP2)
    cd = z.rfind(b"PK\x01\x02")
    z[cd + 10 : cd + 12] = struct.pack("<H", zipfile.ZIP_BZIP2)
    return bytes(z)


def _bzip2(pdf: bytes) -> bytes:
    """A well-made bzip2 member. zipfile inflates one whole on its first read, whatever size it
    declares: 1 KB of zip held 1 GiB of zeros, and reading its first KiB took 2 GB."""
    return bytes(_zip([("a.pdf", pdf)], zipfile.ZIP_BZIP2))


def _lzma(pdf: bytes) -> bytes:
    return bytes(_zip([("notes.txt", b"ghi chu"), ("a.pdf", pdf)], zipfile.ZIP_LZMA))


def _nested(pdf: bytes) -> bytes:
    return bytes(_zip([("inner.zip", bytes(_zip([("a.pdf", pdf)])))]))


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_encrypted, "encrypted"),
        (_corrupt_deflate, "not a readable zip"),
        (_bzip2_marked, "is compressed with bzip2"),
        (_bzip2, "is compressed with bzip2: only stored or deflated members are read"),
        (_lzma, "phu-luc.zip/notes.txt is compressed with LZMA"),
        (_nested, "zips inside zips"),
    ],
)
async def test_a_zip_whose_pdfs_cannot_be_checked_is_invalid_edxml_and_stores_nothing(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, make: Any, says: str
) -> None:
    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), "2492")
    attachment = NewAttachment("phu-luc.zip", make(signed_pdf), "application/zip")
    data = sign_bytes(
        build_package(header, trace_for(header), [attachment]),
        pki.key(f"agency-{TAY_NINH_STC}"),
    )
    before = await hub.store_counts()
    async with await hub.send(TAY_NINH_STC, data) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (400, "invalid-edxml"), body
    assert says in body["detail"] and body["attachment"].startswith("phu-luc.zip")
    assert await hub.store_counts() == before


async def test_head_of_a_document_is_refused_and_delivers_nothing(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    async with await hub.send(
        TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    ) as r:
        assert r.status == 202
        doc = r.headers["X-Lienthong-Document"]

    async def state() -> tuple[str, int]:
        """The recipient's delivery state, and how many audit events name the document."""
        _, view = await hub.json("GET", f"/v1/documents/{doc}/status", TAY_NINH_STC)
        events = await hub.runtime.store.read(
            lambda tx: len(tx.all("audit.by_document", document=doc))
        )
        return view["recipients"][0]["delivery"], events

    before = await state()
    assert before[0] == "pending"
    async with hub.http.head(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 405 and r.headers["Allow"] == "GET"
    assert await state() == before
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    assert (await state())[0] == "delivered"


def _envelope_without_attachments(
    pki: TestPKI, pdf: bytes, number: str, name: str = "cong-van.pdf"
) -> tuple[bytes, str]:
    """A signed envelope whose manifest names one PDF (``name``) that travels as a MIME part;
    its cid."""
    from lxml import etree

    from gateway.exchange.edxml import q

    header = cong_van_header(TAY_NINH_STC, (NGHE_AN,), number)
    root = etree.fromstring(build_package(header, trace_for(header), [NewAttachment(name, pdf)]))
    cid = str(root.findtext(f".//{q('Reference')}/{q('ContentId')}")).removeprefix("cid:")
    root.remove(root.find(q("AttachmentEncoded")))
    envelope = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return sign_bytes(envelope, pki.key(f"agency-{TAY_NINH_STC}")), cid


def _related(
    envelope: bytes,
    *parts: tuple[str, bytes],
    disposition: str = 'attachment; filename="cong-van.pdf"',
) -> aiohttp.MultipartWriter:
    w = aiohttp.MultipartWriter("related")
    w.append(envelope, {"Content-Type": "application/xml", "Content-ID": "<edxml>"})
    for cid, pdf in parts:
        w.append(
            pdf,
            {
                "Content-Type": "application/pdf",
                "Content-ID": f"<{cid}>",
                "Content-Disposition": disposition,
            },
        )
    return w


@pytest.fixture(scope="module")
def other_signed_pdf(pki: TestPKI) -> bytes:
    return asyncio.run(sign_pdf(sample_pdf("Phu luc khac"), pki.key(f"agency-{TAY_NINH_STC}")))


async def test_a_multipart_package_is_the_same_only_if_every_part_is(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, other_signed_pdf: bytes
) -> None:
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3101")

    async def post(w: aiohttp.MultipartWriter) -> aiohttp.ClientResponse:
        return await hub.http.post(hub.url + "/v1/documents", data=w, headers=hub.h(TAY_NINH_STC))

    async with await post(_related(envelope, (cid, signed_pdf))) as r:
        assert r.status == 202, await r.text()
        first = (r.headers["X-Lienthong-Document"], await r.read())
    async with await post(_related(envelope, (cid, signed_pdf))) as r:  # a retry: the receipt
        assert r.status == 202 and r.headers["X-Lienthong-Duplicate"] == "true"
        assert (r.headers["X-Lienthong-Document"], await r.read()) == first
    counts = await hub.store_counts()
    # The same envelope, another (validly signed) PDF as its part: not the package accepted.
    async with await post(_related(envelope, (cid, other_signed_pdf))) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (409, "duplicate-conflict"), body
    assert body["id"] == first[0]
    assert await hub.store_counts() == counts


async def test_a_multipart_part_the_manifest_does_not_reference_is_refused(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, other_signed_pdf: bytes
) -> None:
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3102")
    before = await hub.store_counts()
    w = _related(envelope, (cid, signed_pdf), ("not-in-the-manifest", other_signed_pdf))
    async with await hub.http.post(
        hub.url + "/v1/documents", data=w, headers=hub.h(TAY_NINH_STC)
    ) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (400, "invalid-edxml"), body
    assert body["content_id"] == "not-in-the-manifest" and body["field"] == "Reference"
    assert await hub.store_counts() == before


async def test_a_signed_pdf_painted_over_on_the_way_is_refused_as_a_part_and_embedded(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    """Anyone on the way (no key needed) can append an empty signature field to the agency's
    signed PDF whose widget paints another text over the page: accepted (202) both as a
    multipart part and embedded in a package re-signed by the forwarder, the PDF reported valid."""
    from tests.signing.pdf_edits import add_signature_field

    painted = add_signature_field(
        signed_pdf, "Signature9", (60, 700, 560, 760), paint="Cong van 9999/STC-BCTC"
    )
    why = "document modified after signing: signature field 'Signature9' added, not signed"
    before = await hub.store_counts()
    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3103")
    async with await hub.http.post(
        hub.url + "/v1/documents",
        data=_related(envelope, (cid, painted)),
        headers=hub.h(TAY_NINH_STC),
    ) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (422, "signature-invalid"), body
    assert body["attachment"] == "cong-van.pdf" and why in body["detail"], body
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), painted)) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (422, "signature-invalid"), body
    assert why in body["detail"], body
    assert await hub.store_counts() == before


async def test_cli_send_failures_are_one_line_and_a_nonzero_exit(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    async def cli(*args: str, url: str = hub.url, token: str = "t-stc-0123456789") -> Any:
        env = {"LIENTHONG_URL": url, "LIENTHONG_TOKEN": token}
        # Not catch_exceptions=False: a traceback is what is tested against.
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["docs", "send", *args], env=env, prog_name="lienthong"
        )

    def one_line(result: Any, code: int, *words: str) -> None:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert all(w in result.output for w in words), result.output

    key = str(pki.key_path(f"agency-{TAY_NINH_STC}"))
    pdf = tmp_path / "cong-van.pdf"
    pdf.write_bytes(signed_pdf)
    wrap = ["--to", NGHE_AN, "--from", TAY_NINH_STC, "--key", key, "--number", "77"]
    enc = tmp_path / "enc.xml"
    enc.write_bytes(_declaring(package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf), "x-nope"))
    one_line(await cli(str(enc), "--to", NGHE_AN), 1, "invalid-edxml", "UTF-8")
    one_line(await cli(str(pdf), *wrap, "--notation", "a\x01b"), 2, "--notation", "U+0001")
    one_line(await cli(str(pdf), *wrap, "--subject", "x\x0by"), 2, "--subject", "U+000B")
    one_line(await cli(str(pdf), *wrap, "--subject", "x\udcffy"), 2, "--subject", "UTF-8")
    # A token that would break its header line was aiohttp's ValueError, with a traceback.
    one_line(await cli(str(pdf), *wrap, token="t-stc\nX-Other: y"), 2, "--token", "visible ASCII")
    one_line(await cli(str(pdf), *wrap, token="t stc"), 2, "--token")
    bad_name = tmp_path / os.fsdecode(b"bad\xff.pdf")
    bad_name.write_bytes(signed_pdf)
    one_line(await cli(str(bad_name), *wrap), 1, "bad\\xff.pdf", "not valid UTF-8")

    async def not_a_receipt(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, text="<html>ok</html", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/documents", not_a_receipt)
    elsewhere = TestServer(app, host="127.0.0.1")
    await elsewhere.start_server()
    try:
        one_line(
            await cli(str(pdf), *wrap, url=str(elsewhere.make_url("")).rstrip("/")),
            1,
            "not a lienthong receipt",
        )
    finally:
        await elsewhere.close()
    _, box = await hub.json("GET", "/v1/documents/inbox", NGHE_AN)
    assert box["items"] == []  # nothing reached the hub

    # A retry of a send that wraps and signs is signed anew: other bytes, refused as a
    # conflict, and the refusal names the document the hub accepted.
    sent = await cli(str(pdf), *wrap)
    assert sent.exit_code == 0, sent.output
    accepted = sent.output.split()[1]
    one_line(await cli(str(pdf), *wrap), 1, "duplicate-conflict", f"docs status {accepted}")


async def test_cli_status_is_sent_by_a_recipient_only(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    """`docs status ID CODE` run by the document's sender signed the status as the first
    recipient the hub showed it, and the hub refused it as a forged sender; with no recipient
    shown it failed on an empty list. Each is a usage error now, told before anything is sent."""
    from click.testing import CliRunner

    from gateway.cli import main

    async def cli(token: str, *args: str, url: str = hub.url) -> Any:
        env = {"LIENTHONG_URL": url, "LIENTHONG_TOKEN": token}
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["docs", "status", *args], env=env, prog_name="lienthong"
        )

    def refused(result: Any, *words: str) -> None:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "only a recipient sends statuses" in result.output, result.output
        assert all(w in result.output for w in words), result.output

    stc_key = str(pki.key_path(f"agency-{TAY_NINH_STC}"))
    ubnd_key = str(pki.key_path(f"agency-{NGHE_AN}"))
    no_agency_key = str(pki.key_path("gateway"))  # its certificate names no agency
    one = await _delivered_to_nghe_an(hub, package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf))
    # The sender, known by its key, by --from, or by the view it gets (every recipient).
    refused(
        await cli("t-stc-0123456789", one, "03", "--key", stc_key), f"{TAY_NINH_STC}'s own document"
    )
    refused(await cli("t-stc-0123456789", one, "03", "--key", ubnd_key, "--from", TAY_NINH_STC))
    two = package(pki, TAY_NINH_STC, (NGHE_AN, TU_PHAP), signed_pdf, number="2492")
    async with await hub.send(TAY_NINH_STC, two) as r:
        assert r.status == 202, await r.text()
        both = r.headers["X-Lienthong-Document"]
    refused(await cli("t-stc-0123456789", both, "03", "--key", no_agency_key), "every recipient")
    _, view = await hub.json("GET", f"/v1/documents/{one}/status", TAY_NINH_STC)
    assert [r["history"] for r in view["recipients"]] == [[]]  # nothing was sent

    async def no_recipient(request: web.Request) -> web.Response:
        doc = {"id": one, "document_id": "x", "from": TAY_NINH_STC, "recipients": []}
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/v1/documents/{id}/status", no_recipient)
    elsewhere = TestServer(app, host="127.0.0.1")
    await elsewhere.start_server()
    try:
        url = str(elsewhere.make_url("")).rstrip("/")
        refused(await cli("t-x", one, "03", "--key", no_agency_key, url=url), "no recipient")
    finally:
        await elsewhere.close()
    # Text edXML cannot carry, or bytes of the command line that were not UTF-8: a usage error
    # before anything is fetched or signed (it was lxml's ValueError, a traceback).
    for option, value, said in (
        ("--description", "a\x01b", "U+0001"),
        ("--staff", "a\udcffb", "not valid UTF-8"),
    ):
        bad = await cli("t-ubnd-0123456789", one, "03", "--key", ubnd_key, option, value)
        assert bad.exception is None or isinstance(bad.exception, SystemExit), bad.exc_info
        assert bad.exit_code == 2, bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output
        assert option in bad.output and said in bad.output, bad.output
    # The recipient sends, as before.
    sent = await cli("t-ubnd-0123456789", one, "01", "--key", ubnd_key)
    assert sent.exit_code == 0, sent.output


async def test_a_status_code_edxml_does_not_define_is_invalid_edxml(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    async with await hub.send(
        TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    ) as r:
        doc = r.headers["X-Lienthong-Document"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    document_id = "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    for code in ("07", "08", "09", "10", "11", "12", "14"):  # the XSD lets them through
        async with await hub.status(
            NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, code)
        ) as r:
            status, slug, body = await _problem(r)
        assert (status, slug, body["field"]) == (400, "invalid-edxml", "StatusCode"), body
    async with await hub.status(NGHE_AN, doc, status_message(pki, NGHE_AN, document_id, "01")) as r:
        assert r.status == 201, await r.text()


async def test_inbox_fetch_keeps_a_multipart_package_as_a_mime_entity(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, tmp_path: Path
) -> None:
    import email
    import email.policy

    from click.testing import CliRunner

    from gateway.cli import main

    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3103")
    async with await hub.http.post(
        hub.url + "/v1/documents",
        data=_related(envelope, (cid, signed_pdf)),
        headers=hub.h(TAY_NINH_STC),
    ) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    env = {"LIENTHONG_URL": hub.url, "LIENTHONG_TOKEN": "t-ubnd-0123456789"}
    args = ["docs", "inbox", "--fetch", str(tmp_path / "in"), "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)["items"]
    saved = Path(item["file"])
    assert saved.name == f"{doc}.mime"
    raw = await asyncio.to_thread(saved.read_bytes)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/related"
    first, second = message.iter_parts()
    assert first["Content-ID"] == "<edxml>" and b"edXML" in first.get_payload(decode=True)
    assert second["Content-ID"] == f"<{cid}>"
    assert second.get_payload(decode=True) == signed_pdf


@pytest.mark.parametrize(
    "name",
    ["Công văn 2491 STC (100%).pdf", 'bao-cao "quy 3".pdf'],
)
async def test_a_forwarded_part_keeps_its_name_and_the_envelope_is_no_attachment(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, name: str
) -> None:
    import email
    import email.policy
    from urllib.parse import quote

    envelope, cid = _envelope_without_attachments(pki, signed_pdf, "3104", name)
    sent = "attachment; filename*=UTF-8''" + quote(name, safe="")
    async with await hub.http.post(
        hub.url + "/v1/documents",
        data=_related(envelope, (cid, signed_pdf), disposition=sent),
        headers=hub.h(TAY_NINH_STC),
    ) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
        raw = f"Content-Type: {r.headers['Content-Type']}\r\n\r\n".encode() + await r.read()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    first, second = message.iter_parts()
    assert first["Content-Disposition"] is None  # the envelope, not a file named by a digest
    assert second.get_filename() == name
    assert second.get_payload(decode=True) == signed_pdf


async def test_a_pdf_signed_under_an_untrusted_pki_logs_no_traceback(
    hub: Hub, pki: TestPKI, other_pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    pdf = await sign_pdf(sample_pdf("Ky boi PKI khac"), other_pki.key(f"agency-{TAY_NINH_STC}"))
    caplog.set_level(logging.DEBUG, logger="pyhanko")
    caplog.set_level(logging.DEBUG, logger="pyhanko_certvalidator")
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), pdf)) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (422, "signature-invalid"), body
    told = [rec for rec in caplog.records if rec.name.startswith("pyhanko")]
    assert any("Failed to build path" in rec.getMessage() for rec in told), told
    assert not [rec for rec in told if rec.exc_info or rec.stack_info]
    assert "Traceback" not in caplog.text


async def test_a_pdf_signed_pkcs1_by_an_rsa_pss_key_is_a_422_saying_why(
    hub: Hub, pki: TestPKI, pss: Path
) -> None:
    """Its reason was "malformed signature: AssertionError" (pyHanko's assert on the key)."""
    from tests.signing.rsa_pss import UncheckedKey

    pdf = await sign_pdf(sample_pdf("Ky boi khoa RSA-PSS"), UncheckedKey(pss))
    before = await hub.store_counts()
    async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), pdf)) as r:
        status, slug, body = await _problem(r)
    assert (status, slug) == (422, "signature-invalid"), body
    why = (
        "signature algorithm sha256_rsa (RSA PKCS#1 v1.5) not allowed: the certificate's key is "
        "RSA-PSS (id-RSASSA-PSS), restricted to PSS signatures"
    )
    assert body["attachment"] == "cong-van.pdf" and why in body["detail"], body
    assert await hub.store_counts() == before


async def test_a_relative_namespace_uri_is_invalid_edxml_on_both_endpoints(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    """Found by probing: one xmlns:n="u" anywhere made libxml2's canonicalisation fail, and the
    C14NError escaped as a 500, from a package and from a status message alike."""
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    relative = data.replace(b"<edXML:MessageHeader", b'<edXML:MessageHeader xmlns:n="u"', 1)
    assert relative != data
    async with await hub.send(TAY_NINH_STC, relative) as r:
        status, slug, body = await _problem(r)
        assert (status, slug) == (400, "invalid-edxml"), body
        assert "namespace URI must be absolute" in body["detail"], body
    doc = await _delivered_to_nghe_an(hub, data)
    message = status_message(pki, NGHE_AN, "000.00.11.H53,2020/10/30,2491/STC-BCTC", "01")
    bad = message.replace(b"xmlns:edXML=", b'xmlns:n="u" xmlns:edXML=', 1)
    assert bad != message
    async with await hub.status(NGHE_AN, doc, bad) as r:
        status, slug, body = await _problem(r)
        assert (status, slug) == (400, "invalid-edxml"), body


async def test_a_package_that_stops_arriving_is_a_408_and_leaves_nothing_staged(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: an agency that sent the first bytes of a package and stopped held its
    connection and its staging folder for ever."""
    from gateway.api import common

    monkeypatch.setattr(common, "BODY_IDLE_S", 0.5)
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            + f"Authorization: Bearer {hub.h(TAY_NINH_STC)['Authorization'][7:]}\r\n".encode()
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data[:1000]
        )
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # to EOF: it must close
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert json.loads(body)["type"] == PROBLEM + "request-timeout"
    assert await hub.store_counts() == {
        "documents": 0, "deliveries": 0, "statuses": 0, "blobs": 0, "staged": 0
    }  # fmt: skip


async def test_a_charset_other_than_utf8_is_415_on_every_document_body(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    """edXML is UTF-8, and a charset parameter outranks the XML declaration (RFC 7303): a
    recipient that honours charset=utf-16 reads other text than the hub checked. Refused, as
    JSON bodies are; nothing is kept."""
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    message = status_message(pki, NGHE_AN, "000.00.11.H53,2020/10/30,2491/STC-BCTC", "01")
    before = await hub.store_counts()
    for charset in ("utf-16", "iso-8859-1", "UTF-16LE", "windows-1258"):
        ctype = f"application/xml; charset={charset}"
        async with await hub.http.post(
            hub.url + "/v1/documents",
            data=data,
            headers=hub.h(TAY_NINH_STC, **{"Content-Type": ctype}),
        ) as r:
            assert r.status == 415, await r.text()  # it was 202: accepted and forwarded
            status, slug, body = await _problem(r)
        assert (status, slug) == (415, "unsupported-media-type"), body
        assert body["detail"] == f"send edXML in UTF-8, not {charset}"
        w = aiohttp.MultipartWriter("related")
        w.append(data, {"Content-Type": ctype, "Content-ID": "<edxml>"})
        async with await hub.http.post(
            hub.url + "/v1/documents", data=w, headers=hub.h(TAY_NINH_STC)
        ) as r:
            status, slug, body = await _problem(r)
        assert (status, slug) == (415, "unsupported-media-type"), body
    assert await hub.store_counts() == before

    # UTF-8, however spelt, is accepted; then a status, refused and accepted alike.
    ctype = 'application/xml; charset="UTF-8"'
    async with await hub.http.post(
        hub.url + "/v1/documents", data=data, headers=hub.h(TAY_NINH_STC, **{"Content-Type": ctype})
    ) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["X-Lienthong-Document"]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
    url = f"{hub.url}/v1/documents/{doc}/status"
    for charset, expected in (("iso-8859-1", 415), ("utf-8", 201)):
        headers = hub.h(NGHE_AN, **{"Content-Type": f"text/xml; charset={charset}"})
        async with hub.http.post(url, data=message, headers=headers) as r:
            assert r.status == expected, await r.text()


@pytest.mark.parametrize(
    "conditions",
    [
        pytest.param({"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, id="unmodified"),
        pytest.param({"If-Match": '"not-this-one"'}, id="if-match"),
        pytest.param({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, id="modified"),
        pytest.param({"If-None-Match": "*"}, id="if-none-match"),
        pytest.param({"Range": "bytes=99999999-"}, id="range-past-the-end"),
        pytest.param({"Range": "bytes=0-9"}, id="range"),
    ],
)
async def test_a_fetch_answers_the_whole_document_whatever_range_or_condition_it_names(
    hub: Hub, pki: TestPKI, signed_pdf: bytes, conditions: dict[str, str]
) -> None:
    """Found by probing: the file answer judged these headers on its own, after the fetch had
    recorded the document delivered: 412, 304 or 416 with an empty body (no problem+json), or a
    206 with ten bytes of it, each counted a 200 in the access log and the metrics — and the
    recipient could ack a document it never received. A fetch delivers: it is no cacheable read
    of a file, and answers the whole document, 200, whatever it is asked."""
    async with await hub.send(
        TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    ) as r:
        assert r.status == 202
        doc = r.headers["X-Lienthong-Document"]
    url = f"{hub.url}/v1/documents/{doc}"
    async with hub.http.get(url, headers=hub.h(NGHE_AN, **conditions)) as r:
        first = await r.read()
        assert r.status == 200, (r.status, first[:300])
        assert r.content_type == "application/xml"
        assert int(r.headers["Content-Length"]) == len(first)
        assert "Content-Range" not in r.headers and "ETag" not in r.headers
    async with hub.http.get(url, headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200
        assert await r.read() == first and first.startswith(b"<?xml")
    async with hub.http.get(hub.url + "/metrics") as r:
        metrics = await r.text()
    assert 'route="/v1/documents/{id}",status="200"} 2.0' in metrics


async def test_100_continue_invites_a_package_only_from_a_sender_that_may_send_it(
    hub: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    """Found by probing: aiohttp told every ``Expect: 100-continue`` client to send its body
    before the gateway knew who it was; a refusal now comes instead, and ends the connection."""
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)

    def head(who: str) -> bytes:
        return (
            b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/xml\r\nExpect: 100-continue\r\n"
            + f"Authorization: {hub.h(who)['Authorization']}\r\n".encode()
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
        )

    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head("outsider"))  # a subsystem without the documents right
        refused = await asyncio.wait_for(reader.read(), timeout=10)  # to EOF: it must close
    finally:
        writer.close()
    assert refused.startswith(b"HTTP/1.1 403 "), refused[:300]
    assert json.loads(refused.partition(b"\r\n\r\n")[2])["type"] == PROBLEM + "forbidden-service"

    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head(TAY_NINH_STC))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
