"""The checkpointer and a store crash that loses the last relaxed commits (lookups' audit events).

A lookup's event is committed without waiting for the sync (SQLite synchronous=NORMAL,
PostgreSQL synchronous_commit=off). If the store crashes before the sync (PostgreSQL's server,
the OS under SQLite), the log comes back shorter, and new events take the lost ones' sequence
numbers. The checkpointer may have read the lost events meanwhile: it must never store a
checkpoint that covers them. Each test simulates the crash the way it leaves the store: the rows
the relaxed commits wrote are deleted, and other events are appended through the store's API.
The tests run on SQLite and on the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from gateway.audit import AuditEvent, append
from gateway.audit.checkpoints import Checkpointer, CheckpointError, load_checkpoints
from gateway.audit.merkle import root
from gateway.audit.verify import verify_log
from gateway.store import SQLiteStore, Store, StoreUnavailable, open_store
from signing.testing import TestPKI
from signing.timestamps import request_timestamp
from tests.audit.test_checkpoints import pki, tsa_url  # noqa: F401 - fixtures

POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)

Lose = Callable[[int], None]  # delete every entry from this sequence number on


def _postgres_admin(sql: str) -> None:
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.encode())
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL}: {str(exc).strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the postgres tests must run)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Lose]]:
    """A store with 25 events, and how to make it lose its entries from a sequence number on."""
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        def lose(first: int) -> None:
            conn = sqlite3.connect(path)  # another connection: the writer's memo goes stale
            with conn:
                conn.execute("DELETE FROM audit_events WHERE seq >= ?", (first,))
            conn.close()

        async with SQLiteStore(path) as store:
            await _add(store, 25, "lookup")
            yield store, lose
        return
    schema = f"t_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options={quote(f'-c search_path={schema}')}"
    try:

        def lose(first: int) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM audit_events WHERE seq >= %s", (first,))

        async with open_store(url) as store:
            await _add(store, 25, "lookup")
            yield store, lose
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


async def _add(store: Store, n: int, action: str) -> None:
    for i in range(n):
        await store.transact(
            lambda tx, i=i: append(tx, AuditEvent(action=action, detail=f"#{i}")),
            durable=False,
        )


async def _crash(store: Store, lose: Lose, *, keep: int, new: int) -> None:
    """The store came back with its first ``keep`` entries; then ``new`` other events came."""
    lose(keep)
    await _add(store, new, "lookup.after-crash")


async def _leaves(store: Store) -> list[bytes]:
    rows = await store.read(lambda tx: tx.all("audit.leaves", start=0, stop=10**9))
    return [bytes(r["leaf_hash"]) for r in rows]


async def _assert_covered_and_verified(store: Store, pki: TestPKI, size: int) -> None:
    leaves = await _leaves(store)
    assert len(leaves) == size
    [cp] = await load_checkpoints(store)
    assert (cp.size, cp.root) == (size, root(leaves))
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.describe()
    assert (report.entries, report.checkpoints, report.covered) == (size, 1, size)


def _stamper(tsa_url: str, before: Callable[[], Any] | None = None) -> Any:
    """A timestamper that runs ``before`` (a coroutine function) first, once; or that fails
    while its ``down`` list holds True."""
    state = {"before": before}
    down = [False]

    async def stamp(digest: bytes) -> bytes:
        if down[0]:
            raise ConnectionRefusedError("TSA down")
        run, state["before"] = state["before"], None
        if run is not None:
            await run()
        return await request_timestamp(tsa_url, digest)

    stamp.down = down  # type: ignore[attr-defined]
    return stamp


@pytest.mark.parametrize("new", [0, 5, 8])
async def test_entries_lost_while_a_checkpoint_is_timestamped_are_not_signed(
    backend: tuple[Store, Lose], pki: TestPKI, tsa_url: str, new: int
) -> None:
    """The checkpointer has read the 25 entries and waits for the TSA when the store crashes and
    comes back with 20: the log is then shorter (new=0), as long with other entries (5), or
    longer (8). The checkpoint of the 25 it read is refused; the next covers the log as it is.
    Before, the checkpoint of the lost entries was stored, and `audit verify` failed for ever."""
    store, lose = backend
    stamper = _stamper(tsa_url, lambda: _crash(store, lose, keep=20, new=new))
    cpr = Checkpointer(store, pki.key("gateway"), timestamper=stamper)
    with pytest.raises(CheckpointError, match="no longer holds the entries") as refused:
        await cpr.checkpoint_now()
    assert refused.value.size == 25
    assert await load_checkpoints(store) == []
    cp = await cpr.checkpoint_now()
    assert cp is not None and cp.size == 20 + new
    await _assert_covered_and_verified(store, pki, 20 + new)


async def test_entries_lost_between_two_cycles_are_not_signed(
    backend: tuple[Store, Lose], pki: TestPKI, tsa_url: str
) -> None:
    """A cycle read the 25 entries and failed (the TSA); the store then lost 20..24 and took 8
    others (20..27). The next cycle reads only what is past its tree, 25..27: the entry at its
    last sequence number (27) is the one it read, and only the chain hash, which follows from
    every entry before it, says that the tree holds lost entries. Refused, then signed anew."""
    store, lose = backend
    stamper = _stamper(tsa_url)
    cpr = Checkpointer(store, pki.key("gateway"), timestamper=stamper)
    stamper.down[0] = True
    with pytest.raises(CheckpointError, match="TSA down"):
        await cpr.checkpoint_now()
    await _crash(store, lose, keep=20, new=8)
    stamper.down[0] = False
    with pytest.raises(CheckpointError, match="no longer holds the entries"):
        await cpr.checkpoint_now()
    assert await load_checkpoints(store) == []
    cp = await cpr.checkpoint_now()
    assert cp is not None and cp.size == 28
    await _assert_covered_and_verified(store, pki, 28)


@pytest.mark.parametrize("failing", ["insert", "read"])
async def test_after_a_store_failure_the_tree_is_read_again(
    backend: tuple[Store, Lose], pki: TestPKI, tsa_url: str, failing: str
) -> None:
    """A store failure in a cycle (its insert, or its read of the log) may be the crash that lost
    entries the tree holds: the next cycle reads the tree again from the store, and signs the
    log as it is at once (no refused checkpoint first)."""
    store, lose = backend
    stamper = _stamper(tsa_url)
    cpr = Checkpointer(store, pki.key("gateway"), timestamper=stamper)
    transact, read = store.transact, store.read
    if failing == "insert":

        async def crashing_transact(work: Any, **kwargs: Any) -> Any:
            store.transact = transact  # type: ignore[method-assign]
            await _crash(store, lose, keep=20, new=5)
            raise StoreUnavailable("commit failed: server closed the connection unexpectedly")

        store.transact = crashing_transact  # type: ignore[method-assign]
        with pytest.raises(CheckpointError, match="cannot store checkpoint"):
            await cpr.checkpoint_now()
    else:
        stamper.down[0] = True
        with pytest.raises(CheckpointError, match="TSA down"):
            await cpr.checkpoint_now()
        stamper.down[0] = False
        await _crash(store, lose, keep=20, new=5)

        async def failing_read(work: Any) -> Any:
            store.read = read  # type: ignore[method-assign]
            raise StoreUnavailable("no PostgreSQL connection: the server is starting up")

        store.read = failing_read  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable):
            await cpr.checkpoint_now()
    assert (store.transact, store.read) == (transact, read)
    cp = await cpr.checkpoint_now()
    assert cp is not None and cp.size == 25
    await _assert_covered_and_verified(store, pki, 25)


@pytest.mark.parametrize("new", [0, 3])
async def test_entries_lost_after_a_checkpoint_this_gateway_signed_are_not_signed(
    backend: tuple[Store, Lose], pki: TestPKI, tsa_url: str, new: int
) -> None:
    """The crash after a checkpoint: it stays (stored by a durable commit, which synced the
    entries it covers), the entries after it are lost. The log is read again against the
    checkpoint the checkpointer holds as well as the stored one (the same here), and the next
    checkpoint covers the log as it is — no false alarm of a deleted checkpoint."""
    store, lose = backend
    stamper = _stamper(tsa_url)
    cpr = Checkpointer(store, pki.key("gateway"), timestamper=stamper)
    first = await cpr.checkpoint_now()
    assert first is not None and first.size == 25
    await _add(store, 5, "lookup")
    stamper.down[0] = True
    with pytest.raises(CheckpointError, match="TSA down"):
        await cpr.checkpoint_now()  # read 25..29
    stamper.down[0] = False
    await _crash(store, lose, keep=25, new=new)
    with pytest.raises(CheckpointError, match="no longer holds the entries"):
        await cpr.checkpoint_now()
    cp = await cpr.checkpoint_now()
    if new == 0:
        assert cp is None  # nothing new past checkpoint 25
    else:
        assert cp is not None and cp.size == 25 + new
    assert [c.size for c in await load_checkpoints(store)] == [25] + ([25 + new] if new else [])
    await _add(store, 1, "lookup")
    later = await cpr.checkpoint_now()  # and it goes on signing
    assert later is not None and later.size == 26 + new
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.describe()
    assert report.entries == 26 + new
