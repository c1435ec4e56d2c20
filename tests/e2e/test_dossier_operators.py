"""What operators do to stopped dossiers (correct, resume), under concurrency and store failures,
and identifiers that cannot be a dossier's: on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from tests.e2e.conftest import Gateway

PROBLEM = "urn:lienthong:problem:"
WRONG_NAME = "Phạm Văn Sai"


NUL_REQUESTS = [
    ("GET", "/v1/dossiers/%00", "motcua", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers/%00", "operator", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers/000.00.00.H41-261122-0001%0A", "operator", None, 404, "unknown-dossier"),
    ("PATCH", "/v1/dossiers/%00", "operator", {"reason": "x"}, 404, "unknown-dossier"),
    ("POST", "/v1/dossiers/%00/resume", "operator", None, 404, "unknown-dossier"),
    ("GET", "/v1/dossiers?cursor=%00", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/dossiers?status=%00", "operator", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?member=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?dossier=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?service=a%1Fb", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?document=%7F", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?from=%00", "auditor", None, 400, "invalid-query"),
    ("GET", "/v1/audit/events?cursor=%00", "auditor", None, 400, "invalid-query"),
    ("POST", "/v1/audit/exports", "auditor", {"dossier": "\u0000"}, 422, "invalid-request"),
    ("POST", "/v1/audit/exports", "auditor", {"document": "d\n"}, 422, "invalid-request"),
    ("POST", "/v1/audit/exports", "auditor", {"from": "\u0000", "to": "x"}, 422, "invalid-request"),
]


async def test_control_characters_in_identifiers_are_refused_at_the_boundary(
    any_gateway: Gateway,
) -> None:
    """Before, on PostgreSQL, a NUL in a path or query parameter reached the database: 500
    (psycopg DataError); SQLite answered 404 or 200. Path codes that cannot be a dossier's are
    unknown dossiers; text parameters with control characters are refused, naming them."""
    gw = any_gateway
    for method, path, who, body, status, slug in NUL_REQUESTS:
        async with gw.http.request(method, gw.url + path, json=body, headers=gw.headers(who)) as r:
            problem = await r.json()
            assert (r.status, problem.get("type")) == (status, PROBLEM + slug), (path, problem)
            assert r.content_type == "application/problem+json"
        if status == 400:
            name = path.split("?", 1)[1].split("=", 1)[0]
            assert problem["parameter"] == name and name in problem["detail"], problem
        if status == 422:
            assert f"$.{next(iter(body))}" in problem["detail"], problem  # type: ignore[arg-type]
    async with gw.http.get(gw.url + "/readyz") as r:
        assert r.status == 200, await r.text()
