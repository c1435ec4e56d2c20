"""Callbacks parked on a receiver's circuit, with several gateways on one store (both backends).

Each gateway has its own breakers; the parked jobs are in the store. A gateway that parked a
receiver's callbacks may stop, or keep its circuit open while another's is closed: the receiver
back still gets every callback, in each dossier's order, within a few reset periods, and none is
lost. A real receiver over a real socket; times moved by hand (the breakers' and workers' clock,
and on PostgreSQL the jobs' times, which are the server's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import psycopg
import pytest
from aiohttp import web

from gateway.metrics import Metrics
from gateway.outbox import Breakers, Worker, endpoint_of, enqueue, list_jobs
from gateway.outbox.testing import ManualClock
from gateway.store import PostgresStore, Store, Tx
from tests.outbox.callbacks import (
    POLICY,
    Receiver,
    callback_handler,
    code,
    queue_callbacks,
    serve_receiver,
)

StoreFactory = Callable[[], Awaitable[Store]]  # the conftest's new_store

DOSSIERS = 20
VERSIONS = 3
RESET = 10.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver(down_status=503) as served:
        yield served


class Gateway:
    """One gateway instance: its own store connection, breakers, callback handler and worker."""

    def __init__(
        self, store: Store, url: str, session: aiohttp.ClientSession, clock: ManualClock
    ) -> None:
        self.breakers = Breakers(failure_threshold=5, reset_after=RESET, clock=clock)
        handler = callback_handler(store, session, url, self.breakers, max_in_flight=4)
        self.circuit = self.breakers.get(f"callback {endpoint_of(url)}")
        self.metrics = Metrics()
        self.worker = Worker(
            store, {"callback": handler}, policy=POLICY, clock=clock, metrics=self.metrics
        )

    def claims(self) -> float:
        """Its callbacks' attempts and waits: one each time it claimed one."""
        m = self.metrics
        return m.waits.labels(kind="callback")._value.get() + sum(
            m.attempts.labels(kind="callback", outcome=o)._value.get()
            for o in ("delivered", "superseded", "retry", "dead", "discarded")
        )

    async def poll(self) -> None:
        for _ in range(200):  # bounded
            if not await self.worker.run_once():
                return


class Time:
    """Moves the breakers' and workers' clock and, on PostgreSQL, the jobs' times (the server's,
    which a test cannot move: the jobs' times move back instead)."""

    def __init__(self, store: Store, url: str) -> None:
        self.clock = ManualClock()
        self.pg = isinstance(store, PostgresStore)
        self.url = url

    def passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if self.pg:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE outbox_jobs SET run_after = run_after - %(s)s,"
                    " lease_until = lease_until - %(s)s",
                    {"s": seconds},
                )


async def states(store: Store) -> Counter[str]:
    jobs = await store.read(lambda tx: list_jobs(tx, limit=1000))
    return Counter(j.state for j in jobs)


def in_order(got: list[tuple[str, int]]) -> None:
    assert len(got) == DOSSIERS * VERSIONS  # each once
    for n in range(DOSSIERS):
        assert [v for c, v in got if c == code(n)] == list(range(1, VERSIONS + 1))


async def test_callbacks_a_stopped_gateway_parked_go_out_through_another(
    new_store: StoreFactory, store_url: str, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    a, b = await new_store(), await new_store()
    time = Time(a, store_url)
    async with aiohttp.ClientSession() as session:
        first = Gateway(a, url, session, time.clock)
        await a.transact(queue_callbacks(url, time.clock(), dossiers=DOSSIERS, versions=VERSIONS))
        for _ in range(8):  # the receiver down: A's circuit opens, its callbacks are parked
            time.passes(0.25)
            await first.poll()
        assert first.circuit.state == "open"
        parked = await a.read(lambda tx: tx.all("outbox.parked_endpoints"))
        assert parked == [{"endpoint": first.circuit.name}]
        assert await states(a) == {"pending": DOSSIERS * VERSIONS}

        # A stops for good. B never called the receiver (its circuit is closed); it comes back.
        got.down = False
        second = Gateway(b, url, session, time.clock)
        for _ in range(4 * 4):  # a second of polls
            time.passes(0.25)
            await second.poll()
        assert await states(b) == {"done": DOSSIERS * VERSIONS}
    in_order(got.got)
    assert await b.read(lambda tx: tx.all("outbox.parked_endpoints")) == []


async def test_two_gateways_with_their_own_circuits_deliver_everything_in_order(
    new_store: StoreFactory, store_url: str, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    a, b = await new_store(), await new_store()
    time = Time(a, store_url)
    async with aiohttp.ClientSession() as session:
        gateways = [Gateway(a, url, session, time.clock), Gateway(b, url, session, time.clock)]
        await a.transact(queue_callbacks(url, time.clock(), dossiers=DOSSIERS, versions=VERSIONS))
        for _ in range(round(3 * RESET / 0.25)):  # down for three resets
            time.passes(0.25)
            for gateway in gateways:
                await gateway.poll()
        assert [g.circuit.state for g in gateways] != ["closed", "closed"]
        before = sum(g.claims() for g in gateways)
        for _ in range(round(5 * RESET / 0.25)):  # and five more, counted
            time.passes(0.25)
            for gateway in gateways:
                await gateway.poll()
        # Each gateway's trial and the failed trial before it coming back: not the 60 each time
        assert sum(g.claims() for g in gateways) - before <= 5 * 2 * 3
        assert await states(a) == {"pending": DOSSIERS * VERSIONS}
        assert got.got == []

        got.down = False
        for _ in range(round(3 * RESET / 0.25)):  # back: everything within three resets
            time.passes(0.25)
            for gateway in gateways:
                await gateway.poll()
            if await states(a) == {"done": DOSSIERS * VERSIONS}:
                break
        assert await states(a) == {"done": DOSSIERS * VERSIONS}
    in_order(got.got)


# --- Parked jobs that finish without calling their endpoint pass their turn on ------------------
#
# Found by probing three gateways on one PostgreSQL store: the national portal down while 60
# dossiers moved on left ~300 portal syncs parked, most of them older versions of a dossier's sync
# that a newer one supersedes. When the portal came back, each woken older sync was done at once,
# unsent ("superseded"), so nothing answered and nothing woke the next: the backlog went out at the
# circuit's try, one job per reset period per gateway (6 a minute for one gateway with the default
# 10 s), about an hour for those 300, and every progress record waited behind them.

SYNCS = 20  # dossiers, each with a sync parked while the portal was down and two newer ones


def sync_snapshot(n: int, version: int) -> dict[str, object]:
    return {
        "code": code(n),
        "procedure": "1.001193",
        "applicant": {"full_name": "Nguyễn Văn An", "personal_id": "040090001234"},
        "status": "in_progress" if version < 3 else "completed",
        "received_at": "2026-12-07T08:00:00+07:00",
        "at": "2026-12-07T08:00:05+07:00",
        "version": version,
    }


def queue_syncs(version: int, now: float) -> Callable[[Tx], None]:
    def work(tx: Tx) -> None:
        for n in range(SYNCS):
            enqueue(
                tx,
                kind="portal.sync",
                key=f"{code(n)}/portal/{version}",
                payload=sync_snapshot(n, version),
                dossier=code(n),
                now=now,
            )

    return work


@pytest.fixture
async def portal() -> AsyncIterator[tuple[web.Application, str]]:
    """The portal sandbox over a real socket, down (503 to every call) until told otherwise."""
    from connectors.faults import FaultPlan
    from connectors.portal.sandbox import create_app
    from connectors.sandboxes import serve_app

    app = create_app(faults=FaultPlan(error_rate=1.0))
    async with serve_app(app) as url:
        yield app, url


async def test_superseded_syncs_parked_while_the_portal_was_down_do_not_hold_the_rest_back(
    new_store: StoreFactory, store_url: str, portal: tuple[web.Application, str]
) -> None:
    from connectors.faults import FAULTS_KEY, FaultPlan
    from connectors.portal.client import PortalConnector
    from connectors.portal.sandbox import endpoint
    from connectors.sandboxes import LEDGER_KEY
    from gateway.flows.notify import PortalSyncHandler

    app, url = portal
    a, b = await new_store(), await new_store()
    time = Time(a, store_url)
    connector = PortalConnector(endpoint(url))
    await connector.open()
    try:
        gateways, circuits = [], []
        for store in (a, b):
            breakers = Breakers(failure_threshold=5, reset_after=RESET, clock=time.clock)
            handler = PortalSyncHandler(connector, store, breakers)
            gateways.append(
                Worker(store, {"portal.sync": handler}, policy=POLICY, clock=time.clock)
            )
            circuits.append(breakers.get("portal"))

        async def poll_for(seconds: float, *only: Worker) -> None:
            for _ in range(round(seconds / 0.25)):
                time.passes(0.25)
                for worker in only or gateways:
                    for _ in range(200):  # bounded
                        if not await worker.run_once():
                            break

        # The portal down: A's circuit opens, the first syncs are parked on it. The dossiers
        # move on meanwhile, and B takes their newer syncs: the newest of each is parked (B's
        # circuit opens too), the one between is done unsent. So each gateway has parked jobs.
        await a.transact(queue_syncs(1, time.clock()))
        await poll_for(2.0, gateways[0])
        await a.transact(queue_syncs(2, time.clock()))
        await a.transact(queue_syncs(3, time.clock()))
        await poll_for(2.0, gateways[1])
        assert [c.state for c in circuits] == ["open", "open"]
        parked = await a.read(lambda tx: tx.all("outbox.parked_endpoints"))
        assert parked == [{"endpoint": "portal"}]
        waiting = await states(a)
        assert waiting["pending"] >= 2 * SYNCS - 4, waiting  # a try or two of the first ones

        app[FAULTS_KEY].set_plan(FaultPlan())  # back
        for _ in range(round(3 * RESET / 0.25)):  # everything within three resets
            await poll_for(0.25)
            if await states(a) == {"done": 3 * SYNCS}:
                break
        assert await states(a) == {"done": 3 * SYNCS}
    finally:
        await connector.close()
    assert await a.read(lambda tx: tx.all("outbox.parked_endpoints")) == []
    # The portal got each dossier's newest sync, once; the older ones were superseded, unsent.
    assert app[LEDGER_KEY].writes == {"dossier.sync": SYNCS}
