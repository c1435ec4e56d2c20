"""A running checkpointer and a log rewritten behind its back, its newer checkpoints deleted.

Someone with write access to the store (a DBA, an attacker on the database host) deletes the
newest checkpoint rows and rewrites entries they covered, recomputing every leaf and chain hash
from there on, so that the log is consistent with the older checkpoints left. The gateway's next
checkpoint finds the log no longer holding what it read, which is also what a crash of the store
looks like (tests/audit/test_checkpoint_crash.py). Before, it then read the log again against the
latest checkpoint *stored* (an older one, or none), found the forgery consistent with it, and
signed and timestamped a checkpoint over it: `audit verify` then said the log was intact. Entries a
checkpoint this gateway signed (or loaded) covers cannot be lost by a crash: they were synced
before it was stored. So the checkpointer now holds the log to that checkpoint, and stops.

The tests run on SQLite and on the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gateway.audit.checkpoints import Checkpointer, CheckpointError, load_checkpoints
from gateway.audit.events import GENESIS
from gateway.store import SQLiteStore, Store, open_store
from signing.testing import TestPKI
from tests.audit.test_checkpoint_crash import POSTGRES_URL, _add, _postgres_admin
from tests.audit.test_checkpoints import pki, tsa_url  # noqa: F401 - fixtures

# Run SQL on the store behind the gateway's back (``%s`` placeholders); return the rows read.
Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Sql]]:
    """A store with 25 events, and a connection of the forger's own to it."""
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        def sql(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    return conn.execute(statement.replace("%s", "?"), params).fetchall()
            finally:
                conn.close()

        async with SQLiteStore(path) as store:
            await _add(store, 25, "lookup")
            yield store, sql
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options={quote(f'-c search_path={schema}')}"
    try:

        def sql(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            with psycopg.connect(url, autocommit=True) as conn:
                cursor = conn.execute(statement.encode(), params)
                return cursor.fetchall() if cursor.description else []

        async with open_store(url) as store:
            await _add(store, 25, "lookup")
            yield store, sql
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


def _forge(sql: Sql, *, delete_from: int, rewrite: int) -> None:
    """Delete every checkpoint of ``delete_from`` entries or more, and rewrite entry ``rewrite``
    (its detail changed), every leaf and chain hash from it on recomputed: the log then follows from
    the checkpoints left, hash for hash."""
    sql("DELETE FROM audit_checkpoints WHERE size >= %s", delete_from)
    if rewrite == 0:
        prev = GENESIS
    else:
        ((chain,),) = sql("SELECT chain_hash FROM audit_events WHERE seq = %s", rewrite - 1)
        prev = bytes(chain)
    rows = sql("SELECT seq, entry FROM audit_events WHERE seq >= %s ORDER BY seq", rewrite)
    for seq, stored in rows:
        entry = bytes(stored)
        if seq == rewrite:
            entry = entry.replace(b'"detail":"#', b'"detail":"FORGED #')
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        prev = hashlib.sha256(prev + leaf).digest()
        sql(
            "UPDATE audit_events SET entry = %s, leaf_hash = %s, chain_hash = %s WHERE seq = %s",
            entry,
            leaf,
            prev,
            seq,
        )


async def _sizes(store: Store) -> list[int]:
    return [c.size for c in await load_checkpoints(store)]


async def _signed(cpr: Checkpointer, size: int) -> None:
    cp = await cpr.checkpoint_now()
    assert cp is not None and cp.size == size


@pytest.mark.parametrize(
    ("deleted", "rewritten", "left"),
    [
        (30, 27, [25]),  # the newest checkpoint; an entry only it covered
        (0, 0, []),  # every checkpoint; the log rewritten from its first entry
    ],
)
async def test_a_rewritten_log_whose_checkpoints_were_deleted_is_not_signed(
    backend: tuple[Store, Sql],
    pki: TestPKI,
    tsa_url: str,
    deleted: int,
    rewritten: int,
    left: list[int],
) -> None:
    store, sql = backend
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    await _signed(cpr, 25)
    await _add(store, 5, "lookup")
    await _signed(cpr, 30)
    _forge(sql, delete_from=deleted, rewrite=rewritten)
    assert await _sizes(store) == left
    await _add(store, 3, "lookup")  # the forged log goes on: a checkpoint is due
    with pytest.raises(CheckpointError, match="no longer holds the entries"):
        await cpr.checkpoint_now()  # as after a crash of the store: the log is read again
    latest = left[-1] if left else "none"
    gone = f"checkpoint 30, which this gateway signed or loaded, is no longer stored (the latest stored is {latest})"
    with pytest.raises(CheckpointError, match=f"^not signing: {re.escape(gone)}"):
        await cpr.checkpoint_now()
    assert await _sizes(store) == left  # nothing signed over the forgery
    ok, reason = cpr.healthy
    assert not ok and reason.startswith(gone), reason  # not ready: new work is refused
    with pytest.raises(CheckpointError, match="not signing"):
        await cpr.checkpoint_now()  # and it stays so
    assert await _sizes(store) == left


async def test_a_checkpoint_signed_elsewhere_over_a_rewritten_log_does_not_vouch_for_it(
    backend: tuple[Store, Sql], pki: TestPKI, tsa_url: str
) -> None:
    """Two gateways on one store, or the forgery signed by one restarted on it (which has only
    the store to go by): the latest checkpoint stored is newer than the one this gateway holds,
    and the log must still hold, at that one's size, the entries it signed."""
    store, sql = backend
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    await _signed(cpr, 25)
    await _add(store, 5, "lookup")
    await _signed(cpr, 30)
    _forge(sql, delete_from=30, rewrite=27)
    await _add(store, 3, "lookup")
    await _signed(Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url), 33)
    assert await _sizes(store) == [25, 33]
    await _add(store, 2, "lookup")
    with pytest.raises(CheckpointError, match="no longer holds the entries"):
        await cpr.checkpoint_now()
    altered = "audit log does not match checkpoint 30: altered entries"
    with pytest.raises(CheckpointError, match=f"^{altered}"):
        await cpr.checkpoint_now()
    assert cpr.healthy == (False, altered)
    with pytest.raises(CheckpointError, match=f"^not signing: {altered}"):
        await cpr.checkpoint_now()
    assert await _sizes(store) == [25, 33]


async def test_a_log_found_altered_stays_refused_while_the_checkpointer_runs(
    backend: tuple[Store, Sql], pki: TestPKI, tsa_url: str
) -> None:
    """The same, with the checkpointer running as in the gateway: once the log is found not to
    hold checkpoint 30's entries, the forgery matching the newer checkpoint stored (33) does not
    bring it back (a broken checkpointer follows the log only to see truncated entries put back).
    Nothing falls due on its own here (every 1000, hourly): the test says when to sign."""
    store, sql = backend
    cpr = Checkpointer(
        store, pki.key("gateway"), tsa_url=tsa_url, every=1000, interval_s=3600, poll_s=0.01
    )
    await cpr.start()
    try:
        await _signed(cpr, 25)
        await _add(store, 5, "lookup")
        await _signed(cpr, 30)
        _forge(sql, delete_from=30, rewrite=27)
        await _add(store, 3, "lookup")
        await _signed(Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url), 33)
        await _add(store, 2, "lookup")
        with pytest.raises(CheckpointError, match="no longer holds the entries"):
            await cpr.checkpoint_now()
        altered = "audit log does not match checkpoint 30: altered entries"
        with pytest.raises(CheckpointError, match=f"^{altered}"):
            await cpr.checkpoint_now()
        await asyncio.sleep(0.2)  # twenty polls of the running checkpointer
        assert cpr.healthy == (False, altered)
        with pytest.raises(CheckpointError, match=f"^not signing: {altered}"):
            await cpr.checkpoint_now()
    finally:
        await cpr.stop()
    assert await _sizes(store) == [25, 33]
