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

__all__ = ["OPERATIONS", "Operation", "document", "render_yaml"]

PROBLEM = "ProblemDetails"
_BODY_ERRORS = (400, 413, 415)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    service: str | None  # the right it needs; None: public
    request: Any = None  # a msgspec type, or a media type string
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()


OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/dossiers", "Submit a dossier (202 once stored durably)", "dossiers.submit",
              models.DossierIn, models.Accepted, 202, (400, 401, 403, 409, 413, 415, 422)),
    Operation("get", "/v1/dossiers", "List dossiers, by status (operators see all)", "dossiers.submit",
              None, models.DossierList, 200, (401, 403, 422)),
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
              "documents.exchange", "application/xml", "application/xml", 202,
              (400, 401, 403, 409, 413, 415, 422, 503)),
    Operation("get", "/v1/documents/inbox", "Documents waiting for the calling agency (cursor: after)",
              "documents.exchange", None, dict[str, Any], 200, (400, 401, 403)),
    Operation("get", "/v1/documents/{id}", "A document's package (?original=true: as the sender signed it)",
              "documents.exchange", None, "application/xml", 200, (401, 403, 404)),
    Operation("post", "/v1/documents/{id}/ack", "Acknowledge a pulled document", "documents.exchange",
              None, dict[str, Any], 200, (401, 403, 404, 409)),
    Operation("post", "/v1/documents/{id}/status", "An edXML status message from a recipient (forward-only)",
              "documents.exchange", "application/xml", dict[str, Any], 201, (400, 401, 403, 404, 409, 422)),
    Operation("get", "/v1/documents/{id}/status", "Each recipient's status history", "documents.exchange",
              None, dict[str, Any], 200, (401, 403, 404)),
    Operation("get", "/v1/admin/outbox", "Outbox jobs by state (dead letters: state=dead)", "admin",
              None, dict[str, Any], 200, (400, 401, 403)),
    Operation("post", "/v1/admin/outbox/{id}/replay", "Replay a dead job with fresh attempts", "admin",
              None, dict[str, Any], 200, (401, 403, 404, 409)),
    Operation("get", "/v1/audit/events", "Audit events by time, member, service, dossier, document",
              "audit.read", None, dict[str, Any], 200, (400, 401, 403)),
    Operation("post", "/v1/audit/search", "Events about a citizen (searched by keyed hash; the id is never stored)",
              "audit.read", dict[str, Any], dict[str, Any], 200, (400, 401, 403, 422)),
    Operation("get", "/v1/audit/checkpoints", "Signed, timestamped checkpoints", "audit.read",
              None, dict[str, Any], 200, (401, 403)),
    Operation("get", "/v1/audit/checkpoints/latest", "The latest checkpoint", "audit.read",
              None, dict[str, Any], 200, (401, 403, 404)),
    Operation("get", "/v1/audit/proofs/inclusion", "RFC 9162 inclusion proof (index, size)", "audit.read",
              None, dict[str, Any], 200, (400, 401, 403, 422)),
    Operation("get", "/v1/audit/proofs/consistency", "RFC 9162 consistency proof (first, second)",
              "audit.read", None, dict[str, Any], 200, (400, 401, 403, 422)),
    Operation("post", "/v1/audit/exports", "Evidence bundle for a dossier, a document or a time range",
              "audit.read", dict[str, Any], "application/zip", 200, (401, 403, 404, 409, 422)),
    Operation("get", "/healthz", "Liveness", None, None, dict[str, Any]),
    Operation("get", "/readyz", "Readiness (store, outbox, audit checkpoints)", None, None,
              dict[str, Any], 200, (503,)),
    Operation("get", "/metrics", "Prometheus metrics", None, None, "text/plain"),
)  # fmt: skip


def _content(schema_or_media: Any, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(schema_or_media, str):
        return {schema_or_media: {"schema": {"type": "string"}}}
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
        # Every body is read the same way: malformed (400), over the limit (413), or of another
        # media type (415) — whatever else the operation refuses.
        errors = set(op.errors) | (set(_BODY_ERRORS) if op.request is not None else set())
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
        params = [p.strip("{}") for p in op.path.split("/") if p.startswith("{")]
        if params:
            entry["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
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
