"""Documents: agencies send edXML packages through the hub, pull their inbox, send statuses.

Thin handlers over :class:`gateway.exchange.hub.DocumentHub`; bodies are streamed from the socket
(``request.content``), never read whole, so ``client_max_size`` does not apply and
``[gateway] max_document_bytes`` caps them instead. Every ``ExchangeError`` becomes a problem+json
with its slug. Right needed: ``documents``; the caller's agency is its subsystem's member.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.api.common import json_response
from gateway.app import RUNTIME, Runtime
from gateway.auth import Identity, require
from gateway.exchange import delivery
from gateway.exchange.blobs import BlobStore
from gateway.exchange.check import CheckPolicy
from gateway.exchange.errors import ExchangeError, PayloadTooLarge
from gateway.exchange.hub import AgencyRoute, DocumentHub
from gateway.outbox import JobHandler
from gateway.problems import Problem
from gateway.requestid import REQUEST_ID_KEY

__all__ = ["HUB_KEY", "RIGHT", "agency_routes", "blob_dir", "hub_for", "job_handlers", "routes"]

routes = web.RouteTableDef()
RIGHT = "documents.exchange"
HUB_KEY = "documents.hub"  # in Runtime.extras: a DocumentHub, built on first use if absent
_XML = ("application/xml", "text/xml")
_CHUNK = 256 * 1024
_lock = asyncio.Lock()


def agency_routes(runtime: Runtime) -> dict[str, AgencyRoute]:
    return {a.id: AgencyRoute(a.id, a.endpoint, a.token) for a in runtime.settings.agencies}


def hub_organ_id(runtime: Runtime) -> str:
    """The hub's own agency id for its TraceHeader: ``extras["organ_id"]``, else the member of
    the gateway's registry client id (``VN:GOV:<agency>:<system>``)."""
    explicit = runtime.extras.get("organ_id")
    if explicit:
        return str(explicit)
    client_id = runtime.settings.registry("portal").client_id
    parts = client_id.split(":")
    return parts[2] if len(parts) > 2 else client_id


def blob_dir(runtime: Runtime) -> Path:
    """Where packages and attachments live: ``extras["blob_dir"]``, else ``<base_dir>/blobs``."""
    return Path(runtime.extras.get("blob_dir") or runtime.settings.base_dir / "blobs")


def job_handlers(
    runtime: Runtime, session: Callable[[], aiohttp.ClientSession]
) -> dict[str, JobHandler]:
    """The outbox handlers for push delivery (``document.push``, ``document.status.push``)."""
    return dict(
        delivery.handlers(
            runtime.store, BlobStore(blob_dir(runtime)), agency_routes(runtime), session
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
def _problems() -> Any:
    try:
        yield
    except ExchangeError as exc:
        raise Problem(exc.status, exc.slug, exc.detail, title=exc.title, **exc.extra) from None


def _agency(identity: Identity) -> str:
    return identity.subsystem.agency


async def _body(request: web.Request, max_bytes: int) -> AsyncIterator[bytes]:
    if request.content_type not in _XML:
        raise Problem(
            415,
            "unsupported-media-type",
            f"send an edXML package as application/xml, not {request.content_type or 'nothing'}",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        # Refuse before reading a byte; the stream cap below covers chunked bodies.
        raise Problem(
            413,
            PayloadTooLarge.slug,
            f"{request.content_length} bytes is over {max_bytes}",
            max_bytes=max_bytes,
        )

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk

    return chunks()


@routes.post("/v1/documents")
async def send(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    runtime = request.app[RUNTIME]
    hub = await hub_for(runtime)
    body = await _body(request, hub.policy.max_bytes)
    with _problems():
        accepted = await hub.receive(
            body,
            sender=_agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
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
    hub = await hub_for(request.app[RUNTIME])
    after = request.query.get("after") or "0"
    if not after.isdigit():
        raise Problem(422, "invalid-request", "after must be a cursor from a previous answer")
    return json_response(await hub.inbox(_agency(identity), int(after)))


@routes.get("/v1/documents/{id}")
async def fetch(request: web.Request) -> web.StreamResponse:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    with _problems():
        path, media_type, _size = await hub.fetch(
            request.match_info["id"],
            _agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    return web.FileResponse(path, headers={"Content-Type": media_type})


@routes.post("/v1/documents/{id}/ack")
async def ack(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    with _problems():
        result = await hub.ack(
            request.match_info["id"],
            _agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    return json_response(result)


@routes.post("/v1/documents/{id}/status")
async def post_status(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    body = await _body(request, min(hub.policy.max_bytes, 8 << 20))
    with _problems():
        result = await hub.record_status(
            request.match_info["id"],
            body,
            sender=_agency(identity),
            subsystem=identity.id,
            request_id=request.get(REQUEST_ID_KEY),
        )
    return json_response(result, status=201)


@routes.get("/v1/documents/{id}/status")
async def get_status(request: web.Request) -> web.Response:
    identity = require(request, RIGHT)
    hub = await hub_for(request.app[RUNTIME])
    with _problems():
        result = await hub.statuses(request.match_info["id"], _agency(identity))
    return json_response(result)
