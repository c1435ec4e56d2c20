"""``lienthong docs send|inbox`` over real sockets: against the gateway (its document API and hub),
or against a recorder that counts what reaches it (a usage error is told before anything is sent).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.exchange.receipt import read_receipt
from signing.testing import TestPKI
from tests.e2e.test_documents import TOKENS, Hub, running_hub

from .factories import NGHE_AN, SAMPLES, TAY_NINH_STC


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that records every request it gets (and answers each 500)."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def _cli(url: str, who: str, *args: str) -> Result:
    env = {"LIENTHONG_URL": url, "LIENTHONG_TOKEN": TOKENS[who]}
    # The CLI runs its own event loop: in a thread, beside the servers on this one.
    return await asyncio.to_thread(CliRunner().invoke, main, ["docs", *args], env=env)


def _key(pki: TestPKI, agency: str) -> str:
    return str(pki.key_path(f"agency-{agency}"))


# Files that start with "<" but are no edXML package. The DOCTYPE's entities are never expanded:
# the file is wrapped as the bytes it is.
NOT_PACKAGES = {
    "bao-cao.xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<BaoCao><SoLieu>42</SoLieu></BaoCao>\n',
    "thong-bao.html": b"<!DOCTYPE html>\n<html><body>Th\xc3\xb4ng b\xc3\xa1o<br></body></html>\n",
    "logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect/></svg>\n',
    "entities.xml": (
        b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>\n<x>&c;&c;&c;</x>\n'
    ),
    # The root's name is edXML, but in no edXML namespace.
    "other-edxml.xml": b'<edXML xmlns="urn:example:other"><a/></edXML>\n',
    "not-xml.xml": b"<<< not XML at all\n",
}


async def test_send_wraps_an_xml_html_or_svg_file_that_is_no_edxml_package(
    hub: Hub, pki: TestPKI, tmp_path: Path
) -> None:
    """Found by probing: any file starting with "<" was taken for an edXML package, so an XML
    report, an HTML page or an SVG could not be wrapped and signed as the README offers: exit 1,
    "the root element must be edXML:edXML, not BaoCao", or "doctype-forbidden" for HTML. A file
    is now sent as it is only when its root element is edXML's; any other is wrapped."""
    for n, (name, content) in enumerate(NOT_PACKAGES.items()):
        path = tmp_path / name
        path.write_bytes(content)
        receipt_out = tmp_path / f"{name}.receipt.xml"
        # one line of text edXML carries; each its own number, as a register gives
        result = await _cli(hub.url, TAY_NINH_STC, "send", str(path), "--to", NGHE_AN,
                            "--from", TAY_NINH_STC, "--key", _key(pki, TAY_NINH_STC),
                            "--number", str(300 + n), "--receipt-out", str(receipt_out))  # fmt: skip
        assert result.exit_code == 0, (name, result.output)
        receipt = read_receipt(receipt_out.read_bytes())
        (attachment,) = receipt.attachments
        # The hub decoded the attachment: the file's very bytes, under its name.
        assert attachment.name == name
        assert attachment.sha256 == hashlib.sha256(content).hexdigest(), name
    # Without what wrapping needs, the file is named as no package (a usage error, nothing sent).
    path = tmp_path / "thong-bao.html"
    refused = await _cli(hub.url, TAY_NINH_STC, "send", str(path), "--to", NGHE_AN)
    assert refused.exit_code == 2, refused.output
    assert len(refused.output.strip().splitlines()) == 1, refused.output
    assert "is not an edXML package" in refused.output and "--number" in refused.output
    # An edXML package still goes as it is: its own addressing is checked against --to.
    package = SAMPLES / "cong-van-stc-tay-ninh.xml"
    wrong = await _cli(hub.url, TAY_NINH_STC, "send", str(package), "--to", "000.00.00.G15")
    assert wrong.exit_code == 2 and "addressed to 000.00.00.H41" in wrong.output


async def test_send_refuses_malformed_arguments_before_anything_is_sent(
    recorder: tuple[str, list[str]], pki: TestPKI, tmp_path: Path
) -> None:
    """Found by probing: ``--to bogus`` was signed, sent and refused by the gateway (exit 1, the
    XSD's words); the README makes a malformed argument a usage error, told in one line before
    anything is sent, as ``docs status`` does."""
    url, seen = recorder
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    package = str(SAMPLES / "cong-van-stc-tay-ninh.xml")
    wrap = ["--key", _key(pki, TAY_NINH_STC)]
    cases = [
        ("--to", ["send", str(note), "--to", "bogus", "--from", TAY_NINH_STC, *wrap, "--number", "7"]),
        ("--to", ["send", str(note), "--to", NGHE_AN, "--to", "000.00.00.h41", "--from",
                  TAY_NINH_STC, *wrap, "--number", "7"]),
        ("--to", ["send", package, "--to", "bogus"]),
        ("--from", ["send", str(note), "--to", NGHE_AN, "--from", "bogus", *wrap, "--number", "7"]),
        ("--number", ["send", str(note), "--to", NGHE_AN, "--from", TAY_NINH_STC, *wrap,
                      "--number", "7,8"]),
        ("--number", ["send", str(note), "--to", NGHE_AN, "--from", TAY_NINH_STC, *wrap,
                      "--number", "  "]),
        ("--notation", ["send", str(note), "--to", NGHE_AN, "--from", TAY_NINH_STC, *wrap,
                        "--number", "7", "--notation", "CV,X"]),
    ]  # fmt: skip
    for option, args in cases:
        result = await _cli(url, TAY_NINH_STC, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert option in result.output, result.output
    assert seen == []


async def test_send_strips_the_blanks_around_a_number(
    hub: Hub, pki: TestPKI, tmp_path: Path
) -> None:
    """Found by probing: ``--number " 12 "`` passed the CLI's blank check but kept its blanks,
    and the hub refused the DocumentId it made (exit 1, "is not three parts")."""
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    result = await _cli(hub.url, TAY_NINH_STC, "send", str(note), "--to", NGHE_AN,
                        "--from", TAY_NINH_STC, "--key", _key(pki, TAY_NINH_STC),
                        "--number", " 12 ", "--notation", " STC-BCTC ", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count('"document_id"') == 1
    assert ',12/STC-BCTC"' in result.output, result.output


async def test_inbox_names_a_next_page_only_when_more_follow(
    hub: Hub, pki: TestPKI, tmp_path: Path
) -> None:
    """Found by probing: ``docs inbox`` printed ``next: --after N`` on its last, short page."""
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    sent = await _cli(hub.url, TAY_NINH_STC, "send", str(note), "--to", NGHE_AN,
                      "--from", TAY_NINH_STC, "--key", _key(pki, TAY_NINH_STC), "--number", "12")  # fmt: skip
    assert sent.exit_code == 0, sent.output
    box = await _cli(hub.url, NGHE_AN, "inbox")
    assert box.exit_code == 0, box.output
    lines = box.output.strip().splitlines()
    assert len(lines) == 1 and "next" not in box.output, lines


async def test_an_error_answer_without_a_body_is_told_in_one_line(
    recorder: tuple[str, list[str]],
) -> None:
    """Found while testing the above: a 500 with an empty body (a proxy's, a crashed server's)
    made the CLI fail on reading its problem (None) with a traceback."""
    url, seen = recorder
    result = await _cli(url, NGHE_AN, "inbox")
    assert (result.exit_code, result.output) == (1, "Error: HTTP 500\n")
    assert seen == ["GET /v1/documents/inbox"]


@pytest.mark.parametrize(
    "url", ["notaurl", "127.0.0.1:8080", "ftp://127.0.0.1", "http://", "http://h:99999"]
)
@pytest.mark.parametrize(
    "command", [["inbox"], ["status", "d0"], ["send", "FILE", "--to", NGHE_AN]]
)
def test_a_url_that_names_no_gateway_is_a_usage_error(
    url: str, command: list[str], tmp_path: Path
) -> None:
    """Found by probing: ``docs inbox --url notaurl`` said ``cannot reach the gateway:
    notaurl/v1/documents/inbox`` (exit 1), ``send`` after building its package; a --url that is
    no http(s) URL is a malformed argument (exit 2), told before anything is read or sent."""
    args = [tmp_path.joinpath("note.txt") if a == "FILE" else a for a in command]
    tmp_path.joinpath("note.txt").write_bytes(b"hello\n")
    result = CliRunner().invoke(
        main, ["docs", *map(str, args), "--url", url, "--token", "t"], prog_name="lienthong"
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert f"Invalid value for '--url': {url!r} is not an http:// or https:// URL" in result.stderr
