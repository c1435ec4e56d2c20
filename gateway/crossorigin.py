"""Refusing cross-site requests that change state (CSRF), for every route in one place.

A browser presents a client certificate on its own, to any page's request, and SameSite does not
apply to TLS client authentication: an operator whose certificate identifies an ``admin``
subsystem, visiting any web page, would let it POST ``/v1/admin/outbox/{id}/replay`` or
``/v1/dossiers/{code}/resume`` (no body, so no Content-Type check stops a ``<form>``) under the
operator's name. Routes with a JSON body refuse a form's types (415), but the rule must not hang on
each route remembering to read a body.

So a request of any method but GET, HEAD and OPTIONS that a browser marks as coming from another
site is refused, before it is identified. Browsers say where a request comes from in two headers;
other clients (the provincial systems, agencies, scripts, ``curl``) send neither, and pass:

- ``Sec-Fetch-Site`` (every current browser, to HTTPS and localhost): only ``same-origin`` (the
  console's own ``fetch``) and ``none`` (the user typed it) pass; ``same-site`` (a sibling host of
  the same domain) and ``cross-site`` are refused.
- Without it, ``Origin`` (older browsers send it on every POST): its host and port must be the
  request's ``Host``. The scheme is not compared, so a proxy that terminates TLS in front of the
  gateway does not make the console's own requests cross-site; it must pass ``Host`` on.

The rule is the one Go's ``net/http.CrossOriginProtection`` applies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from yarl import URL

from gateway.problems import Problem

__all__ = ["cross_site_middleware", "refused_as_cross_site"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OWN_SITE = frozenset({"same-origin", "none"})


def refused_as_cross_site(request: web.Request) -> str | None:
    """Why ``request`` is refused as a cross-site request that changes state, or None."""
    if request.method in _SAFE_METHODS:
        return None
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site.strip().lower() in _OWN_SITE:
            return None
        return (
            f"the browser says this request comes from another site (Sec-Fetch-Site: {fetch_site})"
        )
    origin = request.headers.get("Origin")
    if origin is None:
        return None  # not a browser's request, or one of the same origin from an old browser
    if _host_of(origin) == request.headers.get("Host", "").strip().lower():
        return None
    return f"the request comes from another origin ({origin})"


def _host_of(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` header as a ``Host`` header spells it; None for
    ``null`` or anything that is not an origin."""
    try:
        url = URL(origin.strip())
    except ValueError:
        return None
    if (
        not url.absolute
        or url.raw_host is None
        or url.raw_user is not None
        or url.raw_path not in ("", "/")
    ):
        return None
    # yarl leaves out the port a scheme implies, as a browser's Host header does.
    host = url.raw_host.lower()
    if ":" in host:  # an IPv6 address goes in brackets in a Host header
        host = f"[{host}]"
    return host if url.explicit_port is None else f"{host}:{url.explicit_port}"


@web.middleware
async def cross_site_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    reason = refused_as_cross_site(request)
    if reason is not None:
        raise Problem(
            403,
            "cross-site-request",
            f"{reason}: a request that changes state is taken only from the gateway's own pages "
            "or from clients other than browsers",
        )
    return await handler(request)
