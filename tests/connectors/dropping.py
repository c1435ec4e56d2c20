"""A registry whose server drops the connection under chosen requests, unanswered: as a server
whose idle timeout closes a kept-alive connection just as a request arrives on it."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler


def dropping(app: web.Application, *numbers: int) -> list[str]:
    """Drop the connection under the requests numbered ``numbers`` (from 1; a sandbox's admin
    routes are not counted), before the app sees them. Returns the paths requested, in order."""
    seen: list[str] = []

    @web.middleware
    async def drop(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        seen.append(request.path)
        if len(seen) not in numbers:
            return await handler(request)
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError  # the socket is gone; aiohttp discards what follows

    app.middlewares.insert(0, drop)
    return seen
