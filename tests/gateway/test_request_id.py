"""``X-Request-Id`` is accepted (or generated) and echoed on every answer, including those aiohttp
makes of a raised HTTPException: the 308 from /console carried none, though its log line had one."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import console
from gateway.problems import problem_middleware
from gateway.requestid import echo_request_id, request_id_middleware


def _app() -> web.Application:
    app = web.Application(middlewares=[request_id_middleware, problem_middleware])
    app.on_response_prepare.append(echo_request_id)
    app.router.add_routes(console.routes)
    return app


async def test_a_redirect_echoes_the_request_id() -> None:
    async with TestClient(TestServer(_app())) as client:
        given = await client.get(
            "/console", headers={"X-Request-Id": "probe-redirect"}, allow_redirects=False
        )
        made = await client.get("/console", allow_redirects=False)
        missing = await client.get("/nosuch", headers={"X-Request-Id": "probe-404"})
    assert given.status == 308 and given.headers["Location"] == "/console/"
    assert given.headers["X-Request-Id"] == "probe-redirect"
    assert made.status == 308 and len(made.headers["X-Request-Id"]) == 32  # generated
    assert missing.status == 404 and missing.headers["X-Request-Id"] == "probe-404"
