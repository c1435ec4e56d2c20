"""The OpenAPI 3.1 document, generated from the wire models (msgspec) and the table below.

``python -m gateway.openapi`` prints it as YAML; ``schemas/openapi.yaml`` is that output, and a
test fails when the two differ (so the published contract never drifts from the code).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml

from gateway import models

__all__ = ["OPERATIONS", "Operation", "Param", "document", "render_yaml"]

PROBLEM = "ProblemDetails"
_BODY_ERRORS = (400, 413, 415)


@dataclass(frozen=True)
class Param:
    """A query parameter, as the handler reads it."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


def _int(name: str, description: str, lo: int | None = 0, hi: int = 2**63 - 1, **kw: Any) -> Param:
    schema: dict[str, Any] = {"type": "integer"}
    if lo is not None:
        schema["minimum"] = lo
    schema["maximum"] = hi  # at most what the store's integers hold
    return Param(name, schema, description, **kw)


def _text(name: str, description: str, **schema: Any) -> Param:
    return Param(name, {"type": "string", **schema}, description)


_FLAG = {"type": "string", "enum": ["true", "false", "1", "0"]}  # anything else is a 400
_WHEN = ["2026-11-22T00:00:00+07:00", "2026-11-22"]  # a time with its zone, or a day in Vietnam


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    service: str | None  # the right it needs; None: public
    request: Any = None  # a msgspec type, or media type strings (space-separated)
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[Param, ...] = ()
    headers: tuple[str, ...] = ()  # of the success answer (see _HEADERS)


# Headers of success answers, by name.
_HEADERS = {
    "Location": "where the accepted resource's status is read",
    "X-Lienthong-Document": "the hub's id of the document",
    "X-Lienthong-Duplicate": "true when the package had been accepted before (the original receipt)",
}


OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/dossiers", "Submit a dossier (202 once stored durably)", "dossiers.submit",
              models.DossierIn, models.Accepted, 202, (400, 401, 403, 409, 413, 415, 422),
              headers=("Location",)),
    Operation("get", "/v1/dossiers", "List dossiers, by status (operators see all)", "dossiers.submit",
              None, models.DossierList, 200, (400, 401, 403),
              (_text("status", "only dossiers in this state",
                     enum=["accepted", "in_progress", "completed", "needs_attention", "failed"]),
               _text("cursor", "next page: the previous answer's next"))),
    Operation("get", "/v1/dossiers/{code}", "A dossier's status and the history of every step",
              "dossiers.submit", None, models.DossierView, 200, (401, 403, 404)),
    Operation("patch", "/v1/dossiers/{code}", "Correct a stopped dossier's data (operators)", "admin",
              models.DossierCorrection, models.DossierView, 200, (401, 403, 404, 409, 422)),
    Operation("post", "/v1/dossiers/{code}/resume", "Resume a stopped flow (operators)", "admin",
              None, models.DossierView, 202, (401, 403, 404, 409)),
    Operation("post", "/v1/lookups/citizen", "Verify a citizen against the population registry",
              "lookups.citizen", models.CitizenLookup, models.CitizenLookupResult, 200,
              (401, 403, 422, 502, 503, 504)),
    Operation("post", "/v1/lookups/insurance-card", "Check a health-insurance card (BHXH)",
              "lookups.insurance-card", models.InsuranceCardLookup, dict[str, Any], 200,
              (401, 403, 422, 502, 503, 504)),
    Operation("get", "/v1/lookups/enterprises/{tax_code}", "Look up an enterprise by tax code",
              "lookups.enterprise", None, dict[str, Any], 200, (401, 403, 404, 422, 502, 503, 504)),
    Operation("post", "/v1/documents", "Send an edXML package (application/xml or multipart/related); 202 with the hub's signed receipt",
              "documents.exchange", "application/xml multipart/related", "application/xml", 202,
              (400, 401, 403, 404, 409, 413, 415, 422, 503),
              headers=("Location", "X-Lienthong-Document", "X-Lienthong-Duplicate")),
    Operation("get", "/v1/documents/inbox", "Documents waiting for the calling agency (cursor: after)",
              "documents.exchange", None, dict[str, Any], 200, (400, 401, 403),
              (_text("after", "next page: the previous answer's cursor", pattern="^[0-9]{1,18}$"),)),
    Operation("get", "/v1/documents/{id}", "A document's package (?original=true: as the sender signed it)",
              "documents.exchange", None, "application/xml", 200, (400, 401, 403, 404),
              (Param("original", _FLAG, "true: the package as the sender signed it, without the hub's TraceHeader"),)),
    Operation("post", "/v1/documents/{id}/ack", "Acknowledge a pulled document", "documents.exchange",
              None, dict[str, Any], 200, (401, 403, 404, 409)),
    Operation("post", "/v1/documents/{id}/status", "An edXML status message from a recipient (forward-only)",
              "documents.exchange", "application/xml", dict[str, Any], 201, (400, 401, 403, 404, 409, 422)),
    Operation("get", "/v1/documents/{id}/status", "Each recipient's status history", "documents.exchange",
              None, dict[str, Any], 200, (401, 403, 404)),
    Operation("get", "/v1/admin/outbox", "Outbox jobs by state (dead letters: state=dead)", "admin",
              None, dict[str, Any], 200, (400, 401, 403),
              (_text("state", "only jobs in this state", enum=["pending", "running", "done", "dead"]),
               _int("limit", "page size (default 100)", 1, 500),
               _int("after", "next page: the previous answer's next"))),
    Operation("post", "/v1/admin/outbox/{id}/replay", "Replay a dead job with fresh attempts", "admin",
              None, dict[str, Any], 200, (401, 403, 404, 409)),
    Operation("get", "/v1/audit/events", "Audit events by time, member, service, dossier, document",
              "audit.read", None, dict[str, Any], 200, (400, 401, 403),
              (_text("from", "ISO 8601 time with its zone, or a date (00:00 in Vietnam, +07:00); inclusive",
                     examples=_WHEN),
               _text("to", "ISO 8601 time with its zone, or a date (00:00 in Vietnam, +07:00); exclusive",
                     examples=_WHEN),
               _text("member", "member id (VN:GOV:…)"), _text("service", "service name"),
               _text("dossier", "dossier code"), _text("document", "the hub's document id, or the letter's edXML DocumentId"),
               _text("cursor", "next page: the previous answer's next"),
               _int("limit", "page size (default 100)", 1, 1000))),
    Operation("post", "/v1/audit/search", "Events about a citizen (searched by keyed hash; the id is never stored)",
              "audit.read", models.AuditSearch, dict[str, Any], 200, (400, 401, 403, 422)),
    Operation("get", "/v1/audit/checkpoints", "Signed, timestamped checkpoints", "audit.read",
              None, dict[str, Any], 200, (400, 401, 403),
              (_int("limit", "page size (default 20)", 1, 200),
               _int("before", "next page: checkpoints of smaller sizes (the previous answer's next)"),
               Param("verify", _FLAG, "true: check each checkpoint's signature, chain and timestamp"))),
    Operation("get", "/v1/audit/checkpoints/latest", "The latest checkpoint", "audit.read",
              None, dict[str, Any], 200, (401, 403, 404)),
    Operation("get", "/v1/audit/proofs/inclusion", "RFC 9162 inclusion proof (index, size)", "audit.read",
              None, dict[str, Any], 200, (400, 401, 403, 422),
              (_int("index", "the entry's sequence number", required=True),
               _int("size", "the tree size (a checkpoint's)", 1, required=True))),
    Operation("get", "/v1/audit/proofs/consistency", "RFC 9162 consistency proof (first, second)",
              "audit.read", None, dict[str, Any], 200, (400, 401, 403, 422),
              (_int("first", "the older tree size", 1, required=True),
               _int("second", "the newer tree size", 1, required=True))),
    Operation("post", "/v1/audit/exports", "Evidence bundle for a dossier, a document or a time range",
              "audit.read", models.AuditExport, "application/zip", 200, (401, 403, 404, 409, 413, 422)),
    Operation("get", "/healthz", "Liveness", None, None, dict[str, Any]),
    Operation("get", "/readyz", "Readiness (store, outbox, audit checkpoints)", None, None,
              dict[str, Any], 200, (503,)),
    Operation("get", "/metrics", "Prometheus metrics", None, None, "text/plain"),
)  # fmt: skip


def _content(schema_or_media: Any, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(schema_or_media, str):
        return {media: {"schema": {"type": "string"}} for media in schema_or_media.split()}
    return {"application/json": {"schema": refs[schema_or_media]}}


def document() -> dict[str, Any]:
    types = sorted(
        {
            t
            for op in OPERATIONS
            for t in (op.request, op.response)
            if t is not None and not isinstance(t, str)
        },
        key=repr,
    )
    types.append(models.ProblemDetails)
    schemas, components = models.schema_components(types)
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
            "responses": {str(op.status): {"description": "success"}},
        }
        if op.response is not None:
            entry["responses"][str(op.status)]["content"] = _content(op.response, refs)
        if op.headers:
            entry["responses"][str(op.status)]["headers"] = {
                h: {"description": _HEADERS[h], "schema": {"type": "string"}} for h in op.headers
            }
        # Every body is read the same way: malformed (400), over the limit (413), or of another
        # media type (415) — whatever else the operation refuses. Any call that needs the store
        # may find it unavailable (503, store-unavailable).
        errors = set(op.errors) | (set(_BODY_ERRORS) if op.request is not None else set())
        if op.service is not None:
            errors.add(503)
        for status in sorted(errors):
            entry["responses"][str(status)] = {
                "description": "problem",
                "content": {"application/problem+json": {"schema": refs[models.ProblemDetails]}},
            }
        if op.request is not None:
            entry["requestBody"] = {"required": True, "content": _content(op.request, refs)}
        if op.service:
            entry["security"] = [{"bearer": []}, {"mutualTLS": []}]
            entry["x-lienthong-service"] = op.service
        params = [
            {"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
            for p in op.path.split("/")
            if p.startswith("{")
        ]
        params += [
            {"name": q.name, "in": "query", "required": q.required, "schema": q.schema}
            | ({"description": q.description} if q.description else {})
            for q in op.query
        ]
        if params:
            entry["parameters"] = params
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lienthong gateway",
            "version": "1.0.0",
            "description": "Interoperability gateway and document-exchange hub. Errors are RFC 9457 "
            "problem+json with type urn:lienthong:problem:<slug>.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "mutualTLS": {"type": "mutualTLS"},
            },
        },
    }


def render_yaml() -> str:
    return yaml.safe_dump(document(), sort_keys=True, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
