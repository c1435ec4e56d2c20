"""The auditors' proof tree when the request growing it is cancelled (its client went away:
``lienthong serve`` cancels the handler): the thread hashing the new leaves cannot be stopped,
and the next proof must not grow the tree beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.audit import AuditEvent, LogTree, append
from gateway.store import Tx
from gateway.store.sqlite import SQLiteStore

ENTRIES = 20_000  # one page of LogTree.sync: some 20 ms of hashing in its thread


async def _log_of(store: SQLiteStore, entries: int) -> None:
    def some(tx: Tx, n: int) -> None:
        for i in range(n):
            append(tx, AuditEvent(action="lookup.enterprise", member=f"VN:GOV:M{i % 3}"))

    for _ in range(entries // 1000):
        await store.transact(lambda tx: some(tx, 1000))


async def test_a_proof_cancelled_while_the_tree_grows_leaves_it_whole(tmp_path: Path) -> None:
    """Found by review: cancelled while its thread extended the tree, a proof's request let
    go of the tree's lock at once; the next one read the tree's size half-way and extended it
    from there too, so its leaves went in twice and every proof after it was wrong."""
    async with SQLiteStore(tmp_path / "audit.db") as store:
        await _log_of(store, ENTRIES)
        reference = LogTree(store)
        size = await reference.sync()
        assert size == ENTRIES
        cancelled_half_way = 0
        for _ in range(10):
            tree = LogTree(store)
            growing = asyncio.create_task(tree.sync())
            # Until its thread has begun to hash the leaves (a thread sets no asyncio.Event).
            while tree.tree.size == 0:  # noqa: ASYNC110
                await asyncio.sleep(0)
            cancelled_half_way += tree.tree.size < ENTRIES
            growing.cancel()
            assert await tree.sync() == ENTRIES  # the next proof, at once
            assert tree.tree.root(ENTRIES) == reference.tree.root(ENTRIES)
            assert tree.tree.size == ENTRIES
            try:
                await growing
            except asyncio.CancelledError:
                pass
        assert cancelled_half_way, "never cancelled while the leaves were being hashed"
