"""Request ids: accepted from ``X-Request-Id`` when sane, generated otherwise, echoed back, and
carried by every line logged while the request is served (:func:`current_request_id`)."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from aiohttp import web

__all__ = ["REQUEST_ID_KEY", "current_request_id", "echo_request_id", "request_id_middleware"]

REQUEST_ID_KEY = web.RequestKey("request_id", str)
# The request being served, in its task and in the threads and tasks it starts (they copy the
# context): the JSON log lines take it from here (gateway.logs), whoever logs them.
_CURRENT: ContextVar[str | None] = ContextVar("lienthong_request_id", default=None)
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    # 128 random bits as 32 hex digits, as uuid4().hex gives, at a fifth of its cost.
    rid = given if _SANE.match(given) else os.urandom(16).hex()
    request[REQUEST_ID_KEY] = rid
    token = _CURRENT.set(rid)
    try:
        return await handler(request)
    finally:
        _CURRENT.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request's id on its answer, whatever made it (a handler, a
    raised redirect), set as it is sent: the access log's middleware sends the body itself, before
    a middleware around it could add a header."""
    rid = request.get(REQUEST_ID_KEY)
    if rid is not None:
        response.headers["X-Request-Id"] = rid


def current_request_id() -> str | None:
    """The id of the request being served here, or None outside any."""
    return _CURRENT.get()
