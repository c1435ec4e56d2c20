"""Requests aiohttp's HTTP parser refuses: a problem+json answer and one WARNING line.

aiohttp (checked against 3.14.5) answers a request its parser refuses (a NUL in a header, a request
line over 8190 bytes, a ``Content-Encoding`` it cannot decode, a bad method, chunk size or
``Content-Length``) on its own, before any middleware or signal runs: ``RequestHandler.handle_error``
writes a text/plain 400 that quotes the client's bytes, and logs it at ERROR with a traceback, so
any client could fill the log. aiohttp has no public hook for that answer (aio-libs/aiohttp#3287 and
#6463 are open: no middleware sees the request, ``on_response_prepare`` is not sent for it, and the
``RequestHandler`` class is not a parameter). So, in two parts:

* public: :func:`server_handler_args` is ``Application(handler_args=...)``: the ``logger`` aiohttp's
  connection handlers use (a documented parameter of the web protocol). :class:`ServerLog` passes
  every record on to ``aiohttp.server`` unchanged, except one carrying the client's malformed bytes
  (an ``HttpProcessingError``, or the ``RequestPayloadError`` aiohttp meets draining an undecodable
  body after the answer): that is one WARNING line, without a traceback.
* private, and only here: ``RequestHandler.handle_error`` is wrapped, once. For a connection handler
  whose logger is a :class:`ServerLog` (this gateway's; the sandboxes and any other aiohttp server
  keep aiohttp's answer) and an error of the parser, it answers problem+json instead. Should
  aiohttp's ``handle_error`` change its parameters, nothing is wrapped: aiohttp's own answer again,
  still logged as one WARNING line, and tests/e2e/test_http_parse_errors.py fails.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping
from functools import cache, wraps
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong

from .audit.events import withhold_numbers
from .problems import PROBLEM_TYPE_PREFIX, SERVER, Problem

__all__ = [
    "ACCEPTED_CODINGS",
    "ServerLog",
    "parse_problem",
    "server_handler_args",
    "unsupported_coding",
]

log = logging.getLogger("lienthong.http")

# What this gateway reads of a request's head. aiohttp's LineTooLong does not say whether the
# request line or a header field was too long, only the limit it went past: the two limits differ
# by two bytes (the field's is aiohttp's default) so that the limit names which it was.
MAX_REQUEST_LINE = 8192
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 128  # aiohttp's default

# The request Content-Encodings aiohttp decodes with nothing more installed (br needs Brotli, zstd
# backports.zstd); RFC 9110 §15.5.16: a 415 for a content coding says which are accepted.
ACCEPTED_CODINGS = "gzip, deflate"
_QUOTE = 60  # at most this many characters of aiohttp's message, which may quote the client's bytes


# A credential the client's bytes may hold where a message quotes them: a header's value, a
# token after its scheme.
_CREDENTIAL_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|x-api-key)\s*:.*")
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic|digest)\s+\S+")


def _summary(exc: BaseException) -> str:
    """What aiohttp's message for ``exc`` says is wrong: one printable line, at most ``_QUOTE``
    characters, holding none of the client's bytes that may be a person's number or a credential
    (the log keeps no more of them than of an access line's path)."""
    if isinstance(exc, web.RequestPayloadError) and exc.__cause__ is not None:
        exc = exc.__cause__  # "400, message: …" around the parser's own error
    if isinstance(exc, LineTooLong):  # its message quotes the line's start: what, not that
        limit = str(exc.args[1])
        what = {str(MAX_REQUEST_LINE): "the request line", str(MAX_HEADER_FIELD): "a header"}
        return f"Got more than {limit} bytes when reading {what.get(limit, 'a line')}"
    text = str(getattr(exc, "message", "") or exc).strip()
    # The parser's messages: what is wrong (over one or two lines), a blank line, the bytes.
    line = " ".join(text.split("\n\n", 1)[0].split()).rstrip(":")
    line = "".join(c if c.isprintable() else "?" for c in line)
    line = _SCHEME_TOKEN.sub(r"\1 ***", _CREDENTIAL_HEADER.sub(r"\1: ***", line))
    line = withhold_numbers(line)
    return line if len(line) <= _QUOTE else line[: _QUOTE - 1] + "…"


def unsupported_coding() -> Problem:
    """The 415 for a body in a Content-Encoding this gateway does not decode."""
    return Problem(
        415,
        "unsupported-media-type",
        f"the request's Content-Encoding cannot be decoded here: send the body as "
        f"{ACCEPTED_CODINGS}, or not compressed",
        headers={"Accept-Encoding": ACCEPTED_CODINGS},
    )


# aiohttp's parser names the coding it cannot decode in its message ("Can not decode
# content-encoding: brotli (br). Please install `Brotli`"): one of its own words, never the
# client's bytes (it refuses only the codings it knows).
_UNDECODED_CODING = re.compile(r"\((br|zstd)\)")


def _refused_route(exc: HttpProcessingError) -> str:
    """The ``route`` label of a request aiohttp's parser refused with ``exc``: its path was never
    read, so the label says why. A request in a coding aiohttp does not decode (br, zstd) may be
    well-formed, and is refused by design: it is no ``malformed`` one."""
    return "unsupported-encoding" if isinstance(exc, ContentEncodingError) else "malformed"


def _undecoded(exc: ContentEncodingError) -> str:
    """The log's words for a request in a coding aiohttp does not decode: which codings this
    gateway takes, not aiohttp's advice to install a decoder."""
    found = _UNDECODED_CODING.search(str(exc.message))
    coding = f"Content-Encoding {found[1]}" if found else "Content-Encoding"
    return f"its {coding} is not one this gateway decodes ({ACCEPTED_CODINGS})"


def parse_problem(exc: HttpProcessingError) -> Problem:
    """What to answer for a request aiohttp's parser refused with ``exc``."""
    if isinstance(exc, ContentEncodingError):
        # Raised while parsing the headers only for a coding aiohttp cannot decode (a body that
        # is not in its coding fails later, as the handler reads it: api.common.unreadable_body).
        return unsupported_coding()
    if isinstance(exc, LineTooLong):  # its message quotes the line: not repeated here
        if str(exc.args[1]) == str(MAX_REQUEST_LINE):  # RFC 9110 §15.5.15
            return Problem(
                414,
                "uri-too-long",
                f"the request line is longer than this gateway reads ({MAX_REQUEST_LINE} bytes)",
            )
        return Problem(  # RFC 6585 §5
            431,
            "header-fields-too-large",
            f"the request has a header field longer than this gateway reads "
            f"({MAX_HEADER_FIELD} bytes)",
        )
    if "too many headers" in str(exc.message).lower():
        return Problem(
            431,
            "header-fields-too-large",
            f"the request has more header fields than this gateway reads ({MAX_HEADERS})",
        )
    return Problem(
        400, "malformed-request", f"the request is not well-formed HTTP/1.1: {_summary(exc)}"
    )


def _answer(problem: Problem, request_id: str) -> web.Response:
    body = {
        "type": PROBLEM_TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": "",  # the request's target was never read
        "request_id": request_id,
    }
    response = web.Response(
        status=problem.status,
        body=msgspec.json.encode(body),
        content_type="application/problem+json",
        headers={
            **problem.headers,
            "X-Request-Id": request_id,
            "Connection": "close",
            "Server": SERVER,
        },
    )
    response.force_close()  # the parser cannot go on after an error: neither can the connection
    return response


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's connection handlers' logger in this gateway: ``aiohttp.server``, but a client's
    malformed request is one WARNING line, not an ERROR with a traceback."""

    def __init__(self, on_refused: Callable[[str, int], None] | None = None) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        # told the route label and status of each refusal (the gateway's metrics)
        self.on_refused = on_refused

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            log.warning("a malformed request (%s): %s", _format(msg, args), _summary(exc))
            return
        super().log(level, msg, *args, **kwargs)


def _format(msg: object, args: tuple[object, ...]) -> str:
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        return str(msg)


_HandleError = Callable[..., web.StreamResponse]
_CHECKED_PARAMETERS = ["self", "request", "status", "exc", "message"]  # aiohttp 3.14.5


def _answer_parse_errors(aiohttp_handle_error: _HandleError) -> _HandleError:
    @wraps(aiohttp_handle_error)
    def handle_error(
        self: web.RequestHandler,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parser's errors come with a 4xx (400 in 3.14.5); a handler's with 500 or 504.
        if (
            not isinstance(self.logger, ServerLog)
            or not isinstance(exc, HttpProcessingError)
            or status >= 500
            or request.writer.output_size > 0  # aiohttp raises ConnectionError
        ):
            return aiohttp_handle_error(self, request, status, exc, message)
        problem = parse_problem(exc)
        if self.logger.on_refused is not None:
            self.logger.on_refused(_refused_route(exc), problem.status)
        request_id = os.urandom(16).hex()
        if isinstance(exc, ContentEncodingError):
            what, why = "a request", _undecoded(exc)
        else:
            what, why = "a malformed request", _summary(exc)
        log.warning(
            "refused %s from %s: %s",
            what,
            request.remote,
            why,
            extra={"request_id": request_id, "status": problem.status, "problem": problem.slug},
        )
        return _answer(problem, request_id)

    handle_error.lienthong_parse_errors = True  # type: ignore[attr-defined]
    return handle_error


@cache  # once a process
def _install() -> None:
    current = web.RequestHandler.handle_error
    if getattr(current, "lienthong_parse_errors", False):
        return
    if list(inspect.signature(current).parameters) != _CHECKED_PARAMETERS:
        log.warning(
            "aiohttp %s changed RequestHandler.handle_error: a malformed request gets aiohttp's "
            "own text/plain answer (see gateway/parse_errors.py)",
            aiohttp.__version__,
        )
        return
    web.RequestHandler.handle_error = _answer_parse_errors(current)  # type: ignore[method-assign]


def server_handler_args(
    on_refused: Callable[[str, int], None] | None = None,
) -> Mapping[str, Any]:
    """``web.Application(handler_args=...)`` for the gateway (see the module's docstring);
    ``on_refused`` is told the route label (:func:`_refused_route`) and status of every request
    refused here."""
    _install()
    return {
        "logger": ServerLog(on_refused),
        "max_line_size": MAX_REQUEST_LINE,
        "max_field_size": MAX_HEADER_FIELD,
        "max_headers": MAX_HEADERS,
    }
