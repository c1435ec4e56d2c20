"""The published contract (openapi.json) against the running gateway: what a generated client is
told about bodies and query parameters is what the gateway does with them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.openapi import document
from tests.e2e.conftest import MOTCUA, TOKENS

PROBLEM = "urn:lienthong:problem:"
DOSSIER = "000.00.00.H41-261122-0001"
AGENCY_TOKEN = "t-agency-0123456789"
# How every endpoint refuses a parameter's value (other problems, such as a proof of a tree the
# log has not reached, are about the log, not the parameter).
QUERY_REFUSAL = PROBLEM + "invalid-query"

# Who may call each documented operation this file exercises (anyone else would get 403).
CALLERS = {
    ("post", "/v1/dossiers"): "motcua",
    ("get", "/v1/dossiers"): "motcua",
    ("patch", "/v1/dossiers/{code}"): "operator",
    ("post", "/v1/lookups/citizen"): "motcua",
    ("post", "/v1/lookups/insurance-card"): "motcua",
    ("get", "/v1/documents/inbox"): "agency",
    ("get", "/v1/documents/{id}"): "agency",
    ("get", "/v1/admin/outbox"): "operator",
    ("get", "/v1/audit/events"): "auditor",
    ("post", "/v1/audit/search"): "auditor",
    ("post", "/v1/audit/exports"): "auditor",
    ("get", "/v1/audit/checkpoints"): "auditor",
    ("get", "/v1/audit/proofs/inclusion"): "auditor",
    ("get", "/v1/audit/proofs/consistency"): "auditor",
}


def _operations(keep: Callable[[dict[str, Any]], bool]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every documented operation ``keep`` takes."""
    paths = document()["paths"].items()
    return [(m, p, op) for p, item in paths for m, op in item.items() if keep(op)]


def _json_body(op: dict[str, Any]) -> bool:
    return "application/json" in op.get("requestBody", {}).get("content", {})


def _query(op: dict[str, Any]) -> bool:
    return any(p["in"] == "query" for p in op.get("parameters", []))


def _gateway(make_gateway: Any, **sections: Any) -> Any:
    subsystems = [
        {"id": MOTCUA, "token": TOKENS["motcua"],
         "rights": ["dossiers.submit", "lookups.citizen", "lookups.insurance-card"]},
        {"id": "VN:GOV:000.00.00.H41:vanhanh", "token": TOKENS["operator"], "rights": ["admin"]},
        {"id": "VN:GOV:000.00.00.H41:kiemtoan", "token": TOKENS["auditor"], "rights": ["audit.read"]},
        {"id": "VN:GOV:000.00.00.G12:vanban", "token": AGENCY_TOKEN, "rights": ["documents.exchange"]},
    ]  # fmt: skip
    return make_gateway(subsystems=subsystems, **sections)


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {AGENCY_TOKEN if who == 'agency' else TOKENS[who]}"}


def _url(base: str, path: str) -> str:
    return base + path.replace("{code}", DOSSIER).replace("{id}", "1")


async def test_bad_bodies_get_the_statuses_the_contract_documents(make_gateway: Any) -> None:
    """Every operation with a JSON body refuses a malformed, wrongly typed or oversize one with
    the problem type and a status its contract lists."""
    ops = _operations(_json_body)
    assert {(m, p) for m, p, _ in ops} <= set(CALLERS)
    bad = [
        (b"{", "application/json", "malformed-json"),
        (b"{}", "text/plain", "unsupported-media-type"),
        (b'{"x": "' + b"y" * 5000 + b'"}', "application/json", "payload-too-large"),
    ]
    async with _gateway(make_gateway, gateway={"max_body_bytes": 4096}) as gw:
        for method, path, op in ops:
            for body, media, slug in bad:
                headers = {**_auth(CALLERS[method, path]), "Content-Type": media}
                async with gw.http.request(
                    method, _url(gw.url, path), data=body, headers=headers
                ) as r:
                    problem = await r.json(content_type=None)
                    assert problem["type"] == PROBLEM + slug, (method, path, problem)
                    assert str(r.status) in op["responses"], (method, path, r.status)


def _wrong(schema: dict[str, Any]) -> str:
    return "x" if schema.get("type") == "integer" else "not-a-value"


def _right(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer":
        return str(max(1, schema.get("minimum", 0)))
    if "examples" in schema:
        return str(schema["examples"][0])
    if schema.get("format") == "date-time":
        return "2026-11-22T00:00:00+07:00"
    return "0" if schema.get("pattern", "").startswith("^[0-9]") else "x"


async def test_query_parameters_are_read_as_documented(make_gateway: Any) -> None:
    """Each documented parameter is read under its name: a value of the documented type is taken,
    one that breaks its type or range is refused with a documented status, and a required one
    that is missing is refused."""
    ops = _operations(_query)
    assert {(m, p) for m, p, _ in ops} <= set(CALLERS)
    async with _gateway(make_gateway) as gw:
        for method, path, op in ops:
            query = [p for p in op["parameters"] if p["in"] == "query"]
            required = {p["name"]: _right(p["schema"]) for p in query if p["required"]}

            async def call(params: dict[str, str], path: str = path, method: str = method) -> Any:
                async with gw.http.request(
                    method,
                    _url(gw.url, path),
                    params=params,
                    headers=_auth(CALLERS[method, path]),
                ) as r:
                    body = await r.json(content_type=None) if r.status >= 400 else None
                    return r.status, (body or {}).get("type", "")

            for p in query:
                name, schema = p["name"], p["schema"]
                if name == "cursor":  # opaque: only a previous answer's ``next`` means anything
                    continue
                status, kind = await call({**required, name: _right(schema)})
                assert kind != QUERY_REFUSAL, (path, name, status, kind)
                if "enum" in schema or "pattern" in schema or schema.get("type") == "integer":
                    status, kind = await call({**required, name: _wrong(schema)})
                    assert (kind, status) == (QUERY_REFUSAL, 400), (path, name, kind, status)
                    assert "400" in op["responses"], (path, name)
                if "maximum" in schema:
                    status, kind = await call({**required, name: str(schema["maximum"] + 1)})
                    assert (kind, status) == (QUERY_REFUSAL, 400), (path, name, kind, status)
                    assert "400" in op["responses"], (path, name)
                if schema.get("type") == "integer" or "pattern" in schema:
                    # Beyond any integer a store holds: refused here, not by the database (a 500).
                    status, kind = await call({**required, name: str(2**64)})
                    assert (kind, status) == (QUERY_REFUSAL, 400), (path, name, kind, status)
                if p["required"]:
                    status, kind = await call({k: v for k, v in required.items() if k != name})
                    assert (status, kind) == (400, PROBLEM + "invalid-query"), (path, name)
