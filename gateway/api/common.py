"""What every handler needs: typed app state, strict JSON in, JSON out."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.parse_errors import unsupported_coding
from gateway.problems import Problem, not_accepting

__all__ = [
    "SQL_INT_MAX",
    "body_error",
    "json_response",
    "nfc",
    "query_int",
    "query_text",
    "read_json",
    "refuse_unless_accepting",
    "unreadable_body",
]

T = TypeVar("T")

# The largest integer a store can hold (SQLite INTEGER, PostgreSQL bigint): ids and cursors above
# it are refused at the boundary, not by the database (an OverflowError, a 500).
SQL_INT_MAX = 2**63 - 1


def nfc(value: Any) -> Any:
    """Vietnamese arrives in NFC and NFD: normalise every string at the boundary."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nfc(v) for v in value]
    return value


def decode(body: bytes, model: type[T], *, where: str = "$") -> T:
    """Strictly decode JSON into ``model``, every string in NFC.

    Normalising the text before decoding is not enough: JSON may escape combining marks
    (``\u0301``), so strings are normalised after parsing, then converted. Raises Problem 400 / 422
    with msgspec's own path to the offending field.
    """
    try:
        return msgspec.convert(nfc(msgspec.json.decode(body)), model)
    except RecursionError:
        # Arrays in arrays a few hundred deep (a kilobyte of JSON) exhaust the stack in the
        # decoder or in nfc(); no body of ours nests more than a few levels.
        raise Problem(400, "malformed-json", "the body nests too deeply") from None
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$", f"`{where}", 1) if where != "$" else str(exc)
        slug = "unknown-field" if "unknown field" in message else "invalid-request"
        raise Problem(422, slug, message) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed-json", f"the body is not valid JSON: {exc}") from None


# The codings aiohttp decodes (gzip, deflate; br and zstd its parser refuses, as
# gateway.parse_errors answers), and none. It hands any other body over as it came: still encoded.
_DECODED = frozenset({"gzip", "deflate", "identity"})


def check_content_encoding(request: web.Request) -> None:
    """Raise Problem 415 unless the body is in one coding aiohttp decodes, or in none."""
    codings = request.headers.getall("Content-Encoding", [])
    if codings and (len(codings) > 1 or codings[0].strip().lower() not in _DECODED):
        raise unsupported_coding()


async def read_json(request: web.Request, model: type[T]) -> T:
    """The request body as ``model``. Raises Problem 415 / 413 / 400 / 422."""
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            f"send application/json, not {request.content_type or 'nothing'}",
        )
    check_content_encoding(request)
    try:
        body = await request.read()  # client_max_size caps it (413 before we see it)
    except web.RequestPayloadError as exc:  # not in its Content-Encoding (gzip that is not)
        raise unreadable_body(exc, "malformed-json") from None
    return decode(body, model)


def unreadable_body(exc: web.RequestPayloadError, slug: str, **extra: Any) -> Problem:
    """The 400 for a body aiohttp cannot read (a Content-Encoding it is not in); the answer ends
    the connection (problem_response)."""
    return Problem(400, slug, f"the request body cannot be read: {body_error(exc)}", **extra)


def body_error(exc: Exception) -> str:
    """aiohttp's message for a broken body, on one line, without its "400, message:" framing."""
    cause = exc.__cause__ if isinstance(exc, web.RequestPayloadError) and exc.__cause__ else exc
    return " ".join(str(getattr(cause, "message", None) or cause).split())


def json_response(
    value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    lo: int = 0,
    hi: int = SQL_INT_MAX,
) -> int:
    """The integer query parameter ``name`` (ASCII digits, ``lo`` to ``hi``), or ``default`` when
    absent; ``default=None`` makes it required. Anything else is a 400 invalid-query."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise Problem(
                400, "invalid-query", f"the query parameter {name} is required", parameter=name
            )
        return default
    value = parse_int(raw)
    if value is None or not lo <= value <= hi:
        raise Problem(
            400, "invalid-query", f"{name} must be an integer from {lo} to {hi}", parameter=name
        )
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def query_text(request: web.Request, name: str) -> str | None:
    """The text query parameter ``name``, or None when absent. A control character in it is a
    400 invalid-query naming the parameter: no identifier, time or cursor of this API has one,
    and PostgreSQL refuses a NUL in any text (a 500, where SQLite answered as if it were text)."""
    value = request.query.get(name)
    if value is not None and _CONTROL.search(value):
        raise Problem(
            400,
            "invalid-query",
            f"the query parameter {name} holds a control character",
            parameter=name,
        )
    return value


def parse_int(text: str) -> int | None:
    """``text`` as an int if it is a plain decimal (ASCII digits, an optional minus), else None:
    ``int()`` also takes "+1", " 1 ", "1_000" and other scripts' digits."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return None
    return int(text)


def refuse_unless_accepting(extras: dict[str, Any]) -> None:
    """Refuse new work while the audit log fails closed: its checkpoints cannot be timestamped,
    or it is shorter than its latest checkpoint (new entries would take the removed ones'
    sequence numbers and fork the signed log). New work is whatever appends to the log: a
    dossier, a document or status, a lookup. ``extras``: the runtime's (its ``accepting`` gate
    answers ``(ok, reason)``; none, no gate).

    Raises Problem 503 ``not-accepting``."""
    gate = extras.get("accepting")
    if gate is None:
        return
    state = gate()
    ok, reason = state if isinstance(state, tuple) else (bool(state), "audit checkpoints failing")
    if not ok:
        raise not_accepting(reason)
