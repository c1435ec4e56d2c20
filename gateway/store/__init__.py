"""Durable state: one interface (:mod:`.api`), the embedded SQLite store, the shared PostgreSQL
store, and a factory by URL."""

from __future__ import annotations

from pathlib import Path

from .api import (
    CommitUncertain,
    QueryError,
    Row,
    Store,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    Tx,
)
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = [
    "CommitUncertain",
    "PostgresStore",
    "QueryError",
    "Row",
    "SQLiteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "Tx",
    "open_store",
]


def open_store(
    url: str,
    *,
    base: Path | None = None,
    create: bool = True,
    readonly: bool = False,
    pool_size: int = 4,
) -> Store:
    """The store a URL names, as SQLAlchemy spells them: ``sqlite:///relative.db`` (to ``base``),
    ``sqlite:////absolute/path.db``; ``postgresql://user@host:5432/db`` (or ``postgres://``, any
    libpq URI: ``?options=-csearch_path%3Dname`` picks a schema) for the shared PostgreSQL store.

    ``create=False``: the store must exist already (see the stores' own ``create``).
    ``readonly=True``: open an existing store only to read it; its ``transact`` raises StoreError.
    A SQLite store opened so may be one this user cannot write (a copy on read-only media).
    ``pool_size``: PostgreSQL's connections (SQLite has one writer).

    Raises ValueError for a scheme this build does not support.
    """
    if url.startswith("sqlite:"):
        raw = url.removeprefix("sqlite:").removeprefix("///")
        path = Path(raw)
        if not path.is_absolute() and base is not None:
            path = base / path
        return SQLiteStore(path, create=create, readonly=readonly)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, create=create, readonly=readonly, pool_size=pool_size)
    scheme = url.partition(":")[0]  # not the rest: a database URL may hold a password
    raise ValueError(
        f"unsupported store url scheme {scheme!r} (expected sqlite:///path.db or "
        "postgresql://host/db)"
    )
