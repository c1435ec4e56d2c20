"""Both stores for the outbox tests that must hold on each: a fresh SQLite file, or a fresh schema
of the real PostgreSQL server (``$LIENTHONG_TEST_POSTGRES``), and what time does to their rows.

PostgreSQL writes and compares a job's times on its own clock, which a test cannot move: time is
made to pass by moving the rows' times back instead, on both stores alike (:func:`raw_sql`)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.encode())


def store_urls(backend: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """The URL of a fresh store of ``backend`` (sqlite, postgres), dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    schema = f"{prefix}_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{sep}options={quote(f'-c search_path={schema}')}"
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


def raw_sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the store's database beside the store (what time does to the rows); the
    rows it returns, if any."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchall() if cursor.description else []
            conn.commit()
            return rows
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(sql.encode())
        return cur.fetchall() if cur.description else []
