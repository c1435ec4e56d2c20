"""The store interface: durable state behind units of work.

A unit of work is a plain synchronous function ``work(tx) -> T``. :meth:`Store.transact` runs it
inside ONE transaction on the store's own thread, so callers never block the event loop and never
see a half-applied change: the dossier, its outbox job and its audit event commit together or not
at all. Queries are named ``"<file>.<block>"`` (see :mod:`gateway.store.queries`), which keeps SQL
out of the callers and lets another backend supply the same names.

Exceptions::

    StoreError            base
    ├── StoreClosed       the store is not open (shutting down, or never opened)
    ├── StoreUnavailable  the store cannot work now (disk full, I/O error, database unreachable)
    │   └── CommitUncertain   … and the COMMIT's answer was lost with it: it may have been made
    └── QueryError        a named query failed (constraint, syntax, unknown name)
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

__all__ = [
    "RELAXED_SYNC_S",
    "CommitUncertain",
    "QueryError",
    "Row",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "Tx",
]

T = TypeVar("T")
Row = dict[str, Any]

# The longest the SQLite store leaves a commit made with ``durable=False`` unsynced.
RELAXED_SYNC_S = 0.2


class StoreError(Exception):
    """Something went wrong in the store."""


class StoreClosed(StoreError):
    """The store is not open."""


class StoreUnavailable(StoreError):
    """The store cannot work now: its disk is full or failing, its server is unreachable or has
    been locked too long. The unit was rolled back; the same work may succeed later."""


class CommitUncertain(StoreUnavailable):
    """The connection was lost while the COMMIT was under way (a server restarted or failed
    over, a session terminated): the server may have committed the unit before it went, and no
    answer says whether it did. A caller must not claim that nothing was kept."""


class QueryError(StoreError):
    """A named query failed; the unit of work that ran it was rolled back."""


def raisable(exc: BaseException) -> BaseException:
    """``exc``, a unit's failure, as its caller can be given it through an asyncio Future, which
    refuses StopIteration (it would end the coroutine awaiting it; PEP 479): a RuntimeError
    caused by it instead. A refused set_exception would leave the caller waiting for ever."""
    if isinstance(exc, StopIteration):
        error = RuntimeError("a unit of work raised StopIteration")
        error.__cause__ = exc
        return error
    return exc


class Tx(Protocol):
    """What a unit of work may do. Synchronous: it runs on the store's thread."""

    # Values a unit leaves for later units of the same transaction (the audit head, say); what a
    # failed unit wrote here is rolled back with it. A store may carry them on to its next
    # transactions (SQLite's single writer does) as long as it can tell when they went stale.
    memo: dict[str, Any]

    def defer(self, query: str, /, **params: Any) -> None:
        """Queue a write for commit time, batched with the others of the same query.

        For append-only rows nothing in the transaction reads back (audit entries): one batched
        write instead of one round trip each. Dropped if the unit fails; a store may also run it
        at once.
        """
        ...

    def execute(self, query: str, /, **params: Any) -> int:
        """Run a named statement; return the number of rows it changed."""
        ...

    def one(self, query: str, /, **params: Any) -> Row | None:
        """Run a named query; return its first row or None."""
        ...

    def all(self, query: str, /, **params: Any) -> list[Row]:
        """Run a named query; return every row."""
        ...

    def tuples(self, query: str, /, **params: Any) -> list[tuple[Any, ...]]:
        """Run a named query; return every row as a tuple, in the query's column order.

        For reads of many rows where building a dict per row would cost more than the caller's
        work on it (the audit verifier reads the whole log).
        """
        ...


class Store(abc.ABC):
    """Durable state. Use as ``async with``; units of work via :meth:`transact` and :meth:`read`."""

    # When (time.monotonic()) and why a write last failed with StoreUnavailable. Readiness
    # reports it until a write of its own that needs room succeeds (gateway.api.ops): a full
    # disk fails some writes (new rows) and not others, so any write that succeeds says little.
    unavailable: tuple[float, str] | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema (every SQL file's ``schema`` block)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued units of work, then disconnect."""

    @abc.abstractmethod
    async def transact(self, work: Callable[[Tx], T], *, durable: bool = True) -> T:
        """Run ``work`` in one transaction; return its result or raise what it raised.

        Raises :class:`StoreClosed`, :class:`StoreUnavailable`, :class:`QueryError`, or whatever
        ``work`` raised (the unit is then rolled back and nothing it wrote survives). ``work``
        may run more than once: a store shared by several writers runs it again when its
        transaction lost a race with another's (the same key inserted by both); so it must not
        act outside ``tx``.

        By default the commit is on disk before this returns. ``durable=False`` returns once the
        commit is written but before it is synced (PostgreSQL's ``synchronous_commit = off``): a
        crash of the gateway never loses it; a power cut or an OS crash shortly after it may, and
        on PostgreSQL a crash of the database server too (the commit waits in the server's memory
        until its WAL writer writes it out).
        The sync follows within :data:`RELAXED_SYNC_S` on SQLite (three ``wal_writer_delay``
        rounds, 0.6 s by default, on PostgreSQL), and any durable commit syncs every commit
        before it. For records whose answer must not wait on the disk; never for accepted work.
        """

    @abc.abstractmethod
    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` on a consistent read-only snapshot."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
