"""The 503 ``store-unavailable`` answer: a stable, generic detail for the client (the store's own
words, a PostgreSQL server's message and CONTEXT, go to the log and to /readyz for the admin),
and honest about what was kept: nothing when the store failed before the commit, perhaps all of
it when the commit's answer was lost with the connection."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.problems import PROBLEM_TYPE_PREFIX, problem_middleware
from gateway.requestid import request_id_middleware
from gateway.store import CommitUncertain, StoreUnavailable

SERVER_TEXT = (
    "commit failed: terminating connection due to administrator command "
    "CONTEXT: PL/pgSQL function secret_fn() line 3 at PERFORM"
)


async def _answer(exc: Exception) -> tuple[int, dict[str, str], dict[str, str]]:
    async def handler(request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[request_id_middleware, problem_middleware])
    app.router.add_post("/x", handler)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/x")
        return r.status, dict(r.headers), await r.json()


@pytest.mark.parametrize("exc", [StoreUnavailable(SERVER_TEXT), CommitUncertain(SERVER_TEXT)])
async def test_the_servers_words_stay_in_the_log(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lienthong.http"):
        status, headers, problem = await _answer(exc)
    assert (status, problem["type"]) == (503, PROBLEM_TYPE_PREFIX + "store-unavailable")
    assert headers["Retry-After"].isdigit()
    for word in ("terminating", "administrator", "CONTEXT", "secret_fn", "commit failed"):
        assert word not in problem["detail"], problem["detail"]
    assert any(SERVER_TEXT in r.getMessage() for r in caplog.records)  # the operator sees why


async def test_a_failure_before_the_commit_kept_nothing() -> None:
    _, _, problem = await _answer(StoreUnavailable("no PostgreSQL connection: timeout"))
    assert "nothing of this request was kept" in problem["detail"]


async def test_a_lost_commit_may_have_kept_the_request() -> None:
    _, _, problem = await _answer(CommitUncertain(SERVER_TEXT))
    assert "nothing" not in problem["detail"]
    assert "may have been stored" in problem["detail"]
    assert "same request again is safe" in problem["detail"]
