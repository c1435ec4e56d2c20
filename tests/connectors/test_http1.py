"""The registry HTTP/1.1 client over real sockets: what it reads, what it reuses, how it fails.

Each server here is a plain asyncio server that writes exactly the bytes a test scripts, so the
replies a real server would rarely send (chunked, close-delimited, 100 Continue, cut short,
garbage) are sent as such.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop

from connectors import http1
from connectors.http1 import BadReply, HttpClient, ReplyTooLarge
from signing.testing import self_signed

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello"

# What a script gets for each request: its head and body; what it returns: the bytes to answer
# with, or None to close the connection without answering.
Script = Callable[[bytes, bytes], bytes | None]


class Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.close_after = False  # close each connection after its first answer
        self.reset = False  # the next close is a reset (RST), not a FIN
        self.requests: list[tuple[bytes, bytes]] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                answer = self.script(head, body)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            if self.reset:
                self.reset = False
                linger = struct.pack("ii", 1, 0)  # on, 0 s: the close sends RST at once
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, linger
                )
            writer.close()


@asynccontextmanager
async def serving(
    script: Script, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Server]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, host, 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    server.url = f"{'https' if tls else 'http'}://{shown}:{port}/soap?x=1"
    async with listener:
        yield server


def always(answer: bytes | None) -> Script:
    return lambda head, body: answer


async def test_a_reply_is_read_whole_and_its_connection_kept_for_the_next_request() -> None:
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=1000) as client:
        for _ in range(3):
            reply = await client.request("POST", server.url, {"SOAPAction": '""'}, b"<x/>")
            assert (reply.status, reply.body) == (200, b"hello")
            assert reply.headers["content-type"] == "text/xml; charset=utf-8"
            assert reply.charset == "utf-8"
    assert server.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /soap?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nUser-Agent: lienthong\r\n" in head
    assert b"\r\nContent-Length: 4\r\n" in head and b'\r\nSOAPAction: ""\r\n' in head
    assert body == b"<x/>"


def test_the_client_works_on_uvloop_too() -> None:
    """uvloop, which aiohttp deployments often run on, hands a protocol transports that are not
    asyncio.Transport instances: the connection took none, and every registry call failed."""

    async def exchange() -> None:
        async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as c:
            for _ in range(2):  # a new connection, then the same one again
                assert (await c.request("GET", server.url, {})).body == b"hello"
            assert server.connections == 1

    uvloop.run(exchange())


async def test_an_ipv6_registry_is_reached_and_named_in_brackets() -> None:
    async with serving(always(OK), host="::1") as server, HttpClient(timeout=5, max_reply=100) as c:
        assert (await c.request("GET", server.url, {})).body == b"hello"
    (head, _), *_ = server.requests
    assert b"\r\nHost: [::1]:" in head


@pytest.mark.parametrize(
    ("answer", "close_after", "body", "connections"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            False,
            b"hello world",
            1,  # joined, and the connection kept
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            True,
            b"until the end",
            2,  # ends when the server closes: not reused
            id="no-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            False,
            b"ok",
            2,  # the server said so: a new connection next time
            id="connection-close",
        ),
    ],
)
async def test_how_a_reply_ends_decides_whether_its_connection_is_reused(
    answer: bytes, close_after: bool, body: bytes, connections: int
) -> None:
    async with serving(always(answer)) as server, HttpClient(timeout=5, max_reply=100) as client:
        server.close_after = close_after
        for _ in range(2):
            assert (await client.request("GET", server.url, {})).body == body
    assert server.connections == connections


async def test_100_continue_before_the_reply_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    async with serving(always(answer)) as server, HttpClient(timeout=5, max_reply=100) as client:
        reply = await client.request("POST", server.url, {}, b"x")
    assert (reply.status, reply.body) == (200, b"hello")


async def test_a_reply_over_the_cap_is_refused_and_its_connection_dropped() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    async with serving(always(big)) as server, HttpClient(timeout=5, max_reply=1000) as client:
        with pytest.raises(ReplyTooLarge, match="larger than the limit"):
            await client.request("GET", server.url, {})
        server.script = always(OK)
        assert (await client.request("GET", server.url, {})).body == b"hello"
    assert server.connections == 2


async def test_a_connection_cut_mid_reply_is_a_connection_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    async with serving(always(cut)) as server, HttpClient(timeout=5, max_reply=1000) as client:
        server.close_after = True
        with pytest.raises(ConnectionError, match="before its reply was whole"):
            await client.request("GET", server.url, {})


async def test_no_answer_at_all_is_a_connection_error() -> None:
    async with serving(always(None)) as server, HttpClient(timeout=5, max_reply=100) as client:
        with pytest.raises(ConnectionError):
            await client.request("POST", server.url, {}, b"x")


async def test_a_reply_that_is_not_http_is_a_bad_reply() -> None:
    async with (
        serving(always(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server,
        HttpClient(timeout=5, max_reply=100) as client,
    ):
        with pytest.raises(BadReply, match=r"not an HTTP/1\.x reply"):
            await client.request("GET", server.url, {})


async def test_headers_past_their_cap_are_a_bad_reply() -> None:
    flood = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"
    async with serving(always(flood)) as server, HttpClient(timeout=5, max_reply=100) as client:
        with pytest.raises(BadReply, match="headers larger"):
            await client.request("GET", server.url, {})


async def test_a_deadline_passed_is_a_timeout_and_the_connection_is_not_reused() -> None:
    answers = iter([b"", OK])  # the first request: no answer, and no close

    async with (
        serving(lambda head, body: next(answers)) as server,
        HttpClient(timeout=0.3, max_reply=100) as client,
    ):
        with pytest.raises(TimeoutError):
            await client.request("GET", server.url, {})
        assert (await client.request("GET", server.url, {})).body == b"hello"
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as client:
        server.close_after = True  # after answering, while the client holds the connection idle
        assert (await client.request("GET", server.url, {})).body == b"hello"
        (idle,) = client._idle[("http", "127.0.0.1", int(server.url.split(":")[2].split("/")[0]))]
        for _ in range(200):  # until the server's close reaches it
            if idle.lost:
                break
            await asyncio.sleep(0.01)
        assert idle.lost
        assert (await client.request("GET", server.url, {})).body == b"hello"
    assert server.connections == 2


async def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "IDLE_S", 0.0)
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as client:
        await client.request("GET", server.url, {})
        await client.request("GET", server.url, {})
    assert server.connections == 2


async def test_header_injection_and_head_are_refused_before_anything_is_sent() -> None:
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as client:
        for headers in ({"X-A": "1\r\nX-Injected: 2"}, {"X-A\nB": "1"}, {"X-A": "nul\x00"}):
            with pytest.raises(ValueError, match="line break"):
                await client.request("POST", server.url, headers, b"x")
        with pytest.raises(ValueError, match="HEAD"):
            await client.request("HEAD", server.url, {})
        with pytest.raises(ValueError, match="not an http"):
            await client.request("GET", "ftp://127.0.0.1/x", {})
    assert server.requests == []


async def test_credentials_in_the_url_go_as_basic_authorization_never_beside_another() -> None:
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as client:
        url = server.url.replace("http://", "http://user:p%40ss@")
        await client.request("GET", url, {})
        with pytest.raises(ValueError, match="Authorization"):
            await client.request("GET", url, {"authorization": "Bearer x"})
    (head, _), *rest = server.requests
    assert rest == []
    expected = base64.b64encode(b"user:p@ss")
    assert b"\r\nAuthorization: Basic " + expected + b"\r\n" in head
    assert b"user" not in head.split(b"\r\n")[0]  # not in the request line


async def test_a_closed_client_refuses_work() -> None:
    client = HttpClient(timeout=5, max_reply=100)
    await client.close()
    with pytest.raises(RuntimeError):
        await client.request("GET", "http://127.0.0.1:9/", {})


async def test_a_refused_connection_is_an_oserror() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with HttpClient(timeout=5, max_reply=100) as client:
        with pytest.raises(OSError):
            await client.request("GET", f"http://127.0.0.1:{port}/", {})


async def test_https_checks_the_server_certificate(tmp_path: Path) -> None:
    cert, key = await asyncio.to_thread(self_signed, tmp_path, "registry", ip="127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with serving(always(OK), tls=server_tls) as server:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with HttpClient(timeout=5, max_reply=100, tls=trusting) as client:
            assert (await client.request("GET", server.url, {})).body == b"hello"
            assert (await client.request("GET", server.url, {})).body == b"hello"
        assert server.connections == 1
        async with HttpClient(timeout=5, max_reply=100) as client:  # the system's anchors
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.request("GET", server.url, {})


async def test_a_header_that_never_ends_is_refused_at_the_cap_not_buffered_to_the_deadline() -> (
    None
):
    # One header line of megabytes, no line end: httptools keeps a header whole until it ends, so
    # counting whole headers let the reply grow in memory until the deadline (the 60 s below).
    endless = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 4_000_000
    answers = iter([endless, OK])
    async with (
        serving(lambda head, body: next(answers)) as server,
        HttpClient(timeout=60, max_reply=100) as client,
    ):
        with pytest.raises(BadReply, match="headers larger"):
            await client.request("GET", server.url, {})
        assert (await client.request("GET", server.url, {})).body == b"hello"
    assert server.connections == 2


@pytest.mark.parametrize(
    "surplus",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 45\r\n\r\n",  # a reply's start, not its end
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nPHANTOM",  # a whole reply nobody asked for
    ],
)
async def test_a_reply_followed_by_another_drops_its_connection(surplus: bytes) -> None:
    # Sent with the first reply, in one write: a second reply nobody asked for. Kept, the
    # connection would give the next request that reply, or the next reply's bytes as its body.
    answers = iter([OK + surplus, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nCORRECT"])
    async with (
        serving(lambda head, body: next(answers, OK)) as server,
        HttpClient(timeout=5, max_reply=100) as client,
    ):
        assert (await client.request("GET", server.url, {})).body == b"hello"
        second = await client.request("GET", server.url, {})
    assert (second.status, second.body) == (200, b"CORRECT")
    assert server.connections == 2


# --- a reused connection the server closed while it was idle ------------------------------------
# The race every keep-alive client meets: the server's idle timeout closes a connection just as
# the client sends the next request on it. Nothing of a reply came back, and the connection had
# served one already: the request is sent once more, on a new connection, when it is safe to
# repeat (a read, or a write the server performs once under its idempotency key).

PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"


def scripted(server_of: Callable[[], Server], *answers: bytes | None) -> Script:
    """Answers in turn (None: close without answering); PARTIAL also closes after it."""
    queue = iter(answers)

    def answer(head: bytes, body: bytes) -> bytes | None:
        reply = next(queue, OK)
        server_of().close_after = reply == PARTIAL
        return reply

    return answer


def reset_on_second_request(server_of: Callable[[], Server]) -> Script:
    """The first request of each connection answered; the second read, then the connection reset
    (RST, SO_LINGER 0), as a server whose idle timeout fired as it arrived."""
    count = 0

    def answer(head: bytes, body: bytes) -> bytes | None:
        nonlocal count
        count += 1
        if count == 2:
            server_of().reset = True
            return None
        return OK

    return answer


def port_of(server: Server) -> int:
    return int(server.url.split(":")[2].split("/")[0])


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_reused_connection_dropped_as_the_request_arrived_is_resent_once(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "lienthong.registries")
    holder: list[Server] = []
    script = (
        scripted(lambda: holder[0], OK, None, OK)
        if how == "close"
        else reset_on_second_request(lambda: holder[0])
    )
    async with serving(script) as server, HttpClient(timeout=5, max_reply=100) as client:
        holder.append(server)
        assert (await client.request("GET", server.url, {})).body == b"hello"
        assert (await client.request("GET", server.url, {"X-Q": "2"})).body == b"hello"
        assert client.resent == 1
        # The new connection is kept for the next request as any other.
        assert (await client.request("GET", server.url, {})).body == b"hello"
    assert server.connections == 2
    assert len(server.requests) == 4
    assert server.requests[1] == server.requests[2]  # the same request, byte for byte
    (record,) = caplog.records
    assert "closed a kept-alive connection as a request met it" in record.getMessage()
    assert ("ConnectionResetError" if how == "reset" else "(closed,") in record.getMessage()


async def test_a_reused_connection_closed_before_the_request_was_written_is_resent_once() -> None:
    # The server answers and closes at once; the client sends its next request before its loop
    # has read the close (the reply's bytes and the FIN are two reads): the request meets a
    # closed connection, which the server never read.
    async with serving(always(OK)) as server, HttpClient(timeout=5, max_reply=100) as client:
        server.close_after = True
        assert (await client.request("GET", server.url, {})).body == b"hello"
        assert (await client.request("GET", server.url, {})).body == b"hello"
        assert client.resent == 1
    assert server.connections == 2
    assert len(server.requests) == 2  # the first connection never read the second request


def test_the_resend_works_on_uvloop_too() -> None:
    async def exchange() -> None:
        holder: list[Server] = []
        async with (
            serving(scripted(lambda: holder[0], OK, None, OK)) as server,
            HttpClient(timeout=5, max_reply=100) as client,
        ):
            holder.append(server)
            for _ in range(2):
                assert (await client.request("GET", server.url, {})).body == b"hello"
            assert client.resent == 1
        assert len(server.requests) == 3

    uvloop.run(exchange())


@pytest.mark.parametrize(
    ("headers", "repeatable"),
    [
        pytest.param({"Idempotency-Key": "job-1"}, False, id="idempotency-key"),
        pytest.param({}, True, id="the-caller-says-so"),
    ],
)
async def test_a_post_safe_to_repeat_is_resent(headers: dict[str, str], repeatable: bool) -> None:
    holder: list[Server] = []
    async with (
        serving(scripted(lambda: holder[0], OK, None, OK)) as server,
        HttpClient(timeout=5, max_reply=100) as client,
    ):
        holder.append(server)
        await client.request("POST", server.url, headers, b"<a/>", repeatable=repeatable)
        reply = await client.request("POST", server.url, headers, b"<b/>", repeatable=repeatable)
    assert reply.body == b"hello"
    assert [body for _, body in server.requests] == [b"<a/>", b"<b/>", b"<b/>"]


async def test_a_post_not_known_safe_to_repeat_is_not_resent() -> None:
    holder: list[Server] = []
    async with (
        serving(scripted(lambda: holder[0], OK, None, OK)) as server,
        HttpClient(timeout=5, max_reply=100) as client,
    ):
        holder.append(server)
        await client.request("POST", server.url, {}, b"<a/>")
        with pytest.raises(ConnectionError, match="before its reply was whole"):
            await client.request("POST", server.url, {}, b"<b/>")
        assert client.resent == 0
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("answers", "deadline_s", "error", "requests"),
    [
        # A new connection that fails: the server saw the request, and said nothing.
        pytest.param((None,), 5, ConnectionError, 1, id="fresh-connection"),
        # The reply began: the server has the request.
        pytest.param((OK, PARTIAL), 5, ConnectionError, 2, id="partial-reply"),
        # No answer in time: the server may be working on it.
        pytest.param((OK, b""), 0.3, TimeoutError, 2, id="timeout"),
        # Resent once, and the resend failed too (on its new connection): not a third time.
        pytest.param((OK, None, None), 5, ConnectionError, 3, id="resend-failed"),
        # The resend has no deadline of its own: the caller's, spent, ends it.
        pytest.param((OK, None, b""), 0.3, TimeoutError, 3, id="resend-past-the-deadline"),
    ],
)
async def test_what_is_not_resent(
    answers: tuple[bytes | None, ...], deadline_s: float, error: type[Exception], requests: int
) -> None:
    holder: list[Server] = []
    async with (
        serving(scripted(lambda: holder[0], *answers)) as server,
        HttpClient(timeout=deadline_s, max_reply=1000) as client,
    ):
        holder.append(server)
        with pytest.raises(error):
            for _ in answers:
                await client.request("GET", server.url, {})
        assert len(server.requests) == requests
        # Never kept: the next request takes a connection of its own, and works.
        assert (await client.request("GET", server.url, {})).body == b"hello"
