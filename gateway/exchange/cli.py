"""``lienthong docs send|inbox|status``: an agency's side of the exchange, against a running gateway.

The gateway is named by ``--url`` + ``--token`` (or ``$LIENTHONG_URL`` / ``$LIENTHONG_TOKEN``), or
by ``--config`` (``$LIENTHONG_CONFIG``: its ``[gateway] listen``, and the token of its only
subsystem holding ``documents.exchange`` unless ``--token`` picks one). Exit status is 0 only on
success; a refusal prints the problem's type and detail on stderr and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import unicodedata
import xml.parsers.expat
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import click

from connectors.identifiers import InvalidIdentifier, check_agency_id
from gateway.exchange.builder import FileAttachment, build_status, write_package
from gateway.exchange.check import certificate_agency
from gateway.exchange.edxml import PROLOG_LIMIT
from gateway.exchange.errors import ExchangeError, InvalidEdxml
from gateway.exchange.model import (
    NS,
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
    format_date,
    parse_date,
)
from gateway.exchange.receipt import read_receipt
from gateway.exchange.status import MEANINGS
from gateway.exchange.stream import scan_file
from gateway.exchange.xmldsig import sign_bytes, sign_file
from signing.errors import SigningError
from signing.files import discard_part, fsync_dir, open_locked_part, remove_abandoned_parts

__all__ = ["commands", "docs"]

T = TypeVar("T")


class _Conn:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


def _connection(config: Path | None, url: str | None, token: str | None) -> _Conn:
    if token and not all("!" <= c <= "~" for c in token):
        # It goes into a header line, where a newline would end it (aiohttp refuses with a
        # traceback); RFC 6750's token is visible ASCII.
        raise click.BadParameter(
            "a bearer token is visible ASCII, with no space", param_hint="--token"
        )
    from gateway.settings import is_http_url, shown_url

    if url:
        if not is_http_url(url):
            # Else told as "cannot reach the gateway: notaurl/v1/documents/inbox" (exit 1), and
            # only once a package was built and signed.
            raise click.BadParameter(
                f"{shown_url(url)!r} is not an http:// or https:// URL with a host "
                "(e.g. http://127.0.0.1:8080)",
                param_hint="'--url'",
            )
        if not token:
            raise click.UsageError("--url needs --token (or $LIENTHONG_TOKEN)")
        return _Conn(url, token)
    if config is None:
        raise click.UsageError("name the gateway: --url and --token, or --config")
    from gateway.app import base_url_of
    from gateway.settings import SettingsError, load_settings

    try:
        settings = load_settings(config)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if not token:
        holders = [s for s in settings.subsystems if "documents.exchange" in s.rights and s.token]
        if len(holders) != 1:
            raise click.UsageError(
                "the config has no single documents.exchange subsystem: pass --token"
            )
        token = holders[0].token
    assert token is not None
    scheme = "https" if settings.gateway.tls_cert else "http"
    return _Conn(base_url_of(settings.gateway.listen).replace("http", scheme, 1), token)


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--config",
                type=click.Path(dir_okay=False, path_type=Path),
                envvar="LIENTHONG_CONFIG",
            ),
            click.option("--url", envvar="LIENTHONG_URL", help="gateway base URL"),
            click.option("--token", envvar="LIENTHONG_TOKEN", help="bearer token"),
            click.option("--json", "as_json", is_flag=True, help="machine-readable output"),
        ]
    ):
        f = option(f)
    return f


def _run(work: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as http:
            return await work(http)

    try:
        return asyncio.run(main())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach the gateway: {exc}") from None
    except ExchangeError as exc:
        raise click.ClickException(f"{exc.slug}: {exc.detail}") from None


async def _check(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 400:
        return
    try:
        problem = await resp.json(content_type=None)
        if not isinstance(problem, dict):  # an empty body (None), or JSON but no problem
            raise ValueError(problem)
        message = f"{problem.get('type', resp.status)}: {problem.get('detail', '')}"
        if str(problem.get("type", "")).endswith(":duplicate-conflict") and problem.get("id"):
            # A retry of `send --key` signs again, so it is other bytes than the package the
            # hub accepted: say where that one is.
            message += f" (accepted as {problem['id']}: lienthong docs status {problem['id']})"
    except (ValueError, aiohttp.ContentTypeError):
        message = f"HTTP {resp.status}"
    raise click.ClickException(message)


def _key(spec: str) -> Any:
    from signing.keys import load_key

    try:
        return load_key(spec)
    except SigningError as exc:
        raise click.ClickException(f"--key: {exc}") from None


@click.group("docs")
def docs() -> None:
    """Send and receive edXML documents through the hub."""


def _agency_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--to``/``--from``: agency ids (shared/spec/identifiers.md), checked before anything is
    signed or sent (the hub would refuse the package in the XSD's words)."""
    for agency in value if isinstance(value, tuple) else (value,):
        if agency is None:
            continue
        try:
            check_agency_id(agency)
        except InvalidIdentifier as exc:
            raise click.BadParameter(f"{agency!r} is not an agency id: {exc.reason}") from None
    return value


def _code_part(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--number``/``--notation``: a part of the DocumentId ``{OrganId},{yyyy/MM/dd},
    {CodeNumber}/{CodeNotation}``, which a comma would split, without the blanks around it
    (which the hub refuses in a DocumentId)."""
    if value is None:
        return None
    value = value.strip()
    if "," in value:
        raise click.BadParameter(
            f"{value!r} holds a comma, which separates the parts of the DocumentId"
        )
    return value


@docs.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "to",
    multiple=True,
    required=True,
    callback=_agency_ids,
    help="recipient agency id (repeat)",
)
@click.option(
    "--from",
    "sender",
    callback=_agency_ids,
    help="your agency id (when FILE is not yet a package)",
)
@click.option("--key", help="signing key (PEM, .p12, pkcs11: URI) to package and sign FILE")
@click.option("--subject", default="", help="Subject of the Công văn built around FILE")
@click.option(
    "--number",
    callback=_code_part,
    help="CodeNumber from your register (when FILE is not yet a package)",
)
@click.option(
    "--notation", default="CV", show_default=True, callback=_code_part, help="CodeNotation"
)
@click.option("--receipt-out", type=click.Path(dir_okay=False, path_type=Path))
@_options
def send(
    file: Path,
    to: tuple[str, ...],
    sender: str | None,
    key: str | None,
    subject: str,
    number: str | None,
    notation: str,
    receipt_out: Path | None,
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Send FILE: an edXML package (its root element edXML's) as it is (its To must be --to),
    or any other file (a signed PDF, an XML, HTML or SVG document…) wrapped into a signed Công
    văn from --from to --to with --key."""
    conn = _connection(config, url, token)
    if receipt_out is not None and not receipt_out.parent.is_dir():
        # Checked before sending: once the hub has accepted the document, a failure to keep its
        # receipt would look like a failure to send.
        raise click.UsageError(f"--receipt-out: no folder {receipt_out.parent}")
    for option, value in (("--subject", subject), ("--number", number), ("--notation", notation)):
        _one_line(option, value or "")
    shown = _shown(file)
    with tempfile.TemporaryDirectory(prefix="lienthong-docs-") as tmp:
        try:
            package = _package(file, to, sender, key, subject, number, notation, Path(tmp))
        except ExchangeError as exc:
            raise click.ClickException(f"{shown}: {exc.slug}: {exc.detail}") from None
        except (SigningError, OSError, ValueError) as exc:
            # ValueError: what lxml says of text it cannot put in XML (checked above; belt and
            # braces for what reaches it otherwise).
            raise click.ClickException(f"{shown}: {exc}") from None

        async def work(http: aiohttp.ClientSession) -> tuple[bytes, dict[str, str]]:
            body = await asyncio.to_thread(package.open, "rb")
            with body:  # aiohttp reads a file body in its executor
                async with http.post(
                    conn.url + "/v1/documents",
                    data=body,
                    headers=conn.headers(**{"Content-Type": "application/xml"}),
                ) as resp:
                    await _check(resp)
                    return await resp.read(), dict(resp.headers)

        receipt_bytes, headers = _run(work)
    try:
        receipt = read_receipt(receipt_bytes)
    except ExchangeError as exc:
        raise click.ClickException(
            f"the answer is not a lienthong receipt ({exc.detail}): check --url; if it names "
            "the gateway, the document may have been accepted (see its inbox or status)"
        ) from None
    if receipt_out is not None:
        try:
            receipt_out.write_bytes(receipt_bytes)
        except OSError as exc:
            raise click.ClickException(
                f"accepted {receipt.id} {receipt.document_id}, but the receipt could not be "
                f"written to {receipt_out}: {exc.strerror}"
            ) from None
    summary = {
        "id": receipt.id,
        "document_id": receipt.document_id,
        "to": list(receipt.recipients),
        "received_at": receipt.received_at.isoformat(),
        "package_sha256": receipt.package_sha256,
        "duplicate": headers.get("X-Lienthong-Duplicate") == "true",
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        note = " (duplicate: the original receipt)" if summary["duplicate"] else ""
        click.echo(f"accepted {receipt.id} {receipt.document_id}{note}")


def _shown(path: Path) -> str:
    """``path`` as it can be printed (a name that is not UTF-8 shows its bytes escaped)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _one_line(option: str, value: str) -> None:
    """Refuse (UsageError) text edXML cannot carry or that is not one line: control characters,
    and bytes of the command line that were not UTF-8 (surrogates)."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in "\ufffe\uffff":
            what = (
                "is not valid UTF-8"
                if unicodedata.category(ch) == "Cs"
                else (f"holds the control character U+{ord(ch):04X}")
            )
            raise click.UsageError(f"{option} {what}")


def _issued(document_id: str) -> date | None:
    """The date in a DocumentId (``{OrganId},{yyyy/MM/dd},{number}``), None if it has none."""
    parts = document_id.split(",")
    try:
        return parse_date(parts[1]) if len(parts) == 3 else None
    except InvalidEdxml:
        return None


def _package(
    file: Path,
    to: tuple[str, ...],
    sender: str | None,
    key: str | None,
    subject: str,
    number: str | None,
    notation: str,
    tmp: Path,
) -> Path:
    with file.open("rb") as f:
        head = f.read(2 * PROLOG_LIMIT)
    if _root_element(head) == _EDXML_ROOT:
        scan = scan_file(file, None, max_bytes=1 << 62)
        named = [
            el.text.strip()
            for el in scan.root.iterfind(".//{*}MessageHeader/{*}To/{*}OrganId")
            if el.text
        ]
        if set(named) != set(to):
            raise click.UsageError(
                f"the package is addressed to {', '.join(named)}, not {', '.join(to)}"
            )
        if key:
            if scan.root.find(".//{http://www.w3.org/2000/09/xmldsig#}Signature") is not None:
                # A second signature makes the package one the hub refuses ("expected one
                # ds:Signature"): say so here, before anything is sent.
                raise click.UsageError(
                    "the package is signed already: send it without --key (or sign the "
                    "unsigned package)"
                )
            signed = tmp / "signed.xml"
            sign_file(file, signed, _key(key))
            return signed
        return file
    if not sender or not key or not number or not notation:
        raise click.UsageError(
            f"{_shown(file)} is not an edXML package: to wrap it into one give --from, --key "
            "and --number (and a --notation)"
        )
    try:
        file.name.encode("utf-8")
    except UnicodeEncodeError:
        raise click.ClickException(
            f"{_shown(file)}: the file name is not valid UTF-8 (edXML names attachments in "
            "UTF-8): rename the file"
        ) from None
    today = datetime.now(VN_TZ).date()
    header = MessageHeader(
        from_=Organization(sender),
        to=tuple(Organization(t) for t in to),
        document_id=f"{sender},{format_date(today)},{number}/{notation}",
        code=Code(number, notation),
        promulgation_info=PromulgationInfo("", today),
        document_type=DocumentType(1, "Công văn"),
        subject=subject or file.name,
    )
    trace = TraceHeaderList(
        (TraceHeader(sender, datetime.now(UTC)),), Business(header.document_id, 0)
    )
    ctype = "application/pdf" if file.suffix.lower() == ".pdf" else "application/octet-stream"
    unsigned = tmp / "unsigned.xml"
    with unsigned.open("wb") as out:
        write_package(out, header, trace, [FileAttachment(file, file.name, ctype)])
    signed = tmp / "package.xml"
    sign_file(unsigned, signed, _key(key))
    return signed


_EDXML_ROOT = f"{NS} edXML"  # the root element's name as expat gives it (namespace, space, name)


class _Root(Exception):
    """The root element's name, raised from expat's first start-element event."""


def _root_element(head: bytes) -> str | None:
    """The name of the root element in ``head`` (a file's first bytes), as expat gives it with
    namespaces (``{namespace} {name}``, or the name alone), or None when ``head`` has none
    that is XML. Only the root's start tag is parsed: the prolog before it (comments,
    processing instructions, a DOCTYPE) is skipped as text, so a DOCTYPE is never processed —
    no entity in it is expanded, no DTD read — and an HTML page's ``<!DOCTYPE html>`` is just
    bytes of a file to wrap."""
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    while i < len(head) and not (head.startswith(b"<", i) and head[i + 1 : i + 2] not in b"!?"):
        if head[i] in b" \t\r\n":
            i += 1
            continue
        if head.startswith(b"<?", i):
            end, skip = head.find(b"?>", i + 2), 2
        elif head.startswith(b"<!--", i):
            end, skip = head.find(b"-->", i + 4), 3
        elif head.startswith(b"<!DOCTYPE", i):
            end, skip = _doctype_end(head, i), 1
        else:
            return None  # text before the root, or another declaration: no XML document
        if end < 0:
            return None
        i = end + skip

    def start(name: str, attributes: Any) -> None:
        raise _Root(name)

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    try:
        parser.Parse(head[i:], False)
    except _Root as root:
        return str(root.args[0])
    except xml.parsers.expat.ExpatError:
        return None
    return None


def _doctype_end(head: bytes, at: int) -> int:
    """The offset of the ``>`` that ends the DOCTYPE declaration at ``at`` (-1 if ``head`` holds
    no end): quoted strings, comments and the internal subset (``[…]``) read as text."""
    depth, quote, i = 0, 0, at + 2
    while i < len(head):
        c = head[i]
        if quote:
            quote = 0 if c == quote else quote
        elif c in b"\"'":
            quote = c
        elif head.startswith(b"<!--", i):
            end = head.find(b"-->", i + 4)
            if end < 0:
                return -1
            i = end + 2
        elif c == ord("["):
            depth += 1
        elif c == ord("]"):
            depth -= 1
        elif c == ord(">") and depth <= 0:
            return i
        i += 1
    return -1


def _is_fetched_name(name: str) -> bool:
    """Whether ``name`` is one ``inbox --fetch`` gives a package (``<id>.xml``, ``<id>.mime``)."""
    return name.endswith((".xml", ".mime"))


async def _save(resp: aiohttp.ClientResponse, head: bytes, target: Path) -> None:
    """Write ``head`` and then ``resp``'s body to ``target``, whole or not at all: to a part of
    this fetch's own beside it (signing.files: another fetch at the same time writes its own,
    and the next fetch removes one a killed fetch left), synced, then renamed into place — over
    an earlier copy of the same document, fetched again while still in the inbox. Readable by
    its owner alone, as the store: a letter can name citizens. Raises ClickException when it
    cannot be written."""
    try:
        part, out = await asyncio.to_thread(open_locked_part, target)
        try:  # file I/O off the loop, one megabyte at a time
            if head:
                await asyncio.to_thread(out.write, head)
            async for chunk in resp.content.iter_chunked(1 << 20):
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(_put_in_place, out, part, target)
        finally:
            await asyncio.to_thread(discard_part, part, out)
    except OSError as exc:
        if isinstance(exc, aiohttp.ClientError):  # the hub's connection, not the file
            raise
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from None


def _put_in_place(out: IO[bytes], part: Path, target: Path) -> None:
    """Sync ``part`` (open as ``out``) and rename it to ``target``: a power cut leaves one or the
    other, never a package cut short under the package's name."""
    out.flush()
    os.fsync(out.fileno())
    os.replace(part, target)
    fsync_dir(target.parent)


@docs.command("inbox")
@click.option("--after", default="", help="cursor from a previous answer")
@click.option(
    "--fetch",
    "fetch_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="download packages here",
)
@click.option("--ack", is_flag=True, help="acknowledge each package once downloaded")
@_options
def inbox(
    after: str,
    fetch_dir: Path | None,
    ack: bool,
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List (and optionally download and acknowledge) the documents waiting for you."""
    if ack and fetch_dir is None:
        raise click.UsageError("--ack needs --fetch: acknowledge only what you have")
    conn = _connection(config, url, token)
    if fetch_dir is not None:
        try:
            fetch_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(
                f"--fetch: cannot make {fetch_dir}: {exc.strerror}"
            ) from None
        remove_abandoned_parts(fetch_dir, _is_fetched_name)

    async def work(http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(
            conn.url + "/v1/documents/inbox",
            params={"after": after} if after else None,
            headers=conn.headers(),
        ) as resp:
            await _check(resp)
            page: dict[str, Any] = await resp.json()
        for item in page["items"] if fetch_dir is not None else []:
            assert fetch_dir is not None
            async with http.get(
                f"{conn.url}/v1/documents/{item['id']}", headers=conn.headers()
            ) as resp:
                await _check(resp)
                # An application/xml package is <id>.xml; a multipart/related one (the envelope
                # and its parts) is <id>.mime: a MIME entity, its Content-Type (which names the
                # boundary) written at its head so that any MIME reader can take it apart.
                head = b""
                target = fetch_dir / f"{item['id']}.xml"
                if resp.content_type == "multipart/related":
                    target = fetch_dir / f"{item['id']}.mime"
                    content_type = resp.headers.get("Content-Type", "")
                    head = f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n".encode()
                await _save(resp, head, target)
            item["file"] = str(target)
            if ack:
                async with http.post(
                    f"{conn.url}/v1/documents/{item['id']}/ack", headers=conn.headers()
                ) as resp:
                    await _check(resp)
                item["acked"] = True
        return page

    page = _run(work)
    if as_json:
        click.echo(json.dumps(page, ensure_ascii=False))
        return
    if not page["items"]:
        click.echo("inbox empty")
    for item in page["items"]:
        click.echo(
            f"{item['id']}  {item['document_id']}  from {item['from']}  {item['size']} B  {item.get('file', '')}"
        )
    if page.get("next"):
        click.echo(f"next: --after {page['next']}")


def _status_sender(view: dict[str, Any], doc_id: str, sender: str | None, key: Any) -> str:
    """The agency a status for ``view``'s document speaks for: ``--from``, else the recipient the
    hub shows the caller. Raises UsageError when that is the document's sender, who only reads
    statuses: named by ``--from`` or by the key's certificate (the hub binds the signer to From
    by it), or seen from the view, which shows a recipient itself alone and the sender every
    recipient (none, one, or more)."""
    origin = view["from"]
    if origin in (sender, certificate_agency(key.certificate)):
        raise click.UsageError(
            f"only a recipient sends statuses: {doc_id} is {origin}'s own document"
        )
    if sender:
        return sender
    shown: list[str] = [r["recipient"] for r in view["recipients"]]
    if not shown:
        raise click.UsageError(
            f"only a recipient sends statuses: the hub shows you no recipient of {doc_id} to "
            "send as"
        )
    if len(shown) > 1:
        raise click.UsageError(
            f"only a recipient sends statuses: the hub shows you every recipient of {doc_id} "
            f"({', '.join(shown)}), as it does the document's sender"
        )
    return shown[0]


@docs.command("status")
@click.argument("doc_id")
@click.argument("code", required=False)
@click.option("--description", default="", help="Description of the status")
@click.option(
    "--from", "sender", help="your agency id (defaults to the recipient the hub shows you)"
)
@click.option("--key", help="signing key for the status message")
@click.option("--staff", default="", help="StaffInfo/Staff")
@_options
def status(
    doc_id: str,
    code: str | None,
    description: str,
    sender: str | None,
    key: str | None,
    staff: str,
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Show DOC_ID's per-recipient history, or send status CODE (01-16) for it."""
    conn = _connection(config, url, token)
    for option, value in (("--description", description), ("--staff", staff)):
        _one_line(option, value)
    if code is not None and code not in MEANINGS:
        raise click.UsageError(f"CODE must be one of {', '.join(MEANINGS)}")
    if code is not None and not key:
        raise click.UsageError("sending a status needs --key to sign it")

    async def work(http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(
            f"{conn.url}/v1/documents/{doc_id}/status", headers=conn.headers()
        ) as resp:
            await _check(resp)
            view: dict[str, Any] = await resp.json()
        if code is None:
            return view
        assert key is not None
        signing_key = await asyncio.to_thread(_key, key)  # disk, or a token: off the loop
        me = _status_sender(view, doc_id, sender, signing_key)
        now = datetime.now(UTC)
        msg = StatusMessage(
            from_=Organization(me),
            response_for=ResponseFor(
                view["from"],
                view["document_id"].split(",")[-1],
                _issued(view["document_id"]),
                view["document_id"],
            ),
            status_code=code,
            timestamp=now,
            description=description or MEANINGS[code],
            staff_info=StaffInfo(staff=staff),
            trace=TraceHeaderList((TraceHeader(me, now),)),  # as `send` adds the sender's
        )
        body = await asyncio.to_thread(lambda: sign_bytes(build_status(msg), signing_key))
        async with http.post(
            f"{conn.url}/v1/documents/{doc_id}/status",
            data=body,
            headers=conn.headers(**{"Content-Type": "application/xml"}),
        ) as resp:
            await _check(resp)
            result: dict[str, Any] = await resp.json()
        return result

    result = _run(work)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    elif code is not None:
        click.echo(f"{doc_id}: {' → '.join(result['history'])}")
    else:
        click.echo(f"{result['id']}  {result['document_id']}  from {result['from']}")
        for r in result["recipients"]:
            codes = " → ".join(h["code"] for h in r["history"]) or "-"
            click.echo(f"  {r['recipient']}  delivery {r['delivery']}  status {codes}")


commands: list[click.Command] = [docs]
