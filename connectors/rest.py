"""JSON over HTTP: the transport shared by the REST registries (insurance, business, portal).

One :class:`RestTransport` per connector holds one ``aiohttp.ClientSession`` (opened by
:meth:`RestTransport.open`, closed by :meth:`RestTransport.close`) with explicit timeouts. Every
foreign failure is translated in ONE place, :func:`translate_errors`:

- connection refused / reset / server disconnected / timeouts / truncated bodies → TransientError
- HTTP 5xx, 408, 425, 429 (:func:`~connectors.api.transient_status`) → TransientError; any other
  4xx → PermanentError (``code`` = ``"http-<status>"``), unless the caller listed the status in
  ``accept`` and wants to interpret it itself (404 "not found", a 401 that means "refresh the
  token")
- HTTP 3xx → PermanentError: redirects are not followed (a registry answers where it is
  configured; following one would hand the API key or the query's credentials to another host)
- no error message quotes an aiohttp exception's URL: insurance's query carries its token and
  password, and the message is stored as a step's error and shown to clients
- a body that is not the expected JSON (the sandbox ``malformed`` fault answers HTML with a 200)
  → TransientError: a garbled reply says nothing about whether the request was acceptable.

aiohttp itself sends an idempotent request (GET, PUT, DELETE) once more when the server drops
the connection before answering (RFC 9112 §9.3.1); it never resends a POST. All other retrying is
the caller's (the gateway's outbox and retry policy).

Writes carry ``Idempotency-Key`` so a registry performs them once however often they are
delivered; every request carries ``X-Request-Id`` for correlation in both sides' logs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from connectors.api import (
    ConnectorError,
    Endpoint,
    PermanentError,
    TransientError,
    excerpt,
    retry_after,
    transient_status,
)

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
        TransientError: connection failures, timeouts, disconnects, truncated or undecodable
            bodies (retrying may help).
        PermanentError: a URL the client cannot use (retrying will not help).
    """
    try:
        yield
    except ConnectorError:
        raise
    except TimeoutError as exc:
        # aiohttp's ServerTimeoutError is also a TimeoutError; both mean "no answer in time".
        raise TransientError(registry, f"no answer in time ({type(exc).__name__})") from exc
    except aiohttp.InvalidURL as exc:
        raise PermanentError(registry, f"invalid registry URL ({_describe(exc)})") from exc
    except aiohttp.ClientConnectionError as exc:
        # Refused, reset, DNS, server disconnected: the request may or may not have been
        # processed (lost reply), which is why writes carry an idempotency key.
        raise TransientError(registry, f"connection failed: {_describe(exc)}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise TransientError(registry, f"truncated reply: {_describe(exc)}") from exc
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TransientError(registry, f"malformed reply: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise TransientError(registry, f"HTTP client error: {_describe(exc)}") from exc


def _describe(exc: aiohttp.ClientError) -> str:
    """An aiohttp exception for an error message, WITHOUT the request's URL: the query of a
    registry call can carry credentials (insurance's token, id_token, username and password), and
    the message is stored as a step's error and shown to clients. Only exceptions whose text is
    known to hold no URL (a host and port at most) are quoted; of the others, the type."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientResponseError):  # its str() ends with url=...
        return f"{name} (HTTP {exc.status})"
    if isinstance(exc, (aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        # "Cannot connect to host h:p ssl:… [reason]", an OS error, or what was wrong with the
        # body's framing.
        return f"{name}: {exc}"
    return name


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
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=self.endpoint.timeout,
                # Connecting to a live registry is fast; a slow connect means it is not there.
                connect=min(self.endpoint.timeout, 5.0),
            )
            self._session = aiohttp.ClientSession(
                base_url=self.endpoint.url.rstrip("/") + "/",
                timeout=timeout,
                headers={"Accept": "application/json", **self._headers},
                raise_for_status=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

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
    ) -> RestReply:
        """Send one request and decode its JSON reply (into ``type`` when given).

        ``path`` is relative to the endpoint URL (no leading slash keeps any base path).

        Raises:
            TransientError: unreachable, timed out, 5xx, 408, 425, 429, or a reply that is not the
                expected JSON.
            PermanentError: another 4xx or a 3xx not listed in ``accept``; the transport is not
                open.
        """
        if self._session is None:
            raise PermanentError(self.registry, "transport used before open() or after close()")
        sent = dict(headers or {})
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        if request_id is not None:
            sent["X-Request-Id"] = request_id
        body = None if json is None else msgspec.json.encode(json)
        if body is not None:
            sent["Content-Type"] = "application/json"
        with translate_errors(self.registry):
            # A registry answers where it is configured; a redirect is a misconfiguration (or an
            # attempt to collect the credentials a request carries) and is not followed.
            async with self._session.request(
                method,
                path.lstrip("/"),
                data=body,
                params=params,
                headers=sent,
                allow_redirects=False,
            ) as response:
                raw = await self._read_body(response)
                status = response.status
                wait_s = retry_after(response.headers.get("Retry-After"))
            if transient_status(status) or (status >= 400 and status not in accept):
                # The reply's first words, but never what this request carried: an error page
                # may echo the URL, and insurance's query holds its token and password.
                said = excerpt(raw, hide=[*(params or {}).values(), *self._headers.values()])
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
                except msgspec.DecodeError:
                    return RestReply(status, None)
            if not 200 <= status < 300:
                raise TransientError(self.registry, f"unexpected HTTP {status}")
            data = msgspec.json.decode(raw, type=type)
        return RestReply(status, data)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, however many pieces it arrives in (chunked, through a proxy, in TLS
        records), refused as soon as it grows past :data:`MAX_BODY`."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > MAX_BODY:
                raise TransientError(self.registry, f"reply larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
