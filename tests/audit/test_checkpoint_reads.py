"""What ``audit verify`` and exports read of a running gateway's store.

Real stores (SQLite, and the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``), the test PKI and
its TSA over HTTP.
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

from gateway.audit import verify as verify_module
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.verify import verify_log
from gateway.store import SQLiteStore, Store, open_store
from signing.testing import TestPKI
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures

POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)

Tamper = Callable[[str], None]  # run SQL on the store, around the gateway


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
    request: pytest.FixtureRequest, tmp_path: Path, pki: TestPKI, tsa_url: str
) -> AsyncIterator[tuple[Store, Tamper]]:
    """25 events (dossiers D0..D3 in turn) with a checkpoint every 3 and one at 25: 3, 6 … 24,
    25; and how to change the store around the gateway."""
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        def tamper(sql: str) -> None:
            conn = sqlite3.connect(path)
            with conn:
                conn.execute(sql)
            conn.close()

        async with SQLiteStore(path) as store:
            await _checkpointed(store, pki, tsa_url)
            yield store, tamper
        return
    schema = f"t_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options={quote(f'-c search_path={schema}')}"
    try:

        def tamper(sql: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.encode())

        async with open_store(url) as store:
            await _checkpointed(store, pki, tsa_url)
            yield store, tamper
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


async def _checkpointed(store: Any, pki: TestPKI, tsa_url: str) -> None:
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    for size in (*range(3, 25, 3), 25):
        await add_events(store, 1 if size == 25 else 3, first=size - (1 if size == 25 else 3))
        assert (await cpr.checkpoint_now()) is not None


async def test_verify_of_a_log_appended_to_meanwhile_passes(
    backend: tuple[Store, Tamper], pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry appended after the verifier read the log's last page, before it looked for rows
    stored past it: that is the log growing, not a row out of sequence (it said `entry 25:
    missing: in its place is seq 25 (inserted or reordered)` of a busy gateway's store)."""
    store, _ = backend
    stored_beyond = verify_module._stored_beyond

    async def appended_first(store_: Store, size: int) -> Any:
        await add_events(store, 2, first=25)  # type: ignore[arg-type]
        return await stored_beyond(store_, size)

    monkeypatch.setattr(verify_module, "_stored_beyond", appended_first)
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.covered) == (25, 9, 25)
