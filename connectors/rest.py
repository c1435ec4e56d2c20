"""JSON over HTTP: the transport shared by the REST registries (insurance, business, portal).

One :class:`RestTransport` per connector holds one :class:`connectors.http1.HttpClient` (opened by
:meth:`RestTransport.open`, closed by :meth:`RestTransport.close`), as the SOAP connectors do, with
one deadline over each exchange. Every foreign failure is translated in ONE place,
:func:`translate_errors`:

- connection refused / reset / dropped mid-reply / timeouts / a reply that is not HTTP or is over
  :data:`MAX_BODY` → TransientError
- HTTP 5xx, 408, 425, 429 (:func:`~connectors.api.transient_status`) → TransientError; any other
  4xx → PermanentError (``code`` = ``"http-<status>"``), unless the caller listed the status in
  ``accept`` and wants to interpret it itself (404 "not found", a 401 that means "refresh the
  token")
- HTTP 3xx → PermanentError: redirects are not followed (a registry answers where it is
  configured; following one would hand the API key or the query's credentials to another host)
- a request that cannot be sent (a header with a line break) → PermanentError
- no error message quotes the request's URL: insurance's query carries its token and password,
  and the message is stored as a step's error and shown to clients (the client's errors never
  carry it); nor, in an error page's excerpt, the query's values, the credential headers or the
  endpoint's configured secrets, wherever the page echoes them (BHXH's token request carries the
  password in its JSON body)
- a body that is not the expected JSON (the sandbox ``malformed`` fault answers HTML with a 200;
  JSON nested deeper than the decoder reads) → TransientError: a garbled reply says nothing about whether the request was acceptable.

The transport retries nothing itself; retrying is the caller's (the gateway's outbox and retry
policy, a lookup's in-request retries). The HTTP client below it sends a request once more only
when a kept-alive connection was closed under it before any reply (see :mod:`connectors.http1`),
and only a request safe to repeat: a GET, a write with its ``Idempotency-Key``, or a read sent as
POST that its caller marks ``repeatable``.

Writes carry ``Idempotency-Key`` so a registry performs them once however often they are
delivered; every request carries ``X-Request-Id`` for correlation in both sides' logs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from yarl import URL

from connectors.api import (
    ConnectorError,
    Endpoint,
    PermanentError,
    TransientError,
    excerpt,
    retry_after,
    transient_status,
)
from connectors.http1 import BadReply, HttpClient, ReplyTooLarge

__all__ = ["RestReply", "RestTransport", "translate_errors"]

T = TypeVar("T")

# Registries answer small JSON documents; a reply bigger than this is garbage, not data.
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class RestReply:
    """A reply the transport let through: a 2xx, or a status the caller asked to ``accept``."""

    status: int
    data: Any


@contextmanager
def translate_errors(registry: str) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block into connector errors.

    Raises:
        TransientError: connection failures, timeouts, cut, oversized, undecodable (nested too
            deep included) or non-HTTP replies (retrying may help).
        PermanentError: a request that cannot be sent (retrying will not help).
    """
    try:
        yield
    except ConnectorError:
        raise
    except TimeoutError as exc:
        raise TransientError(
            registry, f"no answer in time ({type(exc).__name__})", timed_out=True
        ) from exc
    except OSError as exc:
        # Refused, reset, dropped: the request may or may not have been processed (lost reply),
        # which is why writes carry an idempotency key. Its text names the registry's address on
        # the government network, which is no client's business: the kind of failure only, as
        # the SOAP transport says it (the exception, chained, keeps the rest).
        raise TransientError(registry, f"connection failed: {type(exc).__name__}") from exc
    except ReplyTooLarge as exc:
        raise TransientError(registry, str(exc)) from exc
    except BadReply as exc:
        raise TransientError(registry, f"malformed reply: {exc}") from exc
    except (msgspec.MsgspecError, RecursionError) as exc:
        # msgspec raises RecursionError, no DecodeError, for JSON nested deeper than it reads
        # (some 1,000 levels; a few kilobytes of brackets): garbage like any other.
        raise TransientError(registry, f"malformed reply: {exc}") from exc
    except ValueError as exc:  # from the client: the request itself cannot be sent
        raise PermanentError(registry, f"request cannot be sent: {exc}") from exc


class RestTransport:
    """One registry's HTTP/JSON channel: base URL, timeouts, default headers, error translation."""

    def __init__(
        self,
        registry: str,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self._headers = dict(headers or {})
        # The paths are joined onto the url as onto a folder, whether or not it ends in a slash
        # and has a query (``http://h/bhxh?k=…`` lost "bhxh" and the query: RFC 3986 joins onto
        # the parent of a last segment), and the url's query (an API gateway's key before the
        # registry) goes with every request, before the request's own parameters.
        configured = URL(endpoint.url)
        self._base = configured.with_path(configured.raw_path.rstrip("/") + "/", encoded=True)
        self._query = configured.query
        self._http: HttpClient | None = None

    async def open(self) -> None:
        if self._http is None:
            self._http = HttpClient(timeout=self.endpoint.timeout, max_reply=MAX_BODY)

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        request_id: str | None = None,
        accept: Collection[int] = (),
        type: type[T] | Any = Any,
        repeatable: bool = False,
    ) -> RestReply:
        """Send one request and decode its JSON reply (into ``type`` when given).

        ``path`` is relative to the endpoint URL, below its path (a leading slash too); the
        endpoint URL's query comes first, then ``params``. ``repeatable``: the request is a read
        though sent as POST, safe to send again (a GET, or a request with an
        ``idempotency_key``, is without saying).

        Raises:
            TransientError: unreachable, timed out, 5xx, 408, 425, 429, or a reply that is not the
                expected JSON.
            PermanentError: another 4xx or a 3xx not listed in ``accept``; the transport is not
                open.
        """
        if self._http is None:
            raise PermanentError(self.registry, "transport used before open() or after close()")
        sent = {"Accept": "application/json", **self._headers, **(headers or {})}
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        if request_id is not None:
            sent["X-Request-Id"] = request_id
        body = None if json is None else msgspec.json.encode(json)
        if body is not None:
            sent["Content-Type"] = "application/json"
        url = self._base.join(URL(path.lstrip("/")))
        if self._query:
            url = url.with_query(self._query)
        if params:
            url = url.extend_query(params)
        with translate_errors(self.registry):
            # A registry answers where it is configured; a redirect is a misconfiguration (or an
            # attempt to collect the credentials a request carries) and is not followed.
            reply = await self._http.request(method, url, sent, body or b"", repeatable=repeatable)
            raw, status = reply.body, reply.status
            wait_s = retry_after(reply.headers.get("Retry-After"))
            if transient_status(status) or (status >= 400 and status not in accept):
                # The reply's first words, but never what this request carried: an error page
                # may echo the URL (insurance's query holds its token and password) or the body
                # (its token request's holds the password), so the configured secrets too.
                hide = [
                    *(params or {}).values(),
                    *self._headers.values(),
                    *(headers or {}).values(),
                    *self.endpoint.secrets(),
                ]
                said = excerpt(raw, hide=hide)
                said = said or "(empty body)"
                message, code = f"HTTP {status}: {said}", f"http-{status}"
                if transient_status(status):
                    raise TransientError(self.registry, message, code=code, wait_s=wait_s)
                raise PermanentError(self.registry, message, code=code)
            if 300 <= status < 400 and status not in accept:
                # Where it pointed is not quoted: a Location can echo the request's query.
                raise PermanentError(
                    self.registry,
                    f"HTTP {status}: redirects are not followed",
                    code=f"http-{status}",
                )
            if status in accept and not 200 <= status < 300:
                # The caller interprets this status itself; its body is a courtesy, not a contract.
                try:
                    return RestReply(status, msgspec.json.decode(raw))
                except (msgspec.DecodeError, RecursionError):
                    return RestReply(status, None)
            if not 200 <= status < 300:
                raise TransientError(self.registry, f"unexpected HTTP {status}")
            data = msgspec.json.decode(raw, type=type)
        return RestReply(status, data)
