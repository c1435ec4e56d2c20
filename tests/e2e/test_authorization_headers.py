"""A request with more than one ``Authorization`` header names no one caller: refused."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import TOKENS, Gateway


async def _get(gateway: Gateway, path: str, *tokens: str) -> tuple[int, Any]:
    headers = [("Authorization", f"Bearer {token}") for token in tokens]
    async with gateway.http.get(gateway.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_two_authorization_headers_are_refused_whichever_comes_first(
    gateway: Gateway,
) -> None:
    """Found by probing: the first of two Authorization headers was used and the second
    ignored, silently (an operator's token then any other: served as the operator). A field
    that is no list (RFC 9110 §11.6.2) read first by the gateway and last by a proxy in front
    names two callers; now such a request is a 401, whatever the headers hold."""
    operator = TOKENS["operator"]
    assert (await _get(gateway, "/v1/admin/outbox", operator))[0] == 200
    for tokens in ((operator, "nope"), ("nope", operator), (operator, operator)):
        status, problem = await _get(gateway, "/v1/admin/outbox", *tokens)
        assert (status, problem["type"]) == (401, "urn:lienthong:problem:unauthenticated")
        assert "more than one Authorization header" in problem["detail"], problem
    status, _ = await _get(gateway, "/healthz", operator, "nope")  # open routes stay open
    assert status == 200
