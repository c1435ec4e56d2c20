"""The connector interface: what the gateway asks of every national registry.

A connector turns a gateway operation (``"citizen.lookup"``, ``"birth.register"``, …) with
plain-data parameters into the registry's own contract (SOAP or REST), and the registry's answer
back into plain data. Everything registry-specific stays behind :meth:`Connector.handle`.

Exceptions (nothing else escapes a public call; foreign errors are translated at the transport)::

    ConnectorError            base; carries the registry name, the registry's own code, and
                              the reference of a write it recorded before the call failed
    ├── TransientError        may succeed if tried again: timeouts, resets, 5xx, outages,
    │                         malformed replies (a reference holding a control character
    │                         included), "server busy" result codes
    └── PermanentError        will not succeed as sent: rejected data, unknown citizen,
        │                     unknown operation, a reply whose signature does not verify
        └── Verdict           the registry judged the request as it stands, and said no
                              (BHXH: the deceased was never insured): nothing to correct
"""

from __future__ import annotations

import abc
import html
import json
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote, quote_plus

from yarl import URL

__all__ = [
    "RETRYABLE_4XX",
    "Connector",
    "ConnectorError",
    "Endpoint",
    "PermanentError",
    "Request",
    "Result",
    "TransientError",
    "Verdict",
    "excerpt",
    "retry_after",
    "transient_status",
]


class ConnectorError(Exception):
    """A registry call failed. ``code`` is the registry's own result code, when it gave one.
    ``recorded``: the registry's reference for a write it did record, the failure coming after
    it (a birth registered, its certificate's signature then refused by the gateway): the write
    is done at the registry whatever becomes of the call; None when that is not known."""

    def __init__(
        self, registry: str, message: str, *, code: str | None = None, recorded: str | None = None
    ) -> None:
        super().__init__(f"{registry}: {message}")
        self.registry = registry
        self.message = message
        self.code = code
        self.recorded = recorded


class TransientError(ConnectorError):
    """Worth retrying: the registry was unreachable, slow, overloaded or answered garbage.
    ``wait_s``: how long the registry asked to be left alone (its Retry-After), when it said.
    ``answered``: the registry did answer, with a result code that says to try again later
    (BHXH's 100/101, a data or server error about one record): worth retrying, but no sign that
    the registry is down, so a circuit breaker does not count it.
    ``timed_out``: the gateway's own deadline for the exchange ran out before an answer came
    (an answer that speaks of a timeout, a proxy's 504, is an answer: not this)."""

    def __init__(
        self,
        registry: str,
        message: str,
        *,
        code: str | None = None,
        recorded: str | None = None,
        wait_s: float | None = None,
        answered: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(registry, message, code=code, recorded=recorded)
        self.wait_s = wait_s
        self.answered = answered
        self.timed_out = timed_out


class PermanentError(ConnectorError):
    """Not worth retrying: the registry understood the request and refused it."""


class Verdict(PermanentError):
    """A refusal on the merits: the request's data are right and complete, and the answer to
    them is no (a funeral allowance the deceased is not eligible for). No correction of the
    request changes it; a caller that knows no better treats it as any refusal. ``reason``:
    the registry's own words, for the citizen who is told of it."""

    def __init__(self, registry: str, message: str, *, code: str, reason: str) -> None:
        super().__init__(registry, message, code=code)
        self.reason = reason


# 408 Request Timeout, 425 Too Early, 429 Too Many Requests: the server refused the request for
# now, not for what it says; the same request later may succeed.
RETRYABLE_4XX: frozenset[int] = frozenset({408, 425, 429})


def transient_status(status: int) -> bool:
    """Whether an HTTP error status is worth retrying: any 5xx, or one of :data:`RETRYABLE_4XX`.
    The one definition for every outbound HTTP call (registries, callbacks, document delivery)."""
    return status >= 500 or status in RETRYABLE_4XX


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header (RFC 9110 10.2.3: delay-seconds or an HTTP-date) in seconds from
    ``now``, at least 0; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def excerpt(raw: bytes, *, hide: Collection[str] = (), limit: int = 200) -> str:
    """The start of a reply's body for an error message (stored as a step's error, shown to
    clients), with each of ``hide`` — the credentials the request carried — replaced by ``***``,
    as it is, percent-encoded or JSON-escaped (as sent, or as an echo may re-encode it), also
    inside an HTML page, before it is cut: an error page may echo the request, its query or its
    JSON body. An HTML page's character references (``&amp;``, ``&#x27;``, ``&#39;`` …) are read
    as the characters they stand for: however its server escaped an echo, it is masked."""
    # Only the start matters (the cut keeps ``limit`` characters): not megabytes on the loop.
    text = raw[: 16 * 1024].decode("utf-8", "replace")
    forms = sorted(
        # shorter ones (a flag, a digit) say nothing and would garble it
        {form for value in hide if len(value) >= 4 for form in _spellings(value)},
        key=len,
        reverse=True,
    )
    # Masked as it came (a secret may itself hold "&amp;"), then as an HTML page reads: a
    # page quotes the request URL with & < > ' " escaped, each server in its own way.
    text = html.unescape(_masked(text, forms))
    return _masked(text, forms)[:limit].strip()


def _masked(text: str, forms: Collection[str]) -> str:
    for form in forms:
        text = text.replace(form, "***")
    return text


_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _spellings(value: str) -> set[str]:
    """How an echo may spell ``value``: as sent in a query (aiohttp's encoding), percent-encoded
    otherwise (in upper- or lower-case hex: .NET writes ``%3c``), or inside a JSON string
    (escaped, non-ASCII as it is or as ``\\uXXXX``, and ``/`` as ``\\/``, as PHP writes it)."""
    sent = URL.build(query={"v": value}).raw_query_string[2:]
    encoded = {sent, quote(value, safe=""), quote_plus(value)}
    encoded |= {_PERCENT_ESCAPE.sub(lambda m: m[0].lower(), form) for form in encoded}
    in_json = {json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    in_json |= {form.replace("/", "\\/") for form in in_json}
    return {value, *encoded, *in_json}


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where a registry is and how to authenticate to it (from ``[registries.<name>]``)."""

    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    client_id: str = ""  # X-Road-Client for the national data-exchange platform
    timeout: float = 10.0  # seconds for one HTTP exchange
    sign_requests: bool = False  # sign outbound messages where the registry requires it

    def secrets(self) -> tuple[str, ...]:
        """The configured credentials, which no error text may quote: a registry's error page
        may echo a request's body (BHXH's token request holds the password), not only its query
        and headers. The URL's own are among them: every value of its query (an API gateway
        before a registry may take its key as ``?apikey=``, and no list of names is complete)
        and the password of a ``user:password@``, as written and decoded."""
        found = [self.password, self.secret, self.api_key]
        try:
            url = URL(self.url)
            found += [url.raw_password or "", url.password or "", *url.query.values()]
        except ValueError:
            pass  # not a URL a request could be sent to: nothing of it was sent
        raw_query = self.url.partition("?")[2].partition("#")[0]
        found += [item.partition("=")[2] for item in raw_query.split("&")]
        return tuple(dict.fromkeys(value for value in found if value))


@dataclass(frozen=True, kw_only=True)
class Request:
    operation: str
    params: Mapping[str, Any]
    # Same key → the registry performs the write once, however often it is delivered.
    idempotency_key: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Result:
    data: dict[str, Any]
    # The registry's reference for what it did (registration number, receipt id), for the history.
    reference: str | None = None


class Connector(abc.ABC):
    """One registry. Use as ``async with``; override :meth:`handle` (the one hook)."""

    registry: ClassVar[str]
    operations: ClassVar[frozenset[str]]

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire sessions, load WSDLs. Called once by ``__aenter__``."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def handle(self, request: Request) -> Result:
        """Perform one operation. Raises :class:`TransientError` or :class:`PermanentError`."""

    def _map(
        self, convert: Callable[[], dict[str, Any]], error: type[PermanentError | TransientError]
    ) -> dict[str, Any]:
        """``convert()``, with a mapping failure raised as ``error``. Mapping our params, a
        ValueError is bad input (permanent); mapping a reply, it is a reply outside the contract
        (treated like any malformed reply: transient)."""
        try:
            return convert()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise error(self.registry, str(exc)) from exc

    async def call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> Result:
        """Check the operation is one this registry offers, then :meth:`handle` it; a result
        whose reference holds a control character is a malformed reply (TransientError), and so
        is a failure whose ``recorded`` reference holds one."""
        if operation not in self.operations:
            raise PermanentError(self.registry, f"unknown operation {operation!r}")
        try:
            result = await self.handle(
                Request(
                    operation=operation,
                    params=params,
                    idempotency_key=idempotency_key,
                    request_id=request_id,
                )
            )
        except ConnectorError as exc:
            if exc.recorded is not None and _has_control(exc.recorded):
                raise self._malformed(exc.recorded) from exc
            raise
        if result.reference is not None and _has_control(result.reference):
            raise self._malformed(result.reference)
        return result

    def _malformed(self, reference: str) -> TransientError:
        # The reference is kept as text with the step's history: PostgreSQL refuses a NUL there
        # (after the registry did the write), SQLite would keep it and show it on.
        return TransientError(
            self.registry,
            f"malformed reply: its reference {reference[:64]!r} holds a control character",
        )


def _has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character (NUL, ESC, a newline, DEL…) or a
    lone surrogate."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)
