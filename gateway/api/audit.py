"""The auditor API (read-only, service ``audit.read``): events, citizen search, checkpoints, proofs
and evidence exports. Personal ids travel only in POST bodies, never in URLs (access logs)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.app import RUNTIME, Runtime
from gateway.audit.bundle import (
    BundleError,
    BundleTooLarge,
    ExportNotReady,
    NothingToExport,
    Scope,
    build_bundle,
)
from gateway.audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_rows,
    verify_checkpoint,
)
from gateway.audit.proofs import LogTree, ProofUnavailable
from gateway.audit.query import (
    EventFilter,
    FilterError,
    InvalidPersonalId,
    access_report,
    query_events,
)
from gateway.auth import require
from gateway.exchange.hub import hub_document_id
from gateway.models import AuditExport, AuditSearch
from gateway.problems import Problem

from .common import (
    SQL_INT_MAX,
    json_response,
    only_parameters,
    query_flag,
    query_int,
    query_text,
    read_json,
)

__all__ = ["routes"]

routes = web.RouteTableDef()
SERVICE = "audit.read"
_TREE = "audit_tree"


def _tree(runtime: Runtime) -> LogTree:
    # One growing tree per app: proofs read only the leaves not seen yet.
    tree = runtime.extras.get(_TREE)
    if not isinstance(tree, LogTree):
        tree = runtime.extras[_TREE] = LogTree(runtime.store)
    return tree


def _trust(runtime: Runtime) -> Any | None:
    setup = runtime.extras.get("signing")
    return getattr(setup, "trust", None)


def _pins(runtime: Runtime) -> dict[str, Any]:
    """What a checkpoint shown as verified must be signed by: this gateway's own audit key, for
    this log's name. Under the same anchors any agency's certificate would do otherwise."""
    signer = getattr(runtime.extras.get("signing"), "signer", None)
    return {
        "signers": None if signer is None else [signer.certificate],
        "origin": runtime.settings.audit.origin,
    }


def _query_problem(exc: FilterError) -> Problem:
    named: dict[str, Any] = {} if exc.parameter is None else {"parameter": exc.parameter}
    return Problem(400, "invalid-query", str(exc), **named)


@routes.get("/v1/audit/events")
async def events(request: web.Request) -> web.Response:
    require(request, SERVICE)
    only_parameters(request, "from", "to", "member", "service", "dossier", "document", "cursor",
                    "limit")  # fmt: skip
    runtime = request.app[RUNTIME]
    document = await hub_document_id(runtime.store, query_text(request, "document"))
    try:
        flt = EventFilter.build(
            start=query_text(request, "from"),
            stop=query_text(request, "to"),
            member=query_text(request, "member"),
            service=query_text(request, "service"),
            dossier=query_text(request, "dossier"),
            document=document,
        )
        page = await query_events(
            runtime.store,
            flt,
            cursor=query_text(request, "cursor"),
            limit=query_int(request, "limit", 100, lo=1, hi=1000),
        )
    except FilterError as exc:
        raise _query_problem(exc) from None
    return json_response({"items": page.items, "next": page.next})


@routes.post("/v1/audit/search")
async def search(request: web.Request) -> web.Response:
    """Events about one citizen, found by the keyed hash of the id, and who accessed them."""
    require(request, SERVICE)
    runtime = request.app[RUNTIME]
    body = await read_json(request, AuditSearch)
    try:
        flt = EventFilter.build(
            start=body.start,
            stop=body.stop,
            personal_id=body.personal_id,
            citizen_key=runtime.citizen_key,
        )
        page = await query_events(runtime.store, flt, cursor=body.cursor)
        who = await access_report(
            runtime.store, runtime.citizen_key, body.personal_id, start=body.start, stop=body.stop
        )
    except InvalidPersonalId as exc:  # as a lookup refuses it
        raise Problem(
            422, "invalid-personal-id", f"personal_id: {exc.reason}", field="personal_id"
        ) from None
    except FilterError as exc:  # a field of the body, not a query parameter: as any body's
        at = f" - at `$.{exc.parameter}`" if exc.parameter else ""
        raise Problem(422, "invalid-request", f"{exc}{at}") from None
    return json_response({"items": page.items, "next": page.next, "accessors": who})


async def _summaries(
    runtime: Runtime, rows: list[dict[str, Any] | CheckpointError], verify: bool
) -> list[dict[str, Any]]:
    out = []
    trust, pins = _trust(runtime), _pins(runtime)
    for row in rows:
        try:
            if isinstance(row, CheckpointError):  # a row the store could not hand over
                raise row
            cp = Checkpoint.from_row(row)
        except CheckpointError as exc:
            out.append({"size": exc.size, "verified": False, "problem": str(exc)})
            continue
        item = cp.summary()
        if verify:
            check = await verify_checkpoint(cp, trust, **pins)
            item.update(
                verified=check.ok,
                problem=check.problem,
                tsa=check.tsa,
                timestamp_time=check.timestamp_time,
                trust_checked=trust is not None,
            )
        out.append(item)
    return out


@routes.get("/v1/audit/checkpoints")
async def checkpoints(request: web.Request) -> web.Response:
    """Newest first; ``before`` (a size) pages back; ``verify=1`` checks each one shown."""
    require(request, SERVICE)
    only_parameters(request, "limit", "before", "verify")
    runtime = request.app[RUNTIME]
    limit = query_int(request, "limit", 20, lo=1, hi=200)
    before = query_int(request, "before", SQL_INT_MAX)
    rows = await checkpoint_rows(runtime.store, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _summaries(runtime, rows, query_flag(request, "verify"))
    return json_response({"items": items, "next": str(items[-1]["size"]) if more else None})


@routes.get("/v1/audit/checkpoints/latest")
async def latest(request: web.Request) -> web.Response:
    require(request, SERVICE)
    runtime = request.app[RUNTIME]
    rows = await checkpoint_rows(runtime.store)
    if not rows:
        raise Problem(404, "no-checkpoint", "no checkpoint has been written yet")
    return json_response((await _summaries(runtime, rows, True))[0])


@routes.get("/v1/audit/proofs/inclusion")
async def inclusion(request: web.Request) -> web.Response:
    require(request, SERVICE)
    only_parameters(request, "index", "size")
    runtime = request.app[RUNTIME]
    try:
        proof = await _tree(runtime).inclusion(
            query_int(request, "index"), query_int(request, "size", lo=1)
        )
    except ProofUnavailable as exc:
        raise Problem(422, "proof-unavailable", str(exc)) from None
    return json_response(proof)


@routes.get("/v1/audit/proofs/consistency")
async def consistency(request: web.Request) -> web.Response:
    require(request, SERVICE)
    only_parameters(request, "first", "second")
    runtime = request.app[RUNTIME]
    try:
        proof = await _tree(runtime).consistency(
            query_int(request, "first", lo=1), query_int(request, "second", lo=1)
        )
    except ProofUnavailable as exc:
        raise Problem(422, "proof-unavailable", str(exc)) from None
    return json_response(proof)


@routes.post("/v1/audit/exports")
async def export(request: web.Request) -> web.Response:
    """The evidence bundle as application/zip."""
    require(request, SERVICE)
    runtime = request.app[RUNTIME]
    body = await read_json(request, AuditExport)
    # An empty filter is no filter (it was a 404 nothing-to-export: no scope reads as an empty one)
    scope = Scope(
        dossier=body.dossier or None,
        document=await hub_document_id(runtime.store, body.document or None),
        start=body.start or None,
        stop=body.stop or None,
    )
    try:
        data = await build_bundle(runtime.store, scope, tree=_tree(runtime))
    except BundleTooLarge as exc:
        # A bundle verify-bundle would refuse unread is no evidence: say so before building it.
        raise Problem(413, "export-too-large", str(exc)) from None
    except NothingToExport as exc:
        raise Problem(404, "nothing-to-export", str(exc)) from None
    except ExportNotReady as exc:
        raise Problem(409, "export-not-ready", str(exc)) from None
    except BundleError as exc:  # the scope, or an index that selects other entries (edited)
        raise Problem(422, "invalid-export", str(exc)) from None
    name = (scope.dossier or scope.document or "range").replace('"', "")
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="audit-{name}.zip"'},
    )
