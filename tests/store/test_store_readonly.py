"""A store opened read-only (``open_store(url, readonly=True)``, what the reading commands use),
on both backends: it reads, it refuses units of work, it is never created, and it sees what a
live gateway commits. Read-only copies that the user may not write: tests/audit/test_readonly_copy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.store import SQLiteStore, StoreClosed, StoreError, open_store


def folder(store_url: str) -> dict[str, bytes] | None:
    """A SQLite store's folder, every file's bytes by name; None for PostgreSQL."""
    if not store_url.startswith("sqlite:"):
        return None
    path = Path(store_url.removeprefix("sqlite:///"))
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())}


async def test_a_read_only_store_reads_and_refuses_units_of_work(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    before = await asyncio.to_thread(folder, store_url)

    async with open_store(store_url, readonly=True) as store:
        assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
        with pytest.raises(StoreError, match="opened read-only") as refused:
            await store.transact(lambda tx: tx.execute("kv.put", k="a", v="2"))
        assert not isinstance(refused.value, StoreClosed)  # open, and read-only
        assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}

    # SQLite's -wal and -shm came and went; the file is as it was.
    assert await asyncio.to_thread(folder, store_url) == before


async def test_a_read_only_sqlite_store_has_no_writer(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.db"):
        pass
    async with SQLiteStore(tmp_path / "s.db", readonly=True) as store:
        assert store._writer is None
        with pytest.raises(StoreError, match=r"s\.db was opened read-only"):
            await store.transact(lambda tx: None)


async def test_a_read_only_store_is_never_created(store_url: str) -> None:
    for _ in range(2):  # the first refusal created nothing: the second is the same
        with pytest.raises(StoreError, match=r"not a lienthong store|no store at"):
            async with open_store(store_url, readonly=True):
                pass
    assert await asyncio.to_thread(folder, store_url) in (None, {})


async def test_a_read_only_store_sees_what_a_live_gateway_commits(store_url: str) -> None:
    """On a store the user may write, readers read as the gateway's own readers do (through
    SQLite's WAL): each unit sees every commit made before it."""
    async with open_store(store_url) as gateway:
        await gateway.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
        async with open_store(store_url, readonly=True) as auditor:
            assert await auditor.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
            await gateway.transact(lambda tx: tx.execute("kv.put", k="a", v="2"))
            assert await auditor.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "2"}
        await gateway.transact(lambda tx: tx.execute("kv.put", k="b", v="3"))  # still writes
