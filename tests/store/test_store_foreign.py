"""A store opened to be created (what ``serve`` does) where another application's database already
is — a SQLite file, a PostgreSQL schema: refused, and left as it was. Before, the gateway added its
tables beside the other application's (and switched the file to WAL). A missing file, a 0-byte
file and a database with no table still become a new store; a store already made opens.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from gateway.store import PostgresStore, SQLiteStore, StoreError

from .conftest import POSTGRES_URL, admin


def _other_application(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 2.5)")
    conn.commit()
    conn.close()
    return path.read_bytes()


async def test_another_applications_database_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.db"
    before = _other_application(path)
    with pytest.raises(StoreError, match=r"crm\.db is not a lienthong store") as refused:
        async with SQLiteStore(path):
            pass
    assert "invoices" in str(refused.value) and "\n" not in str(refused.value)
    _left_as_it_was(path, before)


def _left_as_it_was(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, no -shm
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


async def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"some notes, not a database at all " * 40)
    with pytest.raises(StoreError, match=r"notes\.db is not a SQLite database"):
        async with SQLiteStore(path):
            pass
    assert path.read_bytes() == b"some notes, not a database at all " * 40


@pytest.mark.parametrize("kind", ["missing", "empty-file", "no-tables"])
async def test_an_empty_place_becomes_a_store(tmp_path: Path, kind: str) -> None:
    """A 0-byte file is an empty database to SQLite, with no one's data in it: it becomes a store
    as a missing file does (the reading commands, which never create one, refuse it)."""
    path = tmp_path / "gw.db"
    if kind == "empty-file":
        path.touch()
    elif kind == "no-tables":
        sqlite3.connect(path).execute("PRAGMA user_version = 1").close()
    async with SQLiteStore(path) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    async with SQLiteStore(path, create=False) as store:  # and opens again as one
        assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}


@pytest.mark.postgres
async def test_a_postgres_schema_of_another_application_is_refused_and_left_as_it_was(
    pg_schema: tuple[str, str],
) -> None:
    """The same rule on PostgreSQL: the store's tables go in the first schema of the search path,
    and a schema holding someone else's tables is refused, not given lienthong's beside them."""
    url, schema = pg_schema
    admin(f'CREATE TABLE "{schema}".invoices (id INTEGER PRIMARY KEY, amount REAL)')
    with pytest.raises(StoreError, match="is not a lienthong store") as refused:
        async with PostgresStore(url):
            pass
    message = str(refused.value)
    assert "invoices" in message and "left as it was" in message and "\n" not in message, message
    assert message.count("(") == message.count(")"), message
    with psycopg.connect(POSTGRES_URL) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchall()
    assert tables == [("invoices",)]


@pytest.mark.postgres
async def test_an_empty_postgres_schema_becomes_a_store(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    async with PostgresStore(url) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    async with PostgresStore(url) as store:  # a store already made opens again
        assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
