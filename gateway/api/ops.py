"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
from aiohttp import web

from gateway.api.common import json_response
from gateway.api.documents import HUB_KEY
from gateway.app import RUNTIME
from gateway.auth import IDENTITY_KEY, Identity
from gateway.exchange.blobs import BlobStore
from gateway.exchange.hub import DocumentHub
from gateway.outbox.jobs import depth
from gateway.problems import Problem
from gateway.store import Store, StoreError, Tx

__all__ = ["routes"]

routes = web.RouteTableDef()

# Once a write failed for want of the store (a full disk), a probe writes this much, and removes
# it in the same transaction, to tell whether the store can be written again: about what a
# dossier with its job and audit event takes, so that a store with room for less is not ready.
_PROBE_KEY = "ops.write-probe"
_PROBE_BYTES = 64 * 1024
# How long a probe or a scrape waits for the store: an unreachable PostgreSQL made each wait the
# pool's connect timeout (10 s), Prometheus' whole scrape timeout, and a readiness probe's
# timeout came before its 503.
PROBE_TIMEOUT_S = 2.0
# A blob folder with less room than this is full: it takes no edXML package worth the name (a
# signed one with its PDF is tens of KiB, and is written twice: the package, then its files).
BLOB_ROOM_BYTES = 1024 * 1024
# In Runtime.extras: the blob folder's check in flight. A poll that comes while it has not
# answered (a hung network mount) waits for it rather than tie up another thread.
_BLOB_CHECK = "ops.blob-check"


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Says nothing of its dependencies (that is /readyz)."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to accept work: the store answers, the document blob folder can be written (when
    the hub takes documents), the worker runs, the audit log can checkpoint."""
    runtime = request.app[RUNTIME]
    checks = {"store": await store_check(runtime.store)}
    worker = runtime.worker
    if worker is None:
        checks["outbox"] = "not running"
    else:  # a worker whose every claim fails delivers nothing, however alive it is
        checks["outbox"] = f"failing: {worker.claim_failure}" if worker.claim_failure else "ok"
    hub = runtime.extras.get(HUB_KEY)
    if isinstance(hub, DocumentHub):  # documents are taken: each needs its blobs written
        checks["blobs"] = await blobs_check(runtime.extras, hub.blobs)
    unready = {name for name, v in checks.items() if v != "ok"}
    # The other checks (the audit log's) may be ready and still say something is wrong: their
    # checkpoints fail, but new work is still taken (fail_closed_after_s not reached, or 0).
    for name, check in runtime.extras.get("readiness", {}).items():
        ready, checks[name] = check()
        if not ready:
            unready.add(name)
    # Why a check fails names paths, database hosts and users: operators (the admin right) read
    # it here, as the log has it; any other caller (a load balancer) learns which checks fail.
    identity: Identity | None = request.get(IDENTITY_KEY)
    if identity is None or not identity.may("admin"):
        checks = {k: _shown(k, v, unready) for k, v in checks.items()}
    if not unready:
        return json_response({"ready": True, "checks": checks})
    failing = "; ".join(f"{k}: {v}" for k, v in checks.items() if k in unready)
    raise Problem(503, "not-ready", failing, checks=checks)


def _shown(name: str, said: str, unready: set[str]) -> str:
    """What a caller without the admin right is told of one check."""
    if said == "ok":
        return "ok"
    return "failing" if name in unready else "degraded"


async def store_check(store: Store) -> str:
    """The store's check: ``ok``, or ``failing: <why>``. A read, while writes succeed; from a
    write that failed for want of the store (a full disk, which still answers reads; a lost
    database) until one succeeds, a write (:func:`_write_probe`), which ends the failure when it
    succeeds."""
    trouble = store.unavailable
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            if trouble is None:
                await store.read(lambda tx: tx.one("kv.count"))
            else:
                await store.transact(_write_probe, durable=False)
                if store.unavailable is trouble:  # and no other write failed meanwhile
                    store.unavailable = None
    except StoreError as exc:
        return f"failing: {exc}"
    except TimeoutError:
        return f"failing: no answer within {PROBE_TIMEOUT_S:g} s"
    return "ok"


async def blobs_check(extras: dict[str, Any], blobs: BlobStore) -> str:
    """The blob folder's check: ``ok``, or ``failing: <why>`` (the folder gone, not a
    directory, unwritable, full: every POST /v1/documents would answer 503). No write: a stat,
    on a worker thread, at most one at a time."""
    pending = extras.get(_BLOB_CHECK)
    if not isinstance(pending, asyncio.Future) or pending.done():
        pending = asyncio.ensure_future(asyncio.to_thread(blobs.trouble, BLOB_ROOM_BYTES))
        extras[_BLOB_CHECK] = pending
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            trouble = await asyncio.shield(pending)
    except TimeoutError:
        return f"failing: no answer within {PROBE_TIMEOUT_S:g} s"
    return "ok" if trouble is None else f"failing: {trouble}"


def _write_probe(tx: Tx) -> None:
    tx.execute("kv.put", k=_PROBE_KEY, v=os.urandom(_PROBE_BYTES // 2).hex())
    tx.execute("kv.delete", k=_PROBE_KEY)


def _scraped(tx: Tx) -> tuple[dict[str, int], int]:
    """What a scrape reads from the store: the outbox's depth, the audit log's size."""
    head = tx.one("audit.head")  # read-only: takes no turn on a shared store
    return depth(tx), 0 if head is None else int(head["seq"]) + 1


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    runtime.breakers.states()  # an open circuit whose time is up reads, and shows, as half-open
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            jobs, entries = await runtime.store.read(_scraped)
        for state, n in jobs.items():
            runtime.metrics.outbox_jobs.labels(state).set(n)
        runtime.metrics.audit_entries.set(entries)
        # Read: up, unless writes have been failing (a full disk answers reads), as /readyz says.
        up = runtime.store.unavailable is None or await store_check(runtime.store) == "ok"
    except (StoreError, TimeoutError):
        # The scrape still shows everything else; the depth is the last one read, and
        # lienthong_store_up says it is stale (/readyz says why).
        up = False
    runtime.metrics.store_up.set(1 if up else 0)
    return web.Response(body=runtime.metrics.render(), content_type="text/plain", charset="utf-8")


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The document, made once per app (in a thread) and then served as the same bytes: it was
    made again for every request, on the event loop, every JSON schema through msgspec — 3 ms
    of CPU, seven /healthz' worth, for any client, no login needed. It cannot change while the
    process runs."""
    extras = request.app[RUNTIME].extras
    body = extras.get(_OPENAPI)
    if not isinstance(body, bytes):
        body = extras[_OPENAPI] = await asyncio.to_thread(_openapi_bytes)
    return web.Response(body=body, content_type="application/json")


_OPENAPI = "openapi.json"


def _openapi_bytes() -> bytes:
    from gateway import openapi as contract

    return msgspec.json.encode(contract.document())
