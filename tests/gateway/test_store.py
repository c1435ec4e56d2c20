import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.store import QueryError, SQLiteStore, StoreClosed, Tx, open_store


@pytest.fixture
async def store(tmp_path: Path):
    async with SQLiteStore(tmp_path / "s.db") as s:
        yield s


async def test_units_commit_and_read_back(store: SQLiteStore) -> None:
    await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    row = await store.read(lambda tx: tx.one("kv.get", k="a"))
    assert row == {"v": "1"}


async def test_concurrent_units_are_group_committed(store: SQLiteStore) -> None:
    await asyncio.gather(
        *(store.transact(lambda tx, i=i: tx.execute("kv.put", k=str(i), v="x")) for i in range(300))
    )
    assert (await store.read(lambda tx: tx.one("kv.count"))) == {"n": 300}
    assert store.units == 300
    assert store.commits < 300  # several units shared one fsync


async def test_a_failing_unit_rolls_back_alone(store: SQLiteStore) -> None:
    def bad(tx: Tx) -> None:
        tx.execute("kv.put", k="half", v="written")
        raise RuntimeError("boom")

    results = await asyncio.gather(
        store.transact(lambda tx: tx.execute("kv.put", k="good", v="1")),
        store.transact(bad),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], RuntimeError)
    assert await store.read(lambda tx: tx.one("kv.get", k="half")) is None
    assert await store.read(lambda tx: tx.one("kv.get", k="good")) == {"v": "1"}


async def test_unknown_query_and_sql_errors_are_query_errors(store: SQLiteStore) -> None:
    with pytest.raises(QueryError, match="no SQL block"):
        await store.transact(lambda tx: tx.execute("kv.nope"))
    with pytest.raises(QueryError, match=r"kv\.put"):
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v=None))  # NOT NULL


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "c.db")
    with pytest.raises(StoreClosed):
        await s.transact(lambda tx: None)
    await s.open()
    await s.close()
    with pytest.raises(StoreClosed):
        await s.read(lambda tx: None)


async def test_committed_work_is_on_disk_for_another_connection(store: SQLiteStore) -> None:
    await store.transact(lambda tx: tx.execute("kv.put", k="durable", v="yes"))
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("SELECT v FROM kv WHERE k='durable'").fetchone() == ("yes",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_open_store_urls(tmp_path: Path) -> None:
    s = open_store("sqlite:///" + str(tmp_path / "x.db"))  # four slashes: absolute
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "x.db"
    rel = open_store("sqlite:///rel.db", base=tmp_path)
    assert isinstance(rel, SQLiteStore) and rel.path == tmp_path / "rel.db"
    with pytest.raises(ValueError, match="unsupported"):
        open_store("mysql://x")
