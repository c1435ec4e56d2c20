"""The embedded store: stdlib sqlite3 in WAL mode, one writer thread with group commit.

Why one writer thread: SQLite allows one writer at a time, and an fsync per accepted dossier
would cap throughput at the disk's sync rate. Units of work submitted in one turn of an event loop
reach the writer together, in one hand-over (one wake-up of the writer, not one per unit). The
writer takes every unit queued while the previous commit was syncing (under load, lingering up to
``linger_s`` for more: see :meth:`SQLiteStore._take_batch`), runs each inside its own SAVEPOINT (a
failing unit rolls back alone), and commits them with ONE fsync. ``synchronous=FULL``: an answer
is sent only after the commit that made it durable, so a crash or power loss never loses accepted
work. A batch of units that all said ``durable=False`` (lookups' audit events) commits with
``synchronous=NORMAL`` instead: written to the WAL, which survives a crash of the process, and
synced within ``RELAXED_SYNC_S`` by a thread of its own (:class:`_WalKeeper`, which also
checkpoints the WAL, so that no commit waits for that either), or by the next FULL commit if that
comes first. The fsync's latency, and its tail (tens of ms on a shared disk), then
stays out of the answer.

Why so few calls into sqlite3 per commit: each one releases the GIL and must take it back from
the event loop, which under load holds it between its own syscalls, and CPython 3.11 lets a
thread that releases the GIL often take it straight back (the waiting writer is woken, finds it
taken, and waits again). Every such hand-off delays the commit and so every answer waiting on it.
So the transaction begins at a unit's first statement, not before; the audit head carries over
from one commit to the next while no other connection commits (:meth:`_Tx.carry_memo`); and the
deferred rows of a query are written by one multi-row INSERT. A batch of audit appends alone
(lookups) is then two statements (a look at ``data_version`` and the INSERT, committed as it
runs) instead of BEGIN, a read of the head, an INSERT per row and COMMIT.

Reads run on a small pool of reader connections; WAL gives each a consistent snapshot while the
writer goes on.

A store opened ``readonly`` (what auditors' and operators' reading commands use) has no writer:
only readers, opened so that they work on a store this user may not write (a copy on read-only
media) and leave nothing behind there (see :func:`_connect_readonly`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .api import (
    RELAXED_SYNC_S,
    QueryError,
    Row,
    Store,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    raisable,
)
from .queries import CORE_TABLES, LATER_TABLES, positional, queries, schema_scripts

CHECKPOINT_S = 1.0  # while commits come, the WAL is checkpointed this often (_WalKeeper)
WAL_RESTART_BYTES = 8 << 20  # a larger WAL is started over at its next checkpoint (_WalKeeper)

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_Unit = tuple[Callable[[Any], Any], asyncio.Future[Any], asyncio.AbstractEventLoop, bool]  # durable
_HandOver = list[_Unit]  # what one loop submitted in one turn
_STOP = None


# SQLite's primary result codes that say the store cannot work now (not that the unit is wrong):
# BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN. (READONLY is a write in a read-only unit: a bug.)
_UNAVAILABLE = frozenset({5, 6, 7, 10, 13, 14})


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of ``exc`` (sqlite3.SQLITE_READONLY, …), 0 when unknown."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _failure(what: str, exc: sqlite3.Error) -> StoreError:
    return (StoreUnavailable if _code(exc) in _UNAVAILABLE else QueryError)(f"{what}: {exc}")


class _Tx:
    """The :class:`~gateway.store.api.Tx` of one SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, *, begun: bool = False) -> None:
        self._conn = conn
        self._sql = queries()
        self._binds: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {}
        # Carried over from one commit to the next (the audit head); dropped on any failure.
        self.memo: dict[str, Any] = {}
        self._memo_before: dict[str, Any] = {}
        # Deferred writes as (query name, parameters as a tuple for its positional SQL).
        self._unit: list[tuple[str, tuple[Any, ...]]] = []  # by the running unit
        self._batch: list[tuple[str, tuple[Any, ...]]] = []  # by units that succeeded
        # The running unit's savepoint, opened at its first statement that is not a SELECT. A unit
        # that only reads and defers (an audit append) changes nothing before the flush, so it
        # needs none: two statements fewer, and two fewer GIL hand-offs with the busy loop.
        self.savepoint = False
        self.begun = begun  # the writer's transaction: begun at the first statement of a batch
        self._version = -1  # data_version when the memo was last kept

    def defer(self, query: str, /, **params: Any) -> None:
        bind = self._binds.get(query)
        if bind is None:
            try:
                bind = self._binds[query] = positional(self._sql[query])[1]
            except KeyError:
                raise QueryError(f"no SQL block named {query!r}") from None
        # Bound as a tuple now: executemany binds tuples faster than it looks names up in dicts,
        # and a missing parameter fails this unit here rather than the whole batch at commit.
        try:
            self._unit.append((query, bind(params)))
        except KeyError as exc:
            raise QueryError(f"{query}: no value for parameter :{exc.args[0]}") from None

    def begin_unit(self) -> None:
        self._memo_before = dict(self.memo)
        self._unit = []
        self.savepoint = False

    def end_unit(self, ok: bool) -> None:
        if ok:
            self._batch.extend(self._unit)
        else:
            self.memo = self._memo_before
        self._unit = []

    def carry_memo(self) -> bool:
        """Keep the memo of the last commit for this batch unless another connection (an
        operator's command, a test) has committed since; True when it is kept.

        SQLite's ``data_version`` moves with every other connection's commit, never our own."""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self.memo, self._version = {}, version
        return bool(self.memo)

    def begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        self.begun = True

    def flush(self, *, carried: bool) -> None:
        """Run the deferred writes, in order: one multi-row INSERT per run of the same query (of
        up to ``_ROWS`` rows), or one executemany for a statement that is not a plain INSERT.

        A lone statement runs in autocommit, and so is its own transaction and commit. ``carried``:
        the units ran on a memo from an earlier commit; a constraint failing then means another
        connection appended after :meth:`carry_memo` looked, which :class:`_StaleMemo` reports.
        """
        # (query, its SQL for one row, one statement for all the rows or None, the rows)
        writes: list[tuple[str, str, str | None, list[tuple[Any, ...]]]] = []
        for query, group in itertools.groupby(self._batch, key=lambda d: d[0]):
            single, rows = positional(self._sql[query])[0], [params for _, params in group]
            for i in range(0, len(rows), _ROWS):
                chunk = rows[i : i + _ROWS]
                many = single if len(chunk) == 1 else _multirow(single, len(chunk))
                writes.append((query, single, many, chunk))
        if not self.begun and (len(writes) > 1 or (writes and writes[0][2] is None)):
            self.begin()  # more than one statement: they must commit together
        for query, single, statement, rows in writes:
            try:
                if statement is None:
                    self._conn.executemany(single, rows)
                else:
                    self._conn.execute(statement, [v for row in rows for v in row])
            except sqlite3.IntegrityError as exc:
                if carried:
                    raise _StaleMemo from exc
                raise _failure(query, exc) from exc
            except sqlite3.Error as exc:
                raise _failure(query, exc) from exc
        self._batch = []

    def reset(self, *, memo: bool) -> None:
        """Ready for the next batch; ``memo``: forget the memo too (after a failure)."""
        self._unit, self._batch, self.begun = [], [], False
        if memo:
            self.memo = {}

    def _run(self, query: str, params: dict[str, Any]) -> sqlite3.Cursor:
        try:
            sql = self._sql[query]
        except KeyError:
            raise QueryError(f"no SQL block named {query!r}") from None
        try:
            if not self.begun:
                self.begin()
            if not self.savepoint and sql.lstrip()[:6].upper() != "SELECT":
                self._conn.execute("SAVEPOINT unit")
                self.savepoint = True
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _failure(query, exc) from exc

    def execute(self, query: str, /, **params: Any) -> int:
        return self._run(query, params).rowcount

    def _fetch(
        self, query: str, params: dict[str, Any], how: Callable[[sqlite3.Cursor], T]
    ) -> tuple[sqlite3.Cursor, T]:
        """The cursor and what ``how`` fetched from it. SQLite goes on stepping while rows are
        fetched, and a row can fail then (a text column that is not UTF-8): a QueryError too."""
        cursor = self._run(query, params)
        try:
            return cursor, how(cursor)
        except sqlite3.Error as exc:
            raise _failure(query, exc) from exc

    # Rows come as tuples and become dicts with dict(zip(...)): three times faster than
    # dict(sqlite3.Row). Readers of the whole log (the audit verifier) skip the dicts: tuples().
    def one(self, query: str, /, **params: Any) -> Row | None:
        cursor, row = self._fetch(query, params, sqlite3.Cursor.fetchone)
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def all(self, query: str, /, **params: Any) -> list[Row]:
        cursor, rows = self._fetch(query, params, sqlite3.Cursor.fetchall)
        if not rows:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def tuples(self, query: str, /, **params: Any) -> list[tuple[Any, ...]]:
        return self._fetch(query, params, sqlite3.Cursor.fetchall)[1]


class _StaleMemo(Exception):
    """The memo carried from an earlier commit no longer holds: run the batch again without."""


_ROWS = 64  # rows per multi-row INSERT: 64 x 11 audit columns, far under SQLite's 32,766 variables
# An INSERT whose VALUES is one tuple of parameters (no literal, no call, no upsert after it).
_VALUES = re.compile(
    r"""^(INSERT\s.+?\sVALUES\s*)(\([^()'"]*\))\s*;?\s*$""", re.IGNORECASE | re.DOTALL
)


@functools.lru_cache(maxsize=256)
def _multirow(sql: str, rows: int) -> str | None:
    """``sql`` (``INSERT … VALUES (?1, …, ?k)``) inserting ``rows`` rows at once, each row's
    parameters numbered on from the last row's; None for a statement of another shape."""
    m = _VALUES.match(sql)
    if m is None:
        return None
    head, values = m.groups()
    k = max((int(n) for n in re.findall(r"\?(\d+)", values)), default=0)
    shifted = (
        re.sub(r"\?(\d+)", lambda n, r=r: f"?{int(n.group(1)) + r * k}", values)
        for r in range(rows)
    )
    return head + ", ".join(shifted)


def _set_wal(conn: sqlite3.Connection, *, tries: int = 200) -> None:
    """Switch to WAL. While another connection is creating the same file (a gateway restarting
    as an operator's command opens the store) the switch fails at once with "database is
    locked", without waiting on the busy handler: try again for up to ~10 s (we are on a thread)."""
    for attempt in range(tries):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _connect(path: Path, *, readonly: bool = False, uri: str = "") -> sqlite3.Connection:
    """A connection to ``path``: the writer's, or with ``readonly`` a reader's. ``uri``: URI
    parameters (``mode=ro``, ``immutable=1``) for a reader of a store this user cannot write."""
    target = f"{path.resolve().as_uri()}?{uri}" if uri else path
    conn = sqlite3.connect(
        target, uri=bool(uri), isolation_level=None, check_same_thread=False, timeout=30
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        _stand_in_later_tables(conn)
        conn.execute("PRAGMA query_only = ON")
    else:
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the WAL keeper's work (_WalKeeper)
    return conn


def _stand_in_later_tables(conn: sqlite3.Connection) -> None:
    """An empty temporary table for each of LATER_TABLES the store lacks (an older store read)."""
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return  # no database it can read (not one, a -wal without its -shm): its caller says so
    for name, columns in LATER_TABLES:
        if name not in have:
            conn.execute(f"CREATE TEMP TABLE {name} ({columns})")


def _create_private(path: Path) -> None:
    """Create a missing store file readable and writable by its owner alone (0600), whatever the
    umask: it holds applicants' personal ids, names and phone numbers. SQLite gives the -wal and
    -shm files it makes the mode of the store file. An existing file keeps the mode it has.
    Raises StoreError saying why it cannot be made (SQLite says only "unable to open")."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:  # a folder this user may not write, a read-only file system
        raise StoreError(f"cannot create the store at {path}: {exc.strerror or exc}") from None


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A reader's connection to ``path`` that works, and leaves nothing behind, even where this
    user may not write the file or its folder.

    Where it may write both, a reader connects as the writer's readers do: SQLite makes the
    -wal and -shm files a WAL database needs and, as the last connection to close, removes them.
    Where it may not, SQLite cannot make them (a copy on read-only media: "attempt to write a
    readonly database"), or makes them and cannot remove them (files an auditor may only read,
    in a folder they may write): left behind, owned by this user, they would stop a gateway
    started later from writing its -shm. So, instead:

    - a -wal file with content holds commits not yet in the file (a live gateway's, or those of
      one that stopped without a checkpoint): read through it, ``mode=ro``; SQLite then uses the
      -shm beside it read-only, and fails if there is none and it may not make one;
    - otherwise the file holds the whole database: ``immutable=1`` reads it with no -shm and no
      locks. Right while nothing writes the file, as is true of a copy; a gateway starting on
      the store meanwhile writes its -wal, not the file, until its first checkpoint.
    """
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return _connect(path, readonly=True)
    wal = path.with_name(path.name + "-wal")
    pending = wal.is_file() and wal.stat().st_size > 0
    return _connect(path, readonly=True, uri="mode=ro" if pending else "immutable=1")


def _read_only(path: Path, why: str) -> StoreError:
    return StoreError(f"{path} is read-only ({why}): only commands that read the store can use it")


def _check_existing(path: Path) -> None:
    """Raise StoreError unless ``path`` is a SQLite database with lienthong's tables; looked at
    by a reader, so that nothing is created, switched to WAL or given tables on the way."""
    if not path.is_file():
        raise StoreError(f"no store at {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        conn = _connect_readonly(path)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if _code(exc) == sqlite3.SQLITE_NOTADB:
            raise StoreError(f"{path} is not a SQLite database ({exc})") from None
        # Not the file's fault: SQLite could not open it to read (a file this user may not read,
        # a -wal copied without its -shm onto read-only media).
        hint = ""
        if Path(f"{path}-wal").is_file() and not Path(f"{path}-shm").is_file():
            hint = ": its -wal file can be read only with its -shm file, or in a writable folder"
        raise StoreError(f"cannot read the store at {path} ({exc}){hint}") from None
    missing = sorted(set(CORE_TABLES) - tables)
    if missing:
        raise StoreError(f"{path} is not a lienthong store (no table {', '.join(missing)})")


def _check_not_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """Raise StoreError if the database ``conn`` opened holds another application's tables and
    none of lienthong's: the gateway must not add its own beside them. A database with nothing in
    it (a new file, a 0-byte one, one with no table) becomes a store; one with lienthong's tables
    is a store, which the schema scripts bring up to date."""
    try:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        }
    except sqlite3.Error as exc:
        if _code(exc) == sqlite3.SQLITE_NOTADB:
            raise StoreError(f"{path} is not a SQLite database ({exc})") from None
        raise
    if names and not names & set(CORE_TABLES):
        shown = ", ".join(sorted(names)[:3]) + (", …" if len(names) > 3 else "")
        raise StoreError(
            f"{path} is not a lienthong store (another application's database: {shown};"
            f" no table {', '.join(sorted(CORE_TABLES))}): left as it was"
        )


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in outcomes:
        if fut.done():  # the caller was cancelled; the work is committed all the same
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(raisable(value))


class _WalKeeper:
    """Keeps the WAL, on a thread of its own, so that the writer never waits on the disk for it:

    - syncs it within ``RELAXED_SYNC_S`` of a commit made with synchronous=NORMAL, which wrote
      its frames there without syncing them: what a FULL commit would have done, for all such
      commits at once (SQLite offers no call for it; an fsync of any descriptor of the file does
      it);
    - checkpoints it (copies its pages into the database file, which is then synced) every
      ``CHECKPOINT_S`` while commits come, with a PASSIVE checkpoint on a connection of its own,
      which the writer does not wait for, and has the writer start it over past
      ``WAL_RESTART_BYTES``. The writer's
      connection has SQLite's automatic checkpoint turned off: run by whichever commit crossed
      1,000 pages, it held that commit, and every answer waiting on it, for the copy and two
      fsyncs — tens of ms on a shared disk, which was most of the lookups' p99 (December 6:
      42 -> 17 ms in paired open-loop runs).
    """

    def __init__(self, path: Path, failed: Callable[[str], None]) -> None:
        self._path, self._wal, self._failed = path, Path(f"{path}-wal"), failed
        self._cond = threading.Condition()
        self.dirty = False  # commits made since the last sync that no sync covers yet
        self._written = False  # commits made since the last checkpoint
        self._checkpointed = time.monotonic()
        self._closing = False
        self._conn: sqlite3.Connection | None = None  # for checkpoints, opened on first use
        self._frame = 0  # bytes per WAL frame: the page size and a 24-byte header
        self._thread = threading.Thread(target=self._run, name="lienthong-sqlite-wal", daemon=True)
        self._thread.start()

    def committed(self, durable: bool) -> None:
        """Called by the writer after each commit."""
        with self._cond:
            self._written = True
            if durable:
                self.dirty = False  # a FULL commit synced the WAL, so every frame before it too
            elif not self.dirty:
                self.dirty = True
                self._cond.notify()

    def close(self) -> None:
        """Called by the writer after its last commit: stop, and sync what is left (the writer's
        connection, the last to close, then checkpoints the rest)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self.dirty:
            self.dirty = False
            self._sync()

    def _run(self) -> None:
        try:
            with self._cond:
                while not self._closing:
                    self._cond.wait_for(lambda: self.dirty or self._closing, CHECKPOINT_S)
                    if self.dirty:
                        # Let the commits of the next RELAXED_SYNC_S gather: one fsync for all.
                        if self._cond.wait_for(lambda: self._closing, RELAXED_SYNC_S):
                            return
                        # Cleared first: a commit made during the fsync may miss it, and asks again.
                        self.dirty = False
                        self._unlocked(self._sync)
                    due = time.monotonic() - self._checkpointed >= CHECKPOINT_S
                    if self._written and due and not self._closing:
                        self._written = False
                        self._unlocked(self._checkpoint)
                        self._checkpointed = time.monotonic()
        finally:
            if self._conn is not None:
                self._conn.close()

    def _unlocked(self, work: Callable[[], None]) -> None:
        self._cond.release()
        try:
            work()
        finally:
            self._cond.acquire()

    def _sync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except FileNotFoundError:
            pass  # checkpointed into the database file (which SQLite synced) and removed
        except OSError as exc:
            self._failed(f"cannot sync the write-ahead log: {exc}")

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                # A short busy timeout: RESTART holds new commits while it waits for a reader.
                self._conn = sqlite3.connect(self._path, isolation_level=None, timeout=0.1)
                self._conn.execute("PRAGMA synchronous = FULL")
                self._frame = self._conn.execute("PRAGMA page_size").fetchone()[0] + 24
            # PASSIVE: as many pages as no reader still needs, without waiting for anyone.
            _, frames, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames * self._frame > WAL_RESTART_BYTES:
                # Under steady commits a PASSIVE checkpoint never quite catches up with the
                # writer, and SQLite starts the WAL over only once one has: the WAL would grow
                # for as long as the load lasts. RESTART waits for the commit under way, holds
                # the next one while it copies what the PASSIVE one left (the pages of the
                # commits made meanwhile) and syncs, then lets it write the WAL from its start:
                # a stall of a few ms. If a reader holds it back, it gives up: next time.
                # (TRUNCATE, which also empties the file, held the writer for 27-46 ms at a
                # 64 MiB WAL; the file keeps its size now, bounded by this limit.)
                self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            self._failed(f"cannot checkpoint the write-ahead log: {exc}")


class SQLiteStore(Store):
    """``linger_s``: under load, how long the writer may wait for more units before a commit (see
    :meth:`_take_batch`); 0 commits what is queued at once, always. ``create=False``: open only
    a lienthong store that exists (an operator's command), never make or change another file.
    With ``create`` (``serve``), a missing file, a 0-byte one or a database with no table becomes a
    store, but a file holding another application's tables (and none of lienthong's), or no
    SQLite database at all, is refused with StoreError and left as it was.
    ``readonly``: open an existing store only to read it (implies ``create=False``): no writer,
    and :meth:`transact` raises StoreError; works on a store this user may not write."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = 512,
        readers: int = 2,
        linger_s: float = 0.001,
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self._create = create and not readonly
        self._readonly = readonly
        self._max_batch = max_batch
        self._linger = linger_s
        self._rate = 0.0  # units per second reaching the writer over the last window
        self._window: tuple[float, int] = (time.monotonic(), 0)  # its start, units since
        self._readers = readers
        self._queue: queue.SimpleQueue[_HandOver | None] = queue.SimpleQueue()
        # Per event loop, the units submitted in its current turn; each loop touches only its own.
        self._turn: dict[asyncio.AbstractEventLoop, _HandOver] = {}
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self.commits = 0  # group commits done, for metrics and the bench
        self.units = 0
        self._durable = True  # the writer's synchronous setting: FULL (True) or NORMAL
        self._wal: _WalKeeper | None = None  # the writer's

    async def open(self) -> None:
        if self._readonly:
            await asyncio.to_thread(_check_existing, self.path)  # no schema, no writer
        else:
            conn = await asyncio.to_thread(self._init_schema)
            self._wal = _WalKeeper(self.path, self._wal_failed)
            self._writer = threading.Thread(
                target=self._write_loop,
                args=(conn, self._wal),
                name="lienthong-sqlite-writer",
                daemon=True,
            )
            self._writer.start()
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="lienthong-sqlite-read")

    def _init_schema(self) -> sqlite3.Connection:
        if not self._create:
            _check_existing(self.path)
        if self.path.is_file() and not os.access(self.path, os.W_OK):
            # SQLite would open it read-only without a word, make the -wal and -shm files of a
            # writer that cannot write, and fail only at the first unit: refuse now instead.
            raise _read_only(self.path, "this user may not write the file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size > 0:
                # Looked at by a reader first: the writer's connection would switch the file to
                # WAL, which changes another application's database before anything is refused.
                reader = _connect_readonly(self.path)
                try:
                    _check_not_foreign(reader, self.path)
                finally:
                    reader.close()
            _create_private(self.path)
            conn = _connect(self.path)
            for script in schema_scripts():
                conn.executescript(script)
        except sqlite3.Error as exc:
            if _code(exc) == sqlite3.SQLITE_READONLY:  # its folder, or a read-only file system
                raise _read_only(self.path, str(exc)) from exc
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        return conn

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            self._hand_over(asyncio.get_running_loop())  # units submitted in this very turn
            self._queue.put(_STOP)
            await asyncio.to_thread(writer.join)
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    async def transact(self, work: Callable[[Any], T], *, durable: bool = True) -> T:
        if self._readonly:
            raise StoreError(f"{self.path} was opened read-only: it cannot be changed")
        if self._writer is None:
            raise StoreClosed("the store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        turn = self._turn.get(loop)
        if turn is None:
            # Waking the writer costs a futex call and, on a busy machine, two context switches
            # (the woken writer preempts the loop, then waits for the GIL the loop holds): once
            # per turn, then, at its end, with every unit the turn submitted.
            turn = self._turn[loop] = []
            loop.call_soon(self._hand_over, loop)
        turn.append((work, fut, loop, durable))
        return await fut

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        turn = self._turn.pop(loop, [])
        for i in range(0, len(turn), self._max_batch):
            self._queue.put(turn[i : i + self._max_batch])

    async def read(self, work: Callable[[Any], T]) -> T:
        if self._pool is None:
            raise StoreClosed("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read, work)

    def _read(self, work: Callable[[Any], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = (
                _connect_readonly(self.path)
                if self._readonly
                else _connect(self.path, readonly=True)
            )
            with self._lock:
                self._reader_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for the whole unit
        tx = _Tx(conn, begun=True)
        try:
            result = work(tx)
            if tx._unit:
                raise QueryError("a read-only unit of work cannot write (defer)")
            return result
        finally:
            conn.execute("COMMIT")

    def _write_loop(self, conn: sqlite3.Connection, wal: _WalKeeper) -> None:
        tx = _Tx(conn)
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stopping = self._take_batch(first)
            self._commit(conn, tx, batch, wal)
        wal.close()
        conn.close()

    def _wal_failed(self, why: str) -> None:
        self.unavailable = (time.monotonic(), why)

    def _take_batch(self, first: _HandOver) -> tuple[list[_Unit], bool]:
        """``first``'s units and those queued behind them; and whether the store is closing.

        A commit costs the writer ~100 us of CPU (the fsync's, and its hand-offs of the GIL with
        the loop) whether it carries one unit or fifty, and this disk syncs in ~0.1 ms, so a busy
        gateway commits nearly every unit alone. When units arrive fast enough (over the last
        ~50 ms) that more are due within ``linger_s``, the writer waits, up to ``linger_s``, for
        the batch to hold as many more: the CPU it saves serves requests, and at that rate the
        wait is shorter than the queueing it avoids (at 1,050 lookups/s here, p99 25 -> 17 ms).
        Slower arrivals (a quiet gateway) are committed at once: there is nothing to gain.
        """
        now = time.monotonic()
        start, units = self._window
        if now - start >= 0.05:
            self._rate, self._window = units / (now - start), (now, 0)
        batch = list(first)
        target = min(self._max_batch, len(batch) + int(self._rate * self._linger))
        stopping = self._fill(batch, target, now + self._linger)
        self._window = (self._window[0], self._window[1] + len(batch))
        return batch, stopping

    def _fill(self, batch: list[_Unit], target: int, deadline: float) -> bool:
        """Add queued units to ``batch``, waiting until ``deadline`` while it is under ``target``;
        True when the store is closing. A hand-over is never split: a batch may exceed
        ``max_batch`` by less than one hand-over."""
        while len(batch) < self._max_batch:
            try:
                if len(batch) < target:
                    left = deadline - time.monotonic()
                    units = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                else:
                    units = self._queue.get_nowait()
            except queue.Empty:
                break
            if units is _STOP:
                return True
            batch.extend(units)
        return False

    def _commit(
        self, conn: sqlite3.Connection, tx: _Tx, batch: list[_Unit], wal: _WalKeeper
    ) -> None:
        durable = any(unit[3] for unit in batch)
        try:
            if durable != self._durable:
                # Set between transactions, and only when it changes: one more call into sqlite3
                # per commit would cost a hand-off of the GIL (see the module docstring).
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            try:
                outcomes = self._run_batch(conn, tx, batch)
            except _StaleMemo:
                # Another connection appended after the batch looked at data_version: run the
                # units again on what the store holds now (a unit may run more than once).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                tx.reset(memo=True)
                outcomes = self._run_batch(conn, tx, batch)
            except QueryError:
                if len(batch) == 1:
                    raise
                # A deferred write failed at the flush, and the rows of every unit went with it:
                # commit each unit alone, so that only the one whose rows fail is refused, as on
                # PostgreSQL (a unit may run more than once).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                tx.reset(memo=True)
                for unit in batch:
                    self._commit(conn, tx, [unit], wal)
                return
            self.commits += 1
            self.units += len(batch)
            wal.committed(durable)
        except (sqlite3.Error, StoreError) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tx.reset(memo=True)
            failure = (
                _failure("commit failed", exc)
                if isinstance(exc, sqlite3.Error)
                else type(exc)(f"commit failed: {exc}")
            )
            outcomes = [(False, failure)] * len(batch)
        lacking = next((v for _, v in outcomes if isinstance(v, StoreUnavailable)), None)
        if lacking is not None:
            self.unavailable = (time.monotonic(), str(lacking))
        # One wake-up per event loop per commit, not one per unit: each call_soon_threadsafe
        # writes to the loop's self-pipe and contends for the GIL.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, fut, loop, _), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, tx: _Tx, batch: list[_Unit]) -> list[tuple[bool, Any]]:
        """Run each unit in the batch's transaction (each in a savepoint once it writes), then
        the deferred writes, and commit. Raises StoreError or sqlite3.Error for the batch as a
        whole, _StaleMemo when the memo carried from the last commit proved stale."""
        carried = tx.carry_memo()
        outcomes: list[tuple[bool, Any]] = []
        for work, _, _, _ in batch:
            tx.begin_unit()
            try:
                outcomes.append((True, work(tx)))
                tx.end_unit(True)
            except BaseException as exc:  # the unit's own failure: undo it alone
                if not conn.in_transaction and (tx.begun or isinstance(exc, StoreUnavailable)):
                    # SQLite rolled the whole transaction back (a full disk, an I/O error), so
                    # the units before this one are gone too; or it could not begin (locked too
                    # long), and no unit can run. Either way the whole batch fails.
                    if isinstance(exc, StoreError):
                        raise
                    raise StoreUnavailable(f"transaction rolled back: {exc}") from exc
                if tx.savepoint:
                    conn.execute("ROLLBACK TO unit")
                tx.end_unit(False)
                outcomes.append((False, exc))
            if tx.savepoint:
                conn.execute("RELEASE unit")
        tx.flush(carried=carried)
        if tx.begun:
            conn.execute("COMMIT")
        tx.reset(memo=False)
        return outcomes
