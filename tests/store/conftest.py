"""Fixtures for the store contract: every test of it runs on SQLite and on PostgreSQL.

PostgreSQL is the real server at ``$LIENTHONG_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each test gets its own fresh schema, dropped
afterwards. Without a server the PostgreSQL cases skip, saying why — unless ``CI`` is set: there
they fail, because a CI run that silently skipped them would vouch for code nobody ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from gateway.store import Store, open_store

POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server's URL, once it answered; skip (locally) or fail (CI) when it does not."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL}: {str(exc).strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the postgres tests must run)", pytrace=False)
        pytest.skip(f"{reason} (start it, or set LIENTHONG_TEST_POSTGRES)")
    return POSTGRES_URL


def admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.encode())


def schema_url(server: str, schema: str) -> str:
    """``server`` with the schema as its search path, and as its application name (so a test can
    find its own connections in pg_stat_activity and no one else's)."""
    sep = "&" if "?" in server else "?"
    return f"{server}{sep}options={quote(f'-c search_path={schema}')}&application_name={schema}"


@pytest.fixture
def pg_schema(postgres_server: str) -> Iterator[tuple[str, str]]:
    """(store URL, schema name) of a fresh schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    admin(f'CREATE SCHEMA "{name}"')
    try:
        yield schema_url(postgres_server, name), name
    finally:
        admin(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_schema")[0]
    return url


StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture
async def new_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens another store on the same database — another gateway instance — closed afterwards."""
    opened: list[Store] = []

    async def make() -> Store:
        s = open_store(store_url)
        await s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(new_store: StoreFactory) -> Store:
    return await new_store()
