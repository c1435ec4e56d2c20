"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiohttp import web

from gateway.api.common import json_response
from gateway.app import RUNTIME
from gateway.auth import IDENTITY_KEY, Identity
from gateway.outbox.jobs import depth
from gateway.problems import STORE_RETRY_AFTER_S, Problem
from gateway.store import StoreError, Tx

__all__ = ["routes"]

routes = web.RouteTableDef()

# How long a write that failed for want of the store (a full disk) keeps the gateway unready: as
# long as the Retry-After its 503 gave.
STORE_TROUBLE_S = float(STORE_RETRY_AFTER_S)
# How long a probe or a scrape waits for the store: an unreachable PostgreSQL made each wait the
# pool's connect timeout (10 s), Prometheus' whole scrape timeout, and a readiness probe's
# timeout came before its 503.
PROBE_TIMEOUT_S = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Says nothing of its dependencies (that is /readyz)."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to accept work: the store answers, the worker runs, the audit log can checkpoint."""
    runtime = request.app[RUNTIME]
    checks: dict[str, str] = {}
    trouble = runtime.store.unavailable
    if trouble is not None and (since := time.monotonic() - trouble[0]) < STORE_TROUBLE_S:
        checks["store"] = f"failing {since:.0f} s ago: {trouble[1]}"
    else:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await runtime.store.read(lambda tx: tx.one("kv.count"))
            checks["store"] = "ok"
        except StoreError as exc:
            checks["store"] = f"failing: {exc}"
        except TimeoutError:
            checks["store"] = f"failing: no answer within {PROBE_TIMEOUT_S:g} s"
    worker = runtime.worker
    if worker is None:
        checks["outbox"] = "not running"
    else:  # a worker whose every claim fails delivers nothing, however alive it is
        checks["outbox"] = f"failing: {worker.claim_failure}" if worker.claim_failure else "ok"
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
        runtime.metrics.store_up.set(1)
    except (StoreError, TimeoutError):
        # The scrape still shows everything else; the depth is the last one read, and
        # lienthong_store_up says it is stale (/readyz says why).
        runtime.metrics.store_up.set(0)
    return web.Response(body=runtime.metrics.render(), content_type="text/plain", charset="utf-8")


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from gateway.openapi import document

    return web.Response(body=msgspec.json.encode(document()), content_type="application/json")
