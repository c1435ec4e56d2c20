"""The auditors' web console: static HTML/JS/CSS at ``/console/`` calling the auditor API.

The page itself holds no data and needs no identity; every call it makes is checked by the API,
which knows the auditor by the browser's client certificate or by a bearer token (typed in once,
kept in sessionStorage for the tab's life or until forgotten; sent only when one is set).
"""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

__all__ = ["routes"]

routes = web.RouteTableDef()

_FILES = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
# A strict policy: the page talks only to its own origin and runs only its own script.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


_read: dict[str, bytes] = {}  # the files as first read: they change only with the package


async def _file(name: str) -> bytes:
    """A file of the page, read from the package once, off the loop (a disk read blocks it)."""
    body = _read.get(name)
    if body is None:
        body = _read[name] = await asyncio.to_thread(
            resources.files(__name__).joinpath(name).read_bytes
        )
    return body


@routes.get("/console")
async def console_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console/")


@routes.get("/console/")
async def console_index(request: web.Request) -> web.Response:
    return await _serve("index.html")


@routes.get("/console/{name}")
async def console_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES:
        raise web.HTTPNotFound()
    return await _serve(name)


async def _serve(name: str) -> web.Response:
    return web.Response(
        body=await _file(name),
        content_type=_FILES[name],
        charset="utf-8",
        headers={
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
