"""A client's callback receiver that is down, and the callbacks queued for it: shared by the
tests of the outbox's behaviour while a receiver is down (herd, waits, parked on several
gateways). A real receiver over a real socket; the worker's clock moved by hand."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from gateway.flows.notify import CallbackHandler
from gateway.outbox import Breakers, Job, RetryPolicy, Worker, enqueue
from gateway.outbox.testing import ManualClock
from gateway.settings import Subsystem
from gateway.store import Store, Tx

CLIENT = "VN:GOV:000.00.00.H41:motcua"
# Retries without jitter, so that what is due when is the test's to say.
POLICY = RetryPolicy(max_attempts=8, base_delay=0.5, max_delay=300.0, rng=lambda: 0.0)


def code(n: int) -> str:
    return f"000.00.00.H41-261206-{n:04d}"


class Receiver:
    """A provincial system's callback endpoint: answers ``down_status`` while ``down``."""

    def __init__(self, down_status: int) -> None:
        self.down = True
        self.down_status = down_status
        self.got: list[tuple[str, int]] = []  # (dossier, version) taken, in order

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            return web.Response(status=self.down_status)
        self.got.append((body["code"], body["version"]))
        return web.Response(status=204)


@asynccontextmanager
async def serve_receiver(down_status: int) -> AsyncIterator[tuple[Receiver, str]]:
    """A receiver, down, and its callback URL."""
    got = Receiver(down_status)
    app = web.Application()
    app.router.add_post("/hook", got.hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield got, str(server.make_url("/hook"))
    finally:
        await server.close()


def callback_handler(
    store: Store, session: ClientSession, url: str, breakers: Breakers, *, max_in_flight: int
) -> CallbackHandler:
    """The gateway's callback handler, CLIENT's callbacks allowed to ``url``'s folder."""
    subsystem = Subsystem(id=CLIENT, callback_urls=(url.rsplit("/", 1)[0] + "/",))
    return CallbackHandler(
        store, lambda: session, {CLIENT: subsystem}, breakers=breakers, max_in_flight=max_in_flight
    )


class Counting:
    """Wraps a handler; counts its runs (claims) by job key."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.runs: Counter[str] = Counter()

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        self.runs[job.key] += 1
        result: Callable[[Tx], Any] = await self.inner.run(job)
        return result

    def failed(self, tx: Tx, job: Job, error: BaseException, **kw: Any) -> None:
        self.inner.failed(tx, job, error, **kw)


def queue_callbacks(url: str, now: float, *, dossiers: int, versions: int) -> Callable[[Tx], None]:
    """``dossiers`` dossiers of CLIENT calling back ``url``, each with callbacks for its
    ``versions`` versions queued in order."""

    def queue(tx: Tx) -> None:
        for n in range(dossiers):
            tx.execute(
                "dossiers.insert",
                code=code(n),
                client=CLIENT,
                procedure="1.001193",
                flow="death",
                body=b"{}",
                digest="0" * 64,
                callback_url=url,
                request_id=None,
                now="2026-12-06T08:00:00+07:00",
            )
            for version in range(1, versions + 1):
                document = {"code": code(n), "status": "in_progress", "version": version}
                enqueue(
                    tx,
                    kind="callback",
                    key=f"{code(n)}/callback/{version}",
                    payload={"code": code(n), "version": version, "document": document},
                    dossier=code(n),
                    now=now,
                )

    return queue


async def poll(worker: Worker, clock: ManualClock, seconds: float, step: float = 0.25) -> None:
    """Poll as the worker's loop does, every ``step`` s of the clock, running all that is due."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for _ in range(200):  # bounded
            if not await worker.run_once():
                break
