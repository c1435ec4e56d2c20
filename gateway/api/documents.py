"""Documents: agencies send edXML packages through the hub, pull their inbox, send statuses.

Thin handlers over :class:`gateway.exchange.hub.DocumentHub`; bodies are streamed from the socket
(``request.content``), never read whole, so ``client_max_size`` does not apply and
``[gateway] max_document_bytes`` caps them instead. Every ``ExchangeError`` becomes a problem+json
with its slug. Right needed: ``documents``; the caller's agency is its subsystem's member.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.streams import StreamReader

from gateway.api.common import (
    SQL_INT_MAX,
    body_error,
    check_content_encoding,
    json_response,
    more_body,
    only_parameters,
    parse_int,
    query_flag,
    refuse_unless_accepting,
    unreadable_body,
)
from gateway.app import RUNTIME, Runtime
from gateway.auth import Identity, require
from gateway.exchange import delivery
from gateway.exchange.blobs import BlobStore
from gateway.exchange.check import CheckPolicy
from gateway.exchange.errors import (
    BlobStoreUnavailable,
    ExchangeError,
    InvalidEdxml,
    PayloadTooLarge,
    UnknownDocument,
)
from gateway.exchange.hub import AgencyRoute, DocumentHub, IncomingPart
from gateway.outbox import JobHandler
from gateway.problems import STORE_RETRY_AFTER_S, Problem, send_continue, store_unavailable
from gateway.requestid import REQUEST_ID_KEY

__all__ = ["HUB_KEY", "RIGHT", "agency_routes", "blob_dir", "hub_for", "job_handlers", "routes"]

routes = web.RouteTableDef()
RIGHT = "documents.exchange"
HUB_KEY = "documents.hub"  # in Runtime.extras: a DocumentHub, built on first use if absent
_XML = ("application/xml", "text/xml")
_CHUNK = 256 * 1024
# Content-Transfer-Encodings a part may carry (RFC 2045 §6): the identity ones, and base64,
# decoded strictly. quoted-printable is refused: an escape can straddle two chunks.
_IDENTITY_CTE = frozenset({"7bit", "8bit", "binary"})
_B64_SPACE = b" \t\r\n"
# What aiohttp raises for a multipart body it cannot read (binascii.Error is a ValueError).
_UNREADABLE = (ValueError, AssertionError, BadHttpMessage, web.RequestPayloadError)
_lock = asyncio.Lock()


def agency_routes(runtime: Runtime) -> dict[str, AgencyRoute]:
    """The hub's directory: ``[[agencies]]``, and every agency a subsystem may exchange documents
    for (it pulls its inbox). Without those, an agency allowed to send could never be answered:
    a reply addressed to it was refused as to an unknown recipient."""
    settings = runtime.settings
    pulling = {
        sub.agency: AgencyRoute(sub.agency)
        for sub in settings.subsystems
        if "documents.exchange" in sub.rights
    }
    return pulling | {a.id: AgencyRoute(a.id, a.endpoint, a.token) for a in settings.agencies}


def hub_organ_id(runtime: Runtime) -> str:
    """The hub's own agency id for its TraceHeader: ``[documents] organ_id``, else the member of
    the gateway's registry client id (``VN:GOV:<agency>:<system>``)."""
    explicit = runtime.settings.documents.organ_id
    if explicit:
        return str(explicit)
    client_id = runtime.settings.registry("portal").client_id
    parts = client_id.split(":")
    return parts[2] if len(parts) > 2 else client_id


def blob_dir(runtime: Runtime) -> Path:
    """Where packages and attachments live: ``[documents] blob_dir`` (relative to the config)."""
    return runtime.settings.path(runtime.settings.documents.blob_dir)


def job_handlers(
    runtime: Runtime, session: Callable[[], aiohttp.ClientSession]
) -> dict[str, JobHandler]:
    """The outbox handlers for push delivery (``document.push``, ``document.status.push``)."""
    # The gateway's breakers: [outbox] breaker_*, and the circuit-state gauge, as for registries.
    return dict(
        delivery.handlers(
            runtime.store,
            BlobStore(blob_dir(runtime)),
            agency_routes(runtime),
            session,
            breakers=runtime.breakers,
        )
    )


async def hub_for(runtime: Runtime) -> DocumentHub:
    """The runtime's DocumentHub (built once). Raises Problem 503 if signing is not set up."""
    hub = runtime.extras.get(HUB_KEY)
    if isinstance(hub, DocumentHub):
        return hub
    async with _lock:
        hub = runtime.extras.get(HUB_KEY)
        if isinstance(hub, DocumentHub):
            return hub
        signing = runtime.extras.get("signing")
        if signing is None:
            raise Problem(503, "documents-unavailable", "the gateway has no signing key set up")
        blobs = await asyncio.to_thread(BlobStore, blob_dir(runtime))

        def wake() -> None:
            if runtime.worker is not None:
                runtime.worker.wake()

        hub = DocumentHub(
            runtime.store,
            blobs,
            organ_id=hub_organ_id(runtime),
            agencies=agency_routes(runtime),
            trust=signing.trust,
            signer=signing.signer,
            policy=CheckPolicy(max_bytes=runtime.settings.gateway.max_document_bytes),
            on_commit=wake,
        )
        runtime.extras[HUB_KEY] = hub
        return hub


@contextmanager
def _problems(request: web.Request) -> Any:
    try:
        yield
    except BlobStoreUnavailable as exc:
        # As a database outage: the folder's path and the system's error are the operator's.
        raise store_unavailable(request, exc, title=exc.title) from None
    except ExchangeError as exc:
        retry = {"Retry-After": str(STORE_RETRY_AFTER_S)} if exc.status == 503 else None
        raise Problem(
            exc.status, exc.slug, exc.detail, title=exc.title, headers=retry, **exc.extra
        ) from None


_DOCUMENT_ID = re.compile(r"d[0-9a-f]{32}")  # the hub's ids: "d" + a uuid4's hex


def _path_id(request: web.Request) -> str:
    """The document id in the path. One that cannot be a document id is no document: 404, as an
    unknown one, without asking the store (PostgreSQL refuses a NUL in text: it was a 500)."""
    doc = request.match_info["id"]
    if _DOCUMENT_ID.fullmatch(doc) is None:
        raise Problem(
            404, UnknownDocument.slug, f"no document {doc!r}", title=UnknownDocument.title
        )
    return doc


def _agency(identity: Identity) -> str:
    return identity.subsystem.agency


def _utf8_only(charset: str | None, what: str = "edXML") -> None:
    """Raises Problem 415 for a ``charset`` other than UTF-8. edXML is UTF-8 (an XML declaration
    naming another encoding is refused), and RFC 7303 makes the charset parameter outrank the
    declaration: a recipient that honours ``charset=utf-16`` would read other text than the
    hub checked and forwarded. As for JSON bodies (``read_json``)."""
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise Problem(415, "unsupported-media-type", f"send {what} in UTF-8, not {charset}")


async def _body(
    request: web.Request,
    max_bytes: int,
    send: str = "an edXML package as application/xml or multipart/related",
) -> AsyncIterator[bytes]:
    """The request body, streamed. Raises Problem 413 / 415, and 400 ``invalid-edxml`` while
    streaming a body aiohttp cannot read (a Content-Encoding it does not have)."""
    if request.content_type not in _XML:
        raise Problem(
            415,
            "unsupported-media-type",
            f"send {send}, not {request.content_type or 'nothing'}",
        )
    _utf8_only(request.charset)
    check_content_encoding(request)
    if request.content_length is not None and request.content_length > max_bytes:
        # Refuse before reading a byte; the stream cap below covers chunked bodies.
        raise Problem(
            413,
            PayloadTooLarge.slug,
            f"{request.content_length} bytes is over {max_bytes}",
            max_bytes=max_bytes,
        )

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await more_body(request.content.read(_CHUNK))
            except web.RequestPayloadError as exc:  # e.g. a Content-Encoding it does not have
                raise unreadable_body(exc, InvalidEdxml.slug, title=InvalidEdxml.title) from None
            if not chunk:
                return
            yield chunk

    await send_continue(request)
    return chunks()


class _Base64:
    """Strict, incremental base64 (RFC 2045 §6.8): line breaks and blanks are skipped; any other
    byte outside the alphabet, data after the padding or a cut quartet raises binascii.Error.
    aiohttp's own decoder ignores stray bytes and drops what follows a padding: silently other
    bytes than the sender's."""

    def __init__(self) -> None:
        self._carry = b""
        self._padded = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk.translate(None, _B64_SPACE)
        if data and self._padded:
            raise binascii.Error("data after the base64 padding")
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        if not whole:
            return b""
        self._padded = data[whole - 1 : whole] == b"="
        return binascii.a2b_base64(data[:whole], strict_mode=True)

    def close(self) -> None:
        if self._carry:
            raise binascii.Error("the base64 data ends inside a quartet")


class _Received:
    """``request.content`` as the multipart reader sees it: each read first lets through what
    has arrived, then refuses (Problem 413) once the body received so far (after any
    Content-Encoding is undone) is over ``max_bytes``. Counted as received, not as the parts
    decode to: 200 MB of base64 blanks decode to nothing but are read all the same; and so
    also without a Content-Length (chunked), and in a preamble or in part headers."""

    def __init__(self, stream: StreamReader, max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes

    def _check(self) -> None:
        if self._stream.total_bytes > self._max:
            raise Problem(
                413,
                PayloadTooLarge.slug,
                f"the body is over {self._max} bytes",
                max_bytes=self._max,
            )

    async def read(self, n: int = -1) -> bytes:
        data = await more_body(self._stream.read(n))
        self._check()
        return data

    async def readline(self, **kwargs: Any) -> bytes:
        data = await more_body(self._stream.readline(**kwargs))
        self._check()
        return data

    async def readany(self) -> bytes:
        data = await more_body(self._stream.readany())
        self._check()
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await more_body(self._stream.readexactly(n))
        self._check()
        return data

    async def readchunk(self) -> tuple[bytes, bool]:
        data = await more_body(self._stream.readchunk())
        self._check()
        return data

    def __getattr__(self, name: str) -> Any:  # at_eof, unread_data, …: no bytes arrive
        return getattr(self._stream, name)


def _transfer_encoding(part: aiohttp.BodyPartReader, what: str) -> str:
    """The part's Content-Transfer-Encoding (lower case; ``binary`` if it names none).

    Raises Problem 415 for a Content-Encoding (a compressed part could expand past every cap
    before we see it) or a transfer encoding other than 7bit, 8bit, binary and base64."""
    if "Content-Encoding" in part.headers:
        raise Problem(
            415, "unsupported-media-type", f"{what}: Content-Encoding (compressed parts) is refused"
        )
    encoding = part.headers.get("Content-Transfer-Encoding", "binary").strip().lower()
    if encoding not in _IDENTITY_CTE and encoding != "base64":
        raise Problem(
            415,
            "unsupported-media-type",
            f"{what}: Content-Transfer-Encoding {encoding or 'empty'} is refused; "
            "send 7bit, 8bit, binary or base64",
        )
    return encoding


async def _part_chunks(
    part: aiohttp.BodyPartReader, encoding: str, what: str
) -> AsyncIterator[bytes]:
    """The part's bytes, decoded (``encoding`` from ``_transfer_encoding``). Raises Problem 400
    ``invalid-multipart`` for a part that ends badly or whose base64 is not base64."""
    decoder = _Base64() if encoding == "base64" else None
    while True:
        try:
            raw = await part.read_chunk(_CHUNK)
            if decoder is None:
                data = raw
            elif raw:
                data = decoder.feed(raw)
            else:
                decoder.close()
                data = b""
        except _UNREADABLE as exc:
            raise Problem(400, "invalid-multipart", f"{what}: {body_error(exc)}") from None
        if not raw:
            return
        if data:
            yield data


async def _multipart(
    request: web.Request, max_bytes: int
) -> tuple[AsyncIterator[bytes], AsyncIterator[IncomingPart]]:
    """The envelope (first part, or the one ``start`` names) and the attachment parts, each
    streamed. Raises Problem 400 / 413 / 415; 413 also while streaming, once more than
    ``max_bytes`` of body have come (see ``_Received``)."""
    check_content_encoding(request)
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(
            413,
            PayloadTooLarge.slug,
            f"{request.content_length} bytes is over {max_bytes}",
            max_bytes=max_bytes,
        )
    await send_continue(request)
    try:
        content = cast(StreamReader, _Received(request.content, max_bytes))
        reader = aiohttp.MultipartReader(request.headers, content)
        root = await reader.next()
    except _UNREADABLE as exc:
        raise Problem(
            400, "invalid-multipart", f"not a readable multipart body: {body_error(exc)}"
        ) from None
    if not isinstance(root, aiohttp.BodyPartReader):
        raise Problem(400, "invalid-multipart", "the first part must be the edXML envelope")
    start = parse_mimetype(request.headers.get("Content-Type", "")).parameters.get("start")
    cid = root.headers.get("Content-ID", "")
    if start and start.strip("<>") != cid.strip("<>"):
        raise Problem(400, "invalid-multipart", "the envelope (start) must be the first part")
    envelope_type = parse_mimetype(root.headers.get("Content-Type", "application/xml"))
    if f"{envelope_type.type}/{envelope_type.subtype}" not in _XML:
        raise Problem(415, "unsupported-media-type", "the first part must be application/xml")
    _utf8_only(envelope_type.parameters.get("charset"), "the edXML envelope part")
    envelope = _transfer_encoding(root, "the envelope part")

    async def parts() -> AsyncIterator[IncomingPart]:
        while True:
            try:
                part = await reader.next()
            except _UNREADABLE as exc:
                raise Problem(
                    400, "invalid-multipart", f"unreadable part: {body_error(exc)}"
                ) from None
            if part is None:
                return
            if not isinstance(part, aiohttp.BodyPartReader):
                raise Problem(400, "invalid-multipart", "nested multipart parts are refused")
            content_id = part.headers.get("Content-ID", "").strip().strip("<>")
            if not content_id:
                raise Problem(400, "invalid-multipart", "every attachment part needs a Content-ID")
            encoding = _transfer_encoding(part, f"part <{content_id}>")
            yield IncomingPart(
                content_id=f"cid:{content_id}",
                name=part.filename or "",  # none: the manifest's (check.named_parts)
                content_type=part.headers.get("Content-Type", "application/octet-stream")
                .split(";")[0]
                .strip(),
                chunks=_part_chunks(part, encoding, f"part <{content_id}>"),
            )

    return _part_chunks(root, envelope, "the envelope part"), parts()


@routes.post("/v1/documents")
async def send(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    runtime = request.app[RUNTIME]
    refuse_unless_accepting(runtime.extras)
    hub = await hub_for(runtime)
    parts = None
    if request.content_type == "multipart/related":
        body, parts = await _multipart(request, hub.policy.max_bytes)
    else:
        body = await _body(request, hub.policy.max_bytes)
    with _problems(request):
        accepted = await hub.receive(
            body,
            sender=_agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
            parts=parts,
        )
    return web.Response(
        status=202,
        body=accepted.receipt,
        content_type="application/xml",
        headers={
            "Location": f"/v1/documents/{accepted.id}",
            "X-Lienthong-Document": accepted.id,
            "X-Lienthong-Duplicate": "true" if accepted.duplicate else "false",
        },
    )


@routes.get("/v1/documents/inbox")
async def inbox(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    only_parameters(request, "after")
    hub = await hub_for(request.app[RUNTIME])
    after = parse_int(request.query.get("after") or "0")
    if after is None or not 0 <= after <= SQL_INT_MAX:
        raise Problem(
            400, "invalid-query", "after must be a cursor from a previous answer", parameter="after"
        )
    return json_response(await hub.inbox(_agency(identity), after))


# No HEAD: fetching is what delivers (the delivery becomes ``delivered``, with its audit event),
# and a HEAD must change nothing; a HEAD here is 405 (Allow: GET).
@routes.get("/v1/documents/{id}", allow_head=False)
async def fetch(request: web.Request) -> web.StreamResponse:
    identity = require(request, RIGHT)
    only_parameters(request, "original")
    asked = query_flag(request, "original")  # checked before the fetch, which delivers
    hub = await hub_for(request.app[RUNTIME])
    with _problems(request):
        doc = await hub.fetch(
            _path_id(request),
            _agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    # Recipients get the forwarded copy (with the hub's TraceHeader); the sender, or anyone
    # asking ?original=true, the bytes as received (what a strict XMLDSig tool verifies).
    original = asked or doc["sender"] == _agency(identity)
    if doc["media_type"] == "application/xml":
        path = hub.blobs.path(delivery.envelope_sha256(doc, original=original))
        return await _whole_file(path, "application/xml")
    body, content_type = await asyncio.to_thread(
        lambda: delivery.package_body(doc, hub.blobs, original=original)
    )
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _whole_file(path: Path, content_type: str) -> web.Response:
    """The file at ``path``, whole, streamed: always a 200. Not a FileResponse: that answers
    ``Range`` and ``If-*`` headers on its own once the handler has returned (412, 416, 304 or
    206, after the fetch had recorded the document delivered), with an empty body and no
    problem+json, and the access log and the metrics counted them as 200s. A fetch delivers,
    so it is no cacheable read of a file: nothing conditional, nothing partial."""
    size = (await asyncio.to_thread(path.stat)).st_size  # a blob: named by its hash, never changed

    async def chunks() -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(path.open, "rb")  # opened once it is sent
        try:
            while chunk := await asyncio.to_thread(file.read, _CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    return web.Response(
        body=chunks(), headers={"Content-Type": content_type, "Content-Length": str(size)}
    )


@routes.post("/v1/documents/{id}/ack")
async def ack(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    with _problems(request):
        result = await hub.ack(
            _path_id(request),
            _agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    return json_response(result)


@routes.post("/v1/documents/{id}/status")
async def post_status(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    refuse_unless_accepting(request.app[RUNTIME].extras)
    hub = await hub_for(request.app[RUNTIME])
    body = await _body(
        request, min(hub.policy.max_bytes, 8 << 20), "an edXML status message as application/xml"
    )
    with _problems(request):
        result = await hub.record_status(
            _path_id(request),
            body,
            sender=_agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    # The same message again (a retry after a lost reply) is answered, not recorded twice.
    return json_response(result, status=200 if result.pop("repeated", False) else 201)


@routes.get("/v1/documents/{id}/status")
async def get_status(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    with _problems(request):
        result = await hub.statuses(_path_id(request), _agency(identity))
    return json_response(result)
