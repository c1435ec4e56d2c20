"""A small keep-alive HTTP/1.1 client for registry calls: a request held in memory, a whole reply
back.

Why not aiohttp's client, which the rest of lienthong uses: in a loop of sequential SOAP calls to
the population sandbox, a call cost 182–212 µs of CPU through aiohttp's client (request and
response objects, payload registry, cookie jar, tracing hooks, stream readers) and 92–119 µs
through this one, both counting the event loop's own wake-ups; at saturation the gateway had spent
a fifth of its main thread in aiohttp's client (see docs/lookup-bench.md). This client writes each
request with one ``write`` and reads the reply with httptools (llhttp, the parser Node.js uses).
It does only what registry calls need: any method but HEAD, ``Content-Length`` or chunked replies
(or a body that ends when the server closes), pooled keep-alive connections, TLS, a deadline over
the whole exchange, a cap on the reply's size (and on its head's, counted as it arrives). No
redirects (a registry answers on one fixed URL), no cookies, no compression, no proxies.

A request is sent twice in one case only, as every mature client does (urllib3, Go's net/http,
curl): a reused keep-alive connection that the server closed as the request met it (its idle
timeout firing as the client writes: reset, EOF, broken pipe) before a byte of the reply came
back. It is sent once more, on a new connection, within the same deadline, when it is safe to
repeat (RFC 9112 §9.3.1): an idempotent method, a request carrying ``Idempotency-Key``, or one the
caller marks ``repeatable`` (a read sent as POST, a SOAP write keyed in its body). Never after a
byte of the reply, a timeout, the deadline, or a failure of a new connection (the server had
accepted that connection: the failure is its answer). :attr:`HttpClient.resent` counts them.

Errors: :class:`TimeoutError` past the deadline; :class:`OSError` (ConnectionError among them)
when a connection cannot be made or is lost before the reply is whole; :class:`BadReply` (a
ValueError) for a reply that is not HTTP/1.x, or :class:`ReplyTooLarge` past the cap; ValueError
for a request that cannot be sent (a header with a line break, HEAD). A connection that saw any
of them is closed, never reused.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["BadReply", "HttpClient", "Reply", "ReplyTooLarge"]

log = logging.getLogger("lienthong.registries")

# A server closes a keep-alive connection that stays idle past its own timeout (aiohttp's: 75 s,
# nginx: 75 s, IIS: 120 s). One idle for less than this is reused; an older one is closed rather
# than risked against a server closing it in the same instant (aiohttp's client keeps 15 s).
IDLE_S = 15.0
_MAX_IDLE = 64  # idle connections kept per client; more are closed
_MAX_HEAD = 64 * 1024  # status line and headers together
_UNSAFE = re.compile(r"[\r\n\x00]")  # in a header name or value: a second header, or a request
# Idempotent by definition (RFC 9110 §9.2.2; HEAD is refused): the same request again does no harm.
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS", "TRACE"})


class BadReply(ValueError):
    """The reply is not an HTTP/1.x message this client can read."""


class ReplyTooLarge(BadReply):
    """The reply's body is larger than the client's cap."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def charset(self) -> str | None:
        """The ``charset`` of the ``Content-Type``, if it names one."""
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None


class HttpClient:
    """Calls to URLs of one or more origins, with a pool of idle connections per origin.

    ``timeout``: seconds for one whole exchange (connecting, sending, reading the reply).
    ``max_reply``: bytes of body accepted. ``tls``: the context for ``https`` URLs (default: the
    system's trust store, host names checked). Use as ``async with`` or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_reply: int,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 100,
    ) -> None:
        self.timeout = timeout
        self.max_reply = max_reply
        self._tls = tls
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)  # as aiohttp's connector limit
        self._closed = False
        self.resent = 0  # requests sent again on a new connection (see the module's docstring)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()

    async def request(
        self,
        method: str,
        url: str | URL,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        repeatable: bool = False,
    ) -> Reply:
        """Send one request and return its whole reply (see the module's docstring).

        ``repeatable``: the caller knows the request is safe to send twice though its method is
        not idempotent (a read sent as POST, a write the server performs once under a key its
        body carries). An idempotent method, or an ``Idempotency-Key`` header, says so already.
        """
        if self._closed:
            raise RuntimeError("HttpClient used after close()")
        u = url if isinstance(url, URL) else URL(url)
        if u.scheme not in ("http", "https") or not u.host:
            raise ValueError(f"not an http(s) URL: {u.scheme}://…")
        if method == "HEAD":  # its reply announces a body it does not carry; no registry needs it
            raise ValueError("HEAD is not supported")
        if u.user is not None:  # as aiohttp: user:password@ is sent as Basic authorization
            if _has_header(headers, "authorization"):
                raise ValueError("credentials in the URL and an Authorization header")
            pair = f"{u.user}:{u.password or ''}".encode()
            headers = {**headers, "Authorization": "Basic " + base64.b64encode(pair).decode()}
        head = _head(method, u, headers, len(body))
        request = head + body if body else head
        repeatable = repeatable or method in _IDEMPOTENT or _has_header(headers, "idempotency-key")
        origin = (u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80))
        async with self._slots, asyncio.timeout(self.timeout) as deadline:
            conn = self._reuse(origin) or await self._connect(origin)
            try:
                reply = await _exchange(conn, request)
            except ConnectionError as exc:
                if not (repeatable and conn.closed_while_idle and not _spent(deadline)):
                    raise
                self._count_resend(origin, exc)
                conn = await self._connect(origin)
                reply = await _exchange(conn, request)
        if conn.reusable and not conn.lost:
            self._keep(origin, conn)
        else:
            conn.close()
        return reply

    def _count_resend(self, origin: tuple[str, str, int], exc: ConnectionError) -> None:
        self.resent += 1
        log.info(
            "registry %s://%s:%s closed a kept-alive connection as a request met it "
            "(%s, nothing of a reply read): sent again on a new connection",
            *origin,
            type(exc.__cause__).__name__ if exc.__cause__ else "closed",
        )

    def _reuse(self, origin: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            conn = pool.pop()  # the most recently used first: the least likely to be closed
            if not conn.lost and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:  # the CA store is read from files: off the loop, once
                self._tls = await asyncio.to_thread(_system_tls)
            tls = self._tls
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(self.max_reply), host, port, ssl=tls
        )
        return conn

    def _keep(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        pool = self._idle.setdefault(origin, [])
        conn.idle_since = time.monotonic()
        pool.append(conn)
        if len(pool) > _MAX_IDLE:
            pool.pop(0).close()


async def _exchange(conn: _Connection, request: bytes) -> Reply:
    try:
        return await conn.exchange(request)
    except BaseException:
        conn.close()  # cancelled, timed out or failed: its state is unknown
        raise


def _has_header(headers: Mapping[str, str], lowercase_name: str) -> bool:
    return any(name.lower() == lowercase_name for name in headers)


def _spent(deadline: asyncio.Timeout) -> bool:
    when = deadline.when()
    return when is not None and asyncio.get_running_loop().time() >= when


@functools.cache
def _system_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _head(method: str, u: URL, headers: Mapping[str, str], length: int) -> bytes:
    lines = [
        f"{method} {u.raw_path_qs} HTTP/1.1\r\nHost: {u.host_port_subcomponent}\r\n"
        "User-Agent: lienthong\r\n"  # who calls, in the registry's logs
    ]
    if length or method != "GET":
        lines.append(f"Content-Length: {length}\r\n")
    for name, value in headers.items():
        if _UNSAFE.search(name) or _UNSAFE.search(value) or ":" in name:
            raise ValueError(f"header {name!r} carries a line break, NUL or colon")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its reply parsed as it arrives."""

    def __init__(self, max_reply: int) -> None:
        self._max_reply = max_reply
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body: list[bytes] = []
        self._size = self._head_size = 0
        self._head_done, self._head_read = False, 0
        self._until_close = False  # no length given: the body ends when the server closes
        self.lost = False
        self.reusable = False
        self.idle_since = 0.0
        self._served = 0  # replies read whole on this connection
        self._heard = False  # any byte of the current exchange's reply

    # --- what the caller does --------------------------------------------------------------
    @property
    def closed_while_idle(self) -> bool:
        """Whether a failed exchange met a connection the server closed while it sat idle: one
        that had served a reply, and sent nothing of this one's (so the server, if it read the
        request at all, did not begin to answer it)."""
        return self._served > 0 and not self._heard

    async def exchange(self, request: bytes) -> Reply:
        self._heard = False
        if self.lost or self._transport is None:
            raise ConnectionResetError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._size, self._head_size = CIMultiDict(), [], 0, 0
        self._head_done, self._head_read = False, 0
        self._until_close, self.reusable = False, False
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport (uvloop's are not).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._waiter is None or self._waiter.done():
            self._fail(BadReply("the server sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadReply("the server switched protocols"))
        except httptools.HttpParserError as exc:
            # A callback's own refusal (a cap) comes wrapped in HttpParserCallbackError.
            cause = exc.__context__
            self._fail(
                cause if isinstance(cause, BadReply) else BadReply(f"not an HTTP/1.x reply: {exc}")
            )
            return
        if not self._head_done:
            # httptools holds a header until its line ends, and on_header counts it only then:
            # a line that never ends grew in memory until the deadline. Counted as it arrives
            # (the body's first bytes in the same read too: at most one read more than the cap).
            self._head_read += len(data)
            if self._head_read > _MAX_HEAD:
                self._fail(BadReply(f"reply headers larger than {_MAX_HEAD} bytes"))

    def eof_received(self) -> bool | None:
        self._end_of_stream()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_of_stream(exc)

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiter is None:
            # A second reply after the one asked for (in the same read: one later is refused
            # in data_received). Kept, the connection would give it, or a reply framed by it,
            # to the next request.
            raise BadReply("the server sent a reply nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > _MAX_HEAD:
            raise BadReply(f"reply headers larger than {_MAX_HEAD} bytes")
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._head_done = True
        status = self._parser.get_status_code()
        headers = self._headers
        self._until_close = (
            status >= 200
            and status not in (204, 304)
            and "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        )

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_reply:
            raise ReplyTooLarge(f"reply larger than the limit ({self._max_reply} bytes)")
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and the like: the reply itself follows
            self._headers, self._body, self._size, self._head_size = CIMultiDict(), [], 0, 0
            self._head_done, self._head_read = False, 0
            return
        self.reusable = self._parser.should_keep_alive() and not self._until_close
        self._finish(status)

    # --- endings ----------------------------------------------------------------------------
    def _finish(self, status: int) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            self._served += 1
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result(Reply(status, CIMultiDictProxy(self._headers), body))

    def _end_of_stream(self, exc: Exception | None = None) -> None:
        was_lost, self.lost = self.lost, True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._until_close and not was_lost and exc is None:
            self._finish(self._parser.get_status_code())  # the server's close ends the body
            return
        error = ConnectionResetError("the server closed the connection before its reply was whole")
        if exc is not None:
            error.__cause__ = exc
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.lost = True
        if self._transport is not None:
            self._transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
