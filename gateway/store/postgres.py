"""The shared store: PostgreSQL, for any number of gateway instances on one database.

Why psycopg 3 (sync) and not asyncpg: the store's unit of work is a SYNCHRONOUS function
``work(tx)`` (see :mod:`gateway.store.api`) that must run inside one transaction without blocking
the event loop. asyncpg can only be driven from the loop, so it cannot serve a synchronous unit.
Each unit therefore runs on a thread of a small pool, on a connection of a psycopg connection pool
of the same size: take a connection, ``BEGIN``, run ``work(tx)``, ``COMMIT``; on any exception
``ROLLBACK`` and re-raise. Reads run in ``REPEATABLE READ, READ ONLY`` transactions so a unit sees
one consistent snapshot, as SQLite's WAL readers do.

The SQL is the same named blocks as SQLite's, with ``sql/postgres/<file>.sql`` replacing the few
that PostgreSQL cannot run as written (see :mod:`gateway.store.queries`): types in schemas, the
audit head (serialised with a transaction-scoped advisory lock, so concurrent appenders take turns
and the log gets one gap-free sequence), and the outbox claim (``FOR UPDATE SKIP LOCKED``, so two
instances never claim the same job). ``:name`` parameters are translated once, at load, to
psycopg's ``%(name)s``.

Values come back as SQLite gives them: ``bytes`` for BYTEA, ``int`` for integers and integral
NUMERIC (``sum`` of BIGINT), ``float`` for DOUBLE PRECISION and fractional NUMERIC (``avg``),
``str`` for TEXT. ``bool`` parameters are sent as integers, as SQLite stores them.

One difference from SQLite a unit may notice: a failed statement aborts the whole PostgreSQL
transaction. A unit that catches a :class:`~gateway.store.QueryError` and goes on is therefore
rolled back and :meth:`PostgresStore.transact` raises :class:`~gateway.store.QueryError` rather
than report a commit that did not happen.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeGuard, TypeVar

import psycopg
import psycopg.conninfo
import psycopg_pool
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from gateway.settings import without_url_secrets

from .api import (
    CommitUncertain,
    QueryError,
    Row,
    Store,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    raisable,
)
from .queries import CORE_TABLES, LATER_TABLES, queries, schema_scripts, sql_tokens

__all__ = ["PostgresStore", "to_psycopg"]

T = TypeVar("T")

# The key of the advisory lock that schema creation holds: (constant, hash of the schema), so two
# instances starting together take turns while stores on other schemas do not wait.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(1818588019, hashtext(current_schema()))"
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"
# A commit that returns before the server has flushed it (see Store.transact's ``durable``).
_BEGIN_RELAXED = f"{_BEGIN_WRITE}; SET LOCAL synchronous_commit = off"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'                    # string literal ('' inside is a quote)
    | "(?:[^"]|"")*"                    # quoted identifier
    | \$(?P<tag>\w*)\$.*?\$(?P=tag)\$   # dollar-quoted body
    | --[^\n]*                          # line comment
    | /\*.*?\*/                         # block comment
    | ::                                # a cast, not a parameter
    | :(?P<name>[A-Za-z_]\w*)           # :name parameter
    | (?P<open>['"]|/\*|\$\w*\$)        # an opener none of the above could close
    """,
    re.VERBOSE | re.DOTALL,
)


def to_psycopg(sql: str) -> str:
    """``sql`` with its ``:name`` parameters spelled ``%(name)s`` and every ``%`` doubled.

    Literals, quoted identifiers, dollar-quoted bodies, comments and ``::`` casts keep their
    ``:``; their ``%`` are doubled too, because psycopg scans the whole text for placeholders.
    Raises ValueError on an unterminated literal, identifier or comment.
    """
    out: list[str] = []
    pos = 0
    for m in sql_tokens(_TOKEN, sql):
        out.append(sql[pos : m.start()].replace("%", "%%"))
        name = m.group("name")
        out.append(f"%({name})s" if name is not None else m.group().replace("%", "%%"))
        pos = m.end()
    out.append(sql[pos:].replace("%", "%%"))
    return "".join(out)


@functools.cache
def _statements() -> dict[str, str]:
    # Schema blocks are left out: they run without parameters, as scripts, exactly as written.
    return {k: to_psycopg(v) for k, v in queries("postgres").items() if not k.endswith(".schema")}


class _NumericLoader(Loader):
    """NUMERIC (``sum`` of BIGINT, ``avg``) as SQLite returns it: int when integral, else float."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data)
        if text.isdigit() or (text[:1] == b"-" and text[1:].isdigit()):
            return int(text)
        return float(text)


class _BoolAsIntDumper(Dumper):
    """SQLite has no boolean type: True is stored and compared as 1. Do the same here."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Row], waits: tuple[float, float]) -> None:
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.adapters.register_dumper(bool, _BoolAsIntDumper)
    _bound_waits(conn, *waits)


def _configure_readonly(conn: psycopg.Connection[Row], waits: tuple[float, float]) -> None:
    _configure(conn, waits)
    # An empty temporary table for each of LATER_TABLES an older store lacks. Where the role may
    # not make one, the queries that read the table fail instead, saying which is missing.
    have = _tables(conn)
    for name, columns in LATER_TABLES:
        if name not in have:
            try:
                conn.execute(f"CREATE TEMP TABLE {name} ({columns})".encode())
            except psycopg.Error:
                pass
    # The store refuses units that write; the server then refuses any write that got past.
    conn.execute("SET default_transaction_read_only = on")


def _bound_waits(conn: psycopg.Connection[Any], lock_s: float, idle_s: float) -> None:
    """Bound what one instance can make the others wait for. Appends take turns on an advisory
    lock: an instance frozen while holding it (a stopped process, a paused VM, a partition)
    held every other instance's appends, and so their requests, with no limit. The server now
    ends a session idle inside its transaction after ``idle_s`` (releasing its locks), and a
    wait for a lock longer than ``lock_s`` fails (StoreUnavailable: a 503 to retry). A value
    the operator set (``options=-c lock_timeout=…`` in the URL) is kept."""
    for name, seconds in (
        ("lock_timeout", lock_s),
        ("idle_in_transaction_session_timeout", idle_s),
    ):
        conn.execute(
            "SELECT set_config(%s, %s, false) WHERE current_setting(%s) = '0'",
            (name, f"{round(seconds * 1000)}ms", name),
        )


# TCP keepalives and a user timeout, unless the URL sets its own: a server gone without a FIN (a
# partition) is noticed in about a minute, not after the kernel's two hours. Keepalives probe only
# an idle connection: a statement sent into the partition (a unit's BEGIN, a commit) waited for
# the kernel's retransmissions instead, about 15 minutes, holding its request and its connection.
# TCP_USER_TIMEOUT (milliseconds) bounds how long sent data may go unacknowledged; it never cuts
# a slow statement short, whose data the server's kernel acknowledges at once.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def _connect_options(url: str, connect_timeout: int) -> dict[str, Any]:
    """The store's connection options the URL does not set itself: the URL's own win (passed as
    keywords, the store's replaced them), and libpq checks them at the first connect."""
    defaults = {"connect_timeout": connect_timeout, **_KEEPALIVES}
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:  # the connect that follows says what is wrong, without the password
        return defaults
    return {k: v for k, v in defaults.items() if k not in given}


# The digest of the schema scripts this code creates, stored in the schema once they have run:
# an open that finds it runs no DDL at all. (Run on every open, CREATE … IF NOT EXISTS took table
# locks that deadlocked with running instances' writes, and needed the CREATE right, so that a
# runtime role with only DML rights could neither serve nor run an operator's command.)
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS lienthong_schema (
    one    INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),
    digest TEXT    NOT NULL
)"""
_SCHEMA_DONE = """
INSERT INTO lienthong_schema (one, digest) VALUES (1, %(digest)s)
ON CONFLICT (one) DO UPDATE SET digest = excluded.digest"""


@functools.cache
def _schema_digest() -> str:
    return hashlib.sha256("\0".join(schema_scripts("postgres")).encode()).hexdigest()


def _up_to_date(conn: psycopg.Connection[Any]) -> bool:
    if "lienthong_schema" not in _tables(conn):
        return False
    row = conn.execute("SELECT digest FROM lienthong_schema").fetchone()
    return row is not None and row[0] == _schema_digest()


def _one_line(exc: BaseException) -> str:
    """The server's or libpq's message on one line: it runs over several ("…\nCONTEXT:  SQL
    statement …", "…\n\tIs the server running…"), and a 503's detail and a log line need one."""
    return " ".join(str(exc).split())


def _connect_error(url: str, options: dict[str, Any]) -> str | None:
    """What the server answers one more connection: None if it takes it."""
    try:
        psycopg.connect(url, autocommit=True, **options).close()
    except psycopg.Error as exc:
        return _one_line(exc)
    return None


def _failure(what: str, exc: psycopg.Error) -> StoreError:
    # OperationalError: the server is gone, shutting down, out of disk or memory; not the unit.
    # But a program limit (SQLSTATE class 54: a key too long for its index, too many columns) is
    # the unit's own doing, and would be so again on any server: a failed query, which must not
    # mark the store unavailable for everyone else.
    # A session the server ended for sitting idle in its transaction (a frozen instance: see
    # _bound_waits) is gone like a lost server, whatever SQLSTATE class says.
    unavailable = (
        isinstance(exc, psycopg.OperationalError)
        and not isinstance(exc, psycopg.errors.ProgramLimitExceeded)
    ) or isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout)
    return (StoreUnavailable if unavailable else QueryError)(f"{what}: {_one_line(exc)}")


def _rollback_quietly(conn: psycopg.Connection[Row]) -> None:
    # The unit's own exception is what the caller must see; a failed ROLLBACK (the connection
    # died) changes nothing: the server rolls back an unfinished transaction when it loses it.
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


class _Tx:
    """The :class:`~gateway.store.api.Tx` of one PostgreSQL transaction."""

    def __init__(self, conn: psycopg.Connection[Row], sql: dict[str, str]) -> None:
        self._conn = conn
        self._sql = sql
        self.failure: StoreError | None = None  # the first statement that failed, if any
        self.memo: dict[str, Any] = {}  # one transaction per unit: nothing to roll back

    def defer(self, query: str, /, **params: Any) -> None:
        # One transaction per unit here, so there is no batch to join: write at once.
        self._run(query, params)

    def _run(
        self, query: str, params: dict[str, Any], cursor: psycopg.Cursor[Any] | None = None
    ) -> psycopg.Cursor[Any]:
        try:
            sql = self._sql[query]
        except KeyError:
            raise QueryError(f"no SQL block named {query!r}") from None
        try:
            if cursor is None:
                return self._conn.execute(sql, params)
            return cursor.execute(sql, params)
        except psycopg.Error as exc:
            failure = _failure(query, exc)
            if self.failure is None:
                self.failure = failure
            raise failure from exc

    def execute(self, query: str, /, **params: Any) -> int:
        return self._run(query, params).rowcount

    def one(self, query: str, /, **params: Any) -> Row | None:
        cur = self._run(query, params)
        row: Row | None = cur.fetchone() if cur.description is not None else None
        return row

    def all(self, query: str, /, **params: Any) -> list[Row]:
        cur = self._run(query, params)
        rows: list[Row] = cur.fetchall() if cur.description is not None else []
        return rows

    def tuples(self, query: str, /, **params: Any) -> list[tuple[Any, ...]]:
        cur = self._run(query, params, self._conn.cursor(row_factory=tuple_row))
        return cur.fetchall() if cur.description is not None else []


# A unit whose statement failed only because a concurrent transaction got there first: the same
# dossier submitted twice at once (the loser's INSERT waits for the winner's COMMIT, then violates
# the key), or two units locking rows in opposite orders. Run again in a fresh transaction, the
# unit sees the winner's row and answers as a repeat does (a replay, a conflict).
_CONTENDED = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
_RACE_TRIES = 3


class _LostRace(Exception):
    """Raised by :meth:`PostgresStore._run` for a unit worth running again; ``error`` is what
    the unit raised, for the caller when no try is left."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _lost_race(failure: StoreError | None) -> TypeGuard[StoreError]:
    return failure is not None and isinstance(failure.__cause__, _CONTENDED)


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    """The tables of the schema the store's tables go in (the first of the search path)."""
    rows = (
        conn.cursor(row_factory=tuple_row)  # whatever rows the connection makes (a pool's: dicts)
        .execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        .fetchall()
    )
    return {row[0] for row in rows}


def _not_a_store(conn: psycopg.Connection[Any], why: str, then: str = "") -> StoreError:
    info = conn.info
    return StoreError(
        f"database {info.dbname!r} on {info.host} is not a lienthong store ({why}){then}"
    )


def _check_existing(conn: psycopg.Connection[Any]) -> None:
    missing = sorted(set(CORE_TABLES) - _tables(conn))
    if missing:
        raise _not_a_store(conn, f"no table {', '.join(missing)} in its schema")


def _check_not_foreign(conn: psycopg.Connection[Any]) -> None:
    """Refuse a schema that holds another application's tables and none of lienthong's: the
    gateway must not add its own beside them (as the SQLite store refuses such a file). An
    empty schema becomes a store; one with lienthong's tables is brought up to date."""
    names = _tables(conn)
    if names and not names & set(CORE_TABLES):
        shown = ", ".join(sorted(names)[:3]) + (", …" if len(names) > 3 else "")
        raise _not_a_store(
            conn,
            f"another application's tables in its schema: {shown};"
            f" no table {', '.join(sorted(CORE_TABLES))}",
            ": left as it was",
        )


class PostgresStore(Store):
    """The store on a PostgreSQL database that any number of gateway instances share.

    ``url`` is a libpq connection URI or ``key=value`` string (``postgresql://user@host/db``;
    ``?options=-csearch_path%3Dname`` selects a schema). ``pool_size`` connections serve as many
    units of work at once; ``connect_timeout`` bounds each connection attempt and the wait for a
    free connection (seconds). ``create=False``: open only a database that already holds a
    lienthong store (an operator's command), never give another one lienthong's tables.
    ``readonly``: open an existing store only to read it (implies ``create=False``): the schema
    is not touched, sessions are read-only, and :meth:`transact` raises StoreError.
    ``lock_timeout_s`` and ``idle_timeout_s`` bound the waits one instance can cause the others
    (see :func:`_bound_waits`).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        create: bool = True,
        readonly: bool = False,
        lock_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self._create = create and not readonly
        self._readonly = readonly
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.lock_timeout_s, self.idle_timeout_s = lock_timeout_s, idle_timeout_s
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Row]] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Create the schema, then connect the pool.

        Raises :class:`StoreError` if the server cannot be reached, refuses the login, or a
        schema block fails (nothing of that block is kept: each open runs in one transaction).
        """
        if self._pool is not None:
            return
        self._pool = await asyncio.to_thread(self._open)
        self._executor = ThreadPoolExecutor(self.pool_size, thread_name_prefix="lienthong-pg")

    def _open(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Row]]:
        timeout = max(2, round(self.connect_timeout))  # libpq counts whole seconds, 2 at least
        options = _connect_options(self.url, timeout)
        # One direct connection first: it reports WHY a server cannot be reached (a pool only
        # says it timed out), and it creates the schema before any unit can run.
        try:
            with psycopg.connect(self.url, autocommit=True, **options) as conn:
                with conn.transaction():
                    self._prepare(conn)
        except psycopg.Error as exc:
            detail = without_url_secrets(_one_line(exc), self.url)
            raise StoreError(f"PostgreSQL store could not open: {detail}") from exc
        configure = functools.partial(
            _configure_readonly if self._readonly else _configure,
            waits=(self.lock_timeout_s, self.idle_timeout_s),
        )
        pool: psycopg_pool.ConnectionPool[psycopg.Connection[Row]] = psycopg_pool.ConnectionPool(
            self.url,
            connection_class=psycopg.Connection[Row],
            kwargs={"autocommit": True, "row_factory": dict_row, **options},
            min_size=self.pool_size,
            max_size=self.pool_size,
            open=False,
            configure=configure,
            timeout=self.connect_timeout,
            name="lienthong",
        )
        self._fill(pool, options)
        return pool

    def _fill(
        self, pool: psycopg_pool.ConnectionPool[psycopg.Connection[Row]], options: dict[str, Any]
    ) -> None:
        """Open ``pool`` and wait until it holds its ``pool_size`` connections.

        Not ``pool.open(wait=True)``: timed out, it closes the pool first, and says only that it
        timed out (why, in a warning it logged). Here one more connection is asked for while the
        pool still holds those it got, so that a limit they reached (max_connections, the role's
        CONNECTION LIMIT) is named in the error."""
        pool.open(wait=False)
        deadline = time.monotonic() + self.connect_timeout
        while pool.get_stats().get("pool_available", 0) < self.pool_size:
            if time.monotonic() >= deadline:
                why = _connect_error(self.url, options) or "it takes one more connection now"
                pool.close()
                detail = without_url_secrets(why, self.url)
                raise StoreError(
                    f"PostgreSQL store could not fill its pool of {self.pool_size} within"
                    f" {self.connect_timeout:g} s: {detail}"
                )
            time.sleep(0.05)

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Check the schema the store goes in; create or update its tables if they are not this
        code's (only then: the lock and the DDL)."""
        if conn.execute("SELECT current_schema()").fetchone() == (None,):
            raise _not_a_store(conn, "its search_path names no schema that exists")
        if self._readonly:  # read as it is: no schema to create, no lock to take
            _check_existing(conn)
            return
        if _up_to_date(conn):
            return
        # Two instances starting together would race on CREATE … IF NOT EXISTS.
        conn.execute(_SCHEMA_LOCK)
        if not self._create:
            _check_existing(conn)
        else:
            _check_not_foreign(conn)
        if _up_to_date(conn):  # the other one did it while this one waited
            return
        for script in schema_scripts("postgres"):
            conn.execute(script.encode())  # no parameters: a script of statements
        conn.execute(_SCHEMA_TABLE)
        conn.execute(_SCHEMA_DONE, {"digest": _schema_digest()})

    async def close(self) -> None:
        """Let queued units finish, then close every connection."""
        executor, pool = self._executor, self._pool
        self._executor = self._pool = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if pool is not None:
            await asyncio.to_thread(pool.close)

    async def transact(self, work: Callable[[Any], T], *, durable: bool = True) -> T:
        """Run ``work`` in one READ COMMITTED transaction on a pool thread; return its result.
        ``durable=False``: with ``synchronous_commit = off`` (see :meth:`Store.transact`).

        Raises :class:`StoreClosed`; :class:`StoreUnavailable` when no connection could be had or
        the server failed (unreachable, shutting down, out of disk), :class:`CommitUncertain`
        when it was lost during the COMMIT (which may then have been made); :class:`QueryError` for a
        failed statement or COMMIT, and for a unit that went on after one of its statements
        failed; or whatever ``work`` raised. In every failing case the transaction is rolled back.
        On a store opened ``readonly``, raises StoreError.
        """
        if self._readonly:
            raise StoreError("the PostgreSQL store was opened read-only: it cannot be changed")
        try:
            return await self._submit(work, _BEGIN_WRITE if durable else _BEGIN_RELAXED)
        except StoreUnavailable as exc:
            self.unavailable = (time.monotonic(), str(exc))
            raise

    async def read(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` in a REPEATABLE READ, READ ONLY transaction: one snapshot throughout.

        Raises as :meth:`transact` does; a write inside ``work`` raises :class:`QueryError`.
        """
        return await self._submit(work, _BEGIN_READ)

    async def _submit(self, work: Callable[[Any], T], begin: str) -> T:
        executor = self._executor
        if executor is None:
            raise StoreClosed("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(executor, self._unit, work, begin)
        except RuntimeError as exc:  # close() shut the executor down after the check above
            raise StoreClosed("the store is closing") from exc
        return await fut

    def _unit(self, work: Callable[[Any], T], begin: str) -> T:
        for attempt in range(1, _RACE_TRIES + 1):
            try:
                return self._once(work, begin)
            except _LostRace as race:
                if attempt == _RACE_TRIES:
                    raise race.error from race.error.__cause__
            except StopIteration as exc:
                raise raisable(exc) from exc
        raise AssertionError("unreachable")

    def _once(self, work: Callable[[Any], T], begin: str) -> T:
        pool = self._pool
        if pool is None:
            raise StoreClosed("the store is closing")
        stale = False
        for attempt in (1, 2):
            if stale:
                pool.check()
            try:
                with pool.connection() as conn:
                    try:
                        conn.execute(begin)
                    except psycopg.Error as exc:
                        if attempt == 1 and conn.broken:
                            # The server dropped this idle connection (a restart, an idle
                            # timeout: then it dropped the others too). Nothing has run yet:
                            # replace every dead idle connection, then try once more.
                            stale = True
                            continue
                        raise StoreUnavailable(
                            f"could not begin a transaction: {_one_line(exc)}"
                        ) from exc
                    return self._run(conn, work)
            except psycopg_pool.PoolClosed as exc:
                raise StoreClosed("the store is closing") from exc
            except psycopg_pool.PoolTimeout as exc:
                raise StoreUnavailable(f"no PostgreSQL connection: {_one_line(exc)}") from exc
        raise StoreUnavailable("could not begin a transaction: the server closed two connections")

    def _run(self, conn: psycopg.Connection[Row], work: Callable[[Any], T]) -> T:
        tx = _Tx(conn, _statements())
        try:
            result = work(tx)
        except BaseException as exc:
            _rollback_quietly(conn)
            if _lost_race(tx.failure):
                raise _LostRace(exc) from None
            raise
        if conn.info.transaction_status == TransactionStatus.INERROR:
            # PostgreSQL aborted the transaction at the failed statement; COMMIT would quietly
            # roll back, so say so instead of returning as if the unit's writes had been kept.
            _rollback_quietly(conn)
            if _lost_race(tx.failure):
                raise _LostRace(tx.failure) from None
            raise QueryError(
                "the unit went on after a failed statement, and PostgreSQL had aborted its "
                f"transaction: nothing was committed (first failure: {tx.failure})"
            )
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            _rollback_quietly(conn)
            failure = _failure("commit failed", exc)
            if isinstance(failure, StoreUnavailable) and conn.broken:
                # An error the server sent back means it rolled back; a connection lost instead
                # of an answer may have taken a commit the server made with it.
                raise CommitUncertain(str(failure)) from exc
            raise failure from exc
        return result
