"""RFC 9457 problem details: every failure a caller can see, with a stable ``type``.

Handlers raise :class:`Problem`; :func:`problem_middleware` renders it (and any aiohttp HTTP error,
and any unexpected exception, without leaking internals) as ``application/problem+json`` carrying
the request id. Each slug is documented in the README.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import HttpVersion10, HttpVersion11, web

from .requestid import REQUEST_ID_KEY
from .store import CommitUncertain, StoreUnavailable

__all__ = [
    "CLIENT_CLOSED",
    "NOT_ACCEPTING_RETRY_AFTER_S",
    "PROBLEM_TYPE_PREFIX",
    "SERVER",
    "Problem",
    "client_gone",
    "defer_expectation",
    "not_accepting",
    "problem_middleware",
    "problem_response",
    "send_continue",
    "store_unavailable",
]

PROBLEM_TYPE_PREFIX = "urn:lienthong:problem:"
SERVER = "lienthong"  # every answer's Server header: the product, not the versions it runs on
log = logging.getLogger("lienthong.http")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    417: "Expectation failed",
    422: "Unprocessable content",
    431: "Request header fields too large",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
    505: "HTTP version not supported",
    499: "Client closed request",
}

# aiohttp's own errors, named for callers.
_SLUG_FOR_STATUS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


class Problem(Exception):
    """A failure to report to the caller as problem+json."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


# Expect (RFC 9110 §10.1.1). aiohttp answers it in the route's expect handler, before any
# middleware: a text/plain 417 quoting the header (no request id, no log line, no metric), and a
# "100 Continue" to any client, before its identity or its body's size was checked — inviting a
# body that is then refused. Every route of the gateway has defer_expectation instead
# (gateway.app): problem_middleware refuses any expectation but 100-continue (417), and the
# handlers' body readers call send_continue once the request passed every check made without
# its body; a refusal before then ends the connection (problem_response).
_CONTINUED_KEY = web.RequestKey("continued", bool)
_CONTINUE = "100-continue"


async def defer_expectation(request: web.Request) -> None:
    """The routes' ``expect_handler``: answers nothing; see send_continue."""
    return None


def _expectations(request: web.Request) -> list[str]:
    return [
        item.strip().lower()
        for value in request.headers.getall("Expect", [])
        for item in value.split(",")
        if item.strip()
    ]


async def send_continue(request: web.Request) -> None:
    """Tell a client that waits to send its body (``Expect: 100-continue``) to send it: called
    just before the body is read, after the checks that need no body (identity, right, media
    type, declared size)."""
    if (
        request.version == HttpVersion11  # RFC 9110: ignored in an HTTP/1.0 request
        and _CONTINUE in _expectations(request)
        and not request.get(_CONTINUED_KEY)
        and not request.content.is_eof()  # all of it came without waiting: nothing to invite
    ):
        request[_CONTINUED_KEY] = True
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp does: the answer's own bytes come next


def _body_held_back(request: web.Request) -> bool:
    """The client may still hold its body back, waiting for a 100 Continue it was not sent."""
    return (
        bool(_expectations(request))
        and not request.get(_CONTINUED_KEY)
        and not request.content.is_eof()
    )


def problem_response(request: web.Request, problem: Problem) -> web.Response:
    body = {
        "type": PROBLEM_TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.path,
        "request_id": request.get(REQUEST_ID_KEY, ""),
        **problem.extra,
    }
    headers = problem.headers
    if request.content.exception() is not None or _body_held_back(request):
        # The body could not be read (a Content-Encoding it is not in): neither can the rest of
        # it; or the client waits to be told to send it, and will not be: the connection ends
        # with this answer.
        headers = {**(headers or {}), "Connection": "close"}
    response = web.Response(
        status=problem.status,
        body=msgspec.json.encode(body),
        content_type="application/problem+json",
        headers=headers,
    )
    if headers is not None and headers.get("Connection") == "close":
        # An answer that ends the connection (an unreadable body, one that stopped arriving, a
        # version it does not speak) ends it at once: the header alone does not close it, and
        # the stream is marked ended, or aiohttp, draining it after the answer, waits 10 s for
        # the rest or logs the failed read as a server error.
        request.content.feed_eof()
        response.force_close()
    return response


STORE_RETRY_AFTER_S = 30  # a full disk or a lost database is not fixed in a second
STORE_NOTHING_KEPT = (
    "the gateway cannot store anything now; nothing of this request was kept: send it again later"
)
# Every request that can reach a commit answers its own repeat: a dossier's same code and body,
# a document's same DocumentId and package, a status message: as the first time; a resume or a
# replay already done: 409 (the flow runs again, the job is no longer dead).
STORE_COMMIT_UNCERTAIN = (
    "the gateway lost its store while saving this request: it may have been stored; sending the "
    "same request again is safe: the same dossier code and body get the same answer"
)
# Fail-closed: audit checkpoints cannot be timestamped (a TSA down, a key gone). The checkpointer
# retries every second and new work is accepted again at its first success, but what stopped it
# is rarely fixed that fast.
NOT_ACCEPTING_RETRY_AFTER_S = 30


def store_unavailable(
    request: web.Request, reason: Exception, *, title: str | None = None
) -> Problem:
    """The 503 ``store-unavailable`` for a request the store (or the document blob folder) could
    not take. ``reason`` (a database server's own message and CONTEXT, a folder's path and the
    system's error) is for the operator: it is logged here (and /readyz shows the store's). The
    client gets a stable detail that says what became of its request."""
    log.error("store unavailable: %s", reason, extra={"request_id": request.get(REQUEST_ID_KEY)})
    return Problem(
        503,
        "store-unavailable",
        STORE_COMMIT_UNCERTAIN if isinstance(reason, CommitUncertain) else STORE_NOTHING_KEPT,
        title=title,
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


def not_accepting(reason: str) -> Problem:
    """The 503 ``not-accepting`` for new work refused while the audit log fails closed."""
    return Problem(
        503,
        "not-accepting",
        reason,
        headers={"Retry-After": str(NOT_ACCEPTING_RETRY_AFTER_S)},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# nginx's status for a request whose client closed the connection before the answer: in the
# access log and the metrics only (no one is left to receive it). Never a server error.
CLIENT_CLOSED = 499


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


_HTTP1 = (HttpVersion11, HttpVersion10)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.version not in _HTTP1:
        # aiohttp's parser takes any digit.digit (HTTP/2.0, HTTP/0.9) and would answer in kind.
        return problem_response(
            request,
            Problem(
                505,
                "http-version-not-supported",
                f"HTTP/{request.version.major}.{request.version.minor}: this gateway speaks "
                "HTTP/1.1 (and 1.0)",
                headers={"Connection": "close"},
            ),
        )
    unmet = [e for e in _expectations(request) if e != _CONTINUE]
    if unmet:
        # RFC 9110 §10.1.1; the expectation is not quoted back (aiohttp's answer echoed it).
        return problem_response(
            request,
            Problem(
                417,
                "expectation-failed",
                f"this gateway meets no expectation but {_CONTINUE} (the Expect header)",
            ),
        )
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(request, problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        slug = _SLUG_FOR_STATUS.get(exc.status, f"http-{exc.status}")
        detail = exc.reason
        if exc.status == 413:
            detail = "the request body is larger than this gateway accepts"
        # RFC 9110 §15.5.6: a 405 names the methods the resource has.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(request, Problem(exc.status, slug, detail, headers=allow))
    except StoreUnavailable as exc:
        return problem_response(request, store_unavailable(request, exc))
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and client_gone(request):
            # The client went away before its body was read: no fault of ours, and no one to
            # answer; the status is for the access log and the metrics. (A reset of another
            # connection, leaked from below, is a 500 like any other.)
            return problem_response(
                request, Problem(CLIENT_CLOSED, "client-closed-request", "the client went away")
            )
        log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID_KEY)})
        return problem_response(
            request,
            Problem(
                500,
                "internal-error",
                "an unexpected error; nothing was lost — quote the request id",
            ),
        )
