"""What every handler needs: typed app state, strict JSON in, JSON out."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from connectors.text import VIETNAM
from gateway.models import TEXT_PATTERNS, text_fault
from gateway.parse_errors import unsupported_coding
from gateway.problems import Problem, not_accepting, send_continue

__all__ = [
    "SQL_INT_MAX",
    "birth_date_or_year",
    "body_error",
    "check_life_date",
    "json_response",
    "nfc",
    "query_flag",
    "query_int",
    "query_text",
    "read_json",
    "refuse_unless_accepting",
    "unreadable_body",
]

T = TypeVar("T")
R = TypeVar("R")

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


_EARLIEST = date(1900, 1, 1)


def check_life_date(day: date | int | None, where: str) -> None:
    """A date of birth or death (or a year of birth: an int) lies between 1900 and today
    (Vietnam's date): the registries refuse anything else. Raises Problem 422 invalid-request
    naming ``where``."""
    today = datetime.now(VIETNAM).date()
    if isinstance(day, int):
        good = _EARLIEST.year <= day <= today.year
    else:
        good = day is None or _EARLIEST <= day <= today
    if not good:
        raise Problem(
            422, "invalid-request", f"{where}: {day} is not between 1900 and today", field=where
        )


def birth_date_or_year(value: str, where: str) -> date | int:
    """A lookup's ``YYYY-MM-DD`` or ``YYYY`` (the model checked the shape) as a date or a year,
    between 1900 and today. Raises Problem 422 invalid-request naming ``where``."""
    if len(value) == 4:
        year = int(value)
        check_life_date(year, where)
        return year
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Problem(
            422, "invalid-request", f"{where}: {value} is not a day of the calendar", field=where
        ) from None
    check_life_date(day, where)
    return day


def decode(body: bytes, model: type[T], *, where: str = "$") -> T:
    """Strictly decode JSON into ``model``, every string in NFC.

    Normalising the text before decoding is not enough: JSON may escape combining marks
    (``\u0301``), so strings are normalised after parsing, then converted. Raises Problem 400 / 422
    with msgspec's own path to the offending field.
    """
    value: Any = None
    try:
        value = msgspec.json.decode(body)
        _refuse_duplicate_keys(body)
        value = nfc(value)
        return msgspec.convert(value, model)
    except RecursionError:
        # Arrays in arrays a few hundred deep (a kilobyte of JSON) exhaust the stack in the
        # decoder or in nfc(); no body of ours nests more than a few levels.
        raise Problem(400, "malformed-json", "the body nests too deeply") from None
    except UnicodeDecodeError:
        raise Problem(400, "malformed-json", "the body is not UTF-8") from None
    except _DuplicateKey as exc:
        raise Problem(
            400, "malformed-json", f"the key {exc.key!r} appears twice in one object"
        ) from None
    except msgspec.ValidationError as exc:
        message = _in_words(str(exc), value)
        if where != "$":  # a part decoded on its own: its paths, and its root, are within where
            at = message.rfind(" - at `$")
            message = (
                f"{message[:at]} - at `{where}{message[at + 8 :]}"
                if at >= 0
                else f"{message} - at `{where}`"
            )
        # msgspec's own words for it, at the start: a client's value quoted later cannot mimic it
        unknown = message.startswith("Object contains unknown field")
        raise Problem(422, "unknown-field" if unknown else "invalid-request", message) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed-json", f"the body is not valid JSON: {exc}") from None


# msgspec's words for a string that fails one of the models' text patterns: the pattern, some
# 400 characters of regular expression, quoted whole.
_TEXT_FAILED = tuple(f"Expected `str` matching regex {p!r} - at `" for p in TEXT_PATTERNS)
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")
_NOT_ONE_LINE = (
    "no control character, line or paragraph separator, U+FFFE or U+FFFF, and more than spaces"
    " and combining marks"
)


def _in_words(message: str, value: Any) -> str:
    """msgspec's ``message`` about ``value`` (the JSON decoded), where it quotes a text pattern
    of gateway.models, saying instead what is wrong with the text it names: the character that
    is no part of a line of text, and where, or that it is blank."""
    if not message.startswith(_TEXT_FAILED):
        return message
    path = message[message.index(" - at `") + len(" - at `") : -1]
    text = _at(value, path)
    fault = text_fault(text) if isinstance(text, str) else None
    return f"Expected one line of text: {fault or _NOT_ONE_LINE} - at `{path}`"


def _at(value: Any, path: str) -> Any:
    """The part of ``value`` at msgspec's ``path`` (``$.data.children[0].name``), or None."""
    if not path.startswith("$"):
        return None
    found, at = value, 1
    while at < len(path):
        step = _PATH_STEP.match(path, at)
        if step is None:
            return None
        key, index = step.groups()
        if key is not None and isinstance(found, dict):
            found = found.get(key)
        elif index is not None and isinstance(found, list) and int(index) < len(found):
            found = found[int(index)]
        else:
            return None
        at = step.end()
    return found


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        key = unicodedata.normalize("NFC", key)
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)


# Built once: json.loads(..., object_pairs_hook=...) builds a decoder per call, costlier than
# the parse itself.
_KEY_CHECKER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _refuse_duplicate_keys(body: bytes) -> None:
    """Raise _DuplicateKey if an object of ``body`` (valid JSON) names a key twice, or two keys
    that are one in NFC. msgspec, as most parsers, keeps the last one without a word: a client
    sending ``personal_id`` twice would have one checked and the other dropped unseen.
    The second parse costs under 2 us for a lookup's body."""
    _KEY_CHECKER.decode(body.decode())  # valid UTF-8: msgspec has read it


# The codings aiohttp decodes (gzip, deflate; br and zstd its parser refuses, as
# gateway.parse_errors answers), and none. It hands any other body over as it came: still encoded.
_DECODED = frozenset({"gzip", "deflate", "identity"})


# Bodies up to this size are decoded on the event loop (a lookup's: ~4 us), larger ones in a thread.
_DECODE_ON_LOOP_MAX = 64 * 1024


def check_content_encoding(request: web.Request) -> None:
    """Raise Problem 415 unless the body is in one coding aiohttp decodes, or in none."""
    codings = request.headers.getall("Content-Encoding", [])
    if codings and (len(codings) > 1 or codings[0].strip().lower() not in _DECODED):
        raise unsupported_coding()


# A client that stops sending its body midway held its connection (and a document's staging
# folder) for ever: each wait for more of a body is bounded (nginx's client_body_timeout).
BODY_IDLE_S = 30.0


async def more_body(read: Awaitable[R]) -> R:
    """``await read`` (a read of the request body), or Problem 408 after BODY_IDLE_S without
    it; the answer ends the connection (the rest of the body will not be read)."""
    try:
        async with asyncio.timeout(BODY_IDLE_S):
            return await read
    except TimeoutError:
        raise Problem(
            408,
            "request-timeout",
            f"the request body stopped arriving: nothing came for {BODY_IDLE_S:g} s",
            headers={"Connection": "close"},
        ) from None


async def read_json(request: web.Request, model: type[T]) -> T:
    """The request body as ``model``. Raises Problem 415 / 413 / 400 / 422."""
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            f"send application/json, not {request.content_type or 'nothing'}",
        )
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise Problem(
            415, "unsupported-media-type", f"send JSON in UTF-8 (RFC 8259), not {charset}"
        )
    check_content_encoding(request)
    limit = request.client_max_size  # [gateway] max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refused before a byte is read, and before a client that waits is invited to send it.
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    await send_continue(request)
    try:
        body = await _read_body(request, limit)
    except web.RequestPayloadError as exc:  # not in its Content-Encoding (gzip that is not)
        raise unreadable_body(exc, "malformed-json") from None
    if len(body) > _DECODE_ON_LOOP_MAX:
        # A megabyte takes ~30 ms to parse, check and convert: every other request would wait.
        return await asyncio.to_thread(decode, body, model)
    return decode(body, model)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes once decoded (413 past it); Problem 408 when it
    stops arriving: each wait for more of it is bounded, not the whole read, which a large body
    sent slowly but steadily may take longer than BODY_IDLE_S to finish."""
    if request.content.is_eof():
        # It came with its headers (nearly every body): read without a timer; client_max_size
        # caps it.
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := await more_body(request.content.readany()):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


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
    raw = _single(request, name)
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


def only_parameters(request: web.Request, *names: str) -> None:
    """Refuse a query parameter the route does not read (400 invalid-query naming it): a filter
    misspelt (``?dosier=…``) was ignored, and the answer held everything, as if filtered."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        known = ", ".join(names) or "none"
        raise Problem(
            400,
            "invalid-query",
            f"unknown query parameter {unknown[0]} (this route reads: {known})",
            parameter=unknown[0],
        )


def query_text(request: web.Request, name: str) -> str | None:
    """The text query parameter ``name``, or None when absent. A control character in it is a
    400 invalid-query naming the parameter: no identifier, time or cursor of this API has one,
    and PostgreSQL refuses a NUL in any text (a 500, where SQLite answered as if it were text)."""
    value = _single(request, name)
    if value is not None and _CONTROL.search(value):
        raise Problem(
            400,
            "invalid-query",
            f"the query parameter {name} holds a control character",
            parameter=name,
        )
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """The yes/no query parameter ``name``: ``1`` or ``true``, ``0`` or ``false``, absent (no);
    anything else is a 400 invalid-query (``verify=yes`` was a silent no)."""
    raw = _single(request, name)
    if raw is None or raw in ("0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise Problem(400, "invalid-query", f"{name} must be 1, true, 0 or false", parameter=name)


def _single(request: web.Request, name: str) -> str | None:
    """The query parameter ``name``, or None; given twice it is a 400 invalid-query, not the
    first of them taken silently (``?status=completed&status=bogus``)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise Problem(
            400,
            "invalid-query",
            f"the query parameter {name} is given more than once",
            parameter=name,
        )
    return values[0] if values else None


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
