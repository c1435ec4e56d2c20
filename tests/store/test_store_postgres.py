"""What only the PostgreSQL store has to show: its schema matches SQLite's, every named block runs
there, connection failures are StoreErrors, an aborted transaction is never reported as
committed, and the outbox keeps the server's clock, not the gateways'."""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.api import TransientError
from gateway.outbox import RetryPolicy, Worker, enqueue, get_job
from gateway.outbox.testing import ScriptedHandler
from gateway.store import (
    CommitUncertain,
    PostgresStore,
    QueryError,
    Row,
    SQLiteStore,
    StoreError,
    StoreUnavailable,
    Tx,
    open_store,
)
from gateway.store.postgres import _statements
from tests.store.conftest import admin

pytestmark = pytest.mark.postgres

# SQLite's declared type → the PostgreSQL type its port must use (SQLite's INTEGER is 64-bit,
# PostgreSQL's REAL is 32-bit: both would lose data if copied as written).
TYPES = {"INTEGER": "bigint", "TEXT": "text", "BLOB": "bytea", "REAL": "double precision"}


async def test_open_store_gives_a_postgres_store(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    async with store:
        assert await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1")) == 1
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore(url, pool_size=0)


async def test_a_unit_that_swallows_a_failure_is_not_reported_committed(
    pg_schema: tuple[str, str],
) -> None:
    def swallow(tx: Tx) -> str:
        tx.execute("kv.put", k="before", v="1")
        try:
            tx.execute("kv.put", k="bad", v=None)
        except QueryError:
            pass  # fine on SQLite; PostgreSQL has aborted the whole transaction
        return "done"

    async with PostgresStore(pg_schema[0]) as store:
        with pytest.raises(QueryError, match=r"nothing was committed.*kv\.put"):
            await store.transact(swallow)
        assert await store.read(lambda tx: tx.one("kv.get", k="before")) is None
        assert await store.transact(lambda tx: tx.execute("kv.put", k="after", v="1")) == 1


async def test_a_key_too_long_for_its_index_is_a_bad_query_not_an_outage(
    pg_schema: tuple[str, str],
) -> None:
    # PostgreSQL reports it as an OperationalError (program limit exceeded); it is the unit's
    # own input, and must not make the store (and /readyz) unavailable for everyone.
    async with PostgresStore(pg_schema[0]) as store:
        with pytest.raises(QueryError, match="index row"):
            await store.transact(lambda tx: tx.execute("kv.put", k=secrets.token_hex(6000), v="1"))
        assert store.unavailable is None
        assert await store.transact(lambda tx: tx.execute("kv.put", k="after", v="1")) == 1


async def test_an_unreachable_server_is_a_store_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    with pytest.raises(StoreError, match="could not open"):
        await store.open()
    await store.close()  # nothing to close, and no error


async def test_a_statement_the_server_never_acknowledges_fails_within_a_minute(
    pg_schema: tuple[str, str],
) -> None:
    """Found by probing a gateway across a network partition (a veth link taken down): keepalives
    probe only an idle connection, so a statement sent into the partition (a unit's BEGIN, a
    lookup's audit commit) waited for the kernel's retransmissions, about 15 minutes, holding its
    request and its pool connection (a 150 s partition: the statement answered after 150.5 s).
    TCP_USER_TIMEOUT bounds the time sent data may go unacknowledged: every connection of the
    store carries it, and a URL's own tcp_user_timeout (as its keepalives) wins."""
    url, _ = pg_schema

    def parameters(tx: Any) -> dict[str, str]:
        return dict(tx._conn.info.get_parameters())

    async with PostgresStore(url, pool_size=1) as store:
        unit = await store.transact(parameters)
        read = await store.read(parameters)
    assert unit["tcp_user_timeout"] == read["tcp_user_timeout"] == "60000"
    assert unit["keepalives_idle"] == "30"
    sep = "&" if "?" in url else "?"
    async with PostgresStore(f"{url}{sep}tcp_user_timeout=5000", pool_size=1) as store:
        assert (await store.transact(parameters))["tcp_user_timeout"] == "5000"


async def test_a_urls_own_connect_timeout_is_kept(pg_schema: tuple[str, str]) -> None:
    """Found by probing: the store's own connect_timeout (10 s) replaced the URL's, silently, so
    an operator's ?connect_timeout=30 for a distant server was dropped, and even one libpq cannot
    read (?connect_timeout=abc) started a gateway. The URL's is now kept, and checked by libpq."""
    url, _ = pg_schema
    sep = "&" if "?" in url else "?"

    def parameters(tx: Any) -> dict[str, str]:
        return dict(tx._conn.info.get_parameters())

    async with PostgresStore(f"{url}{sep}connect_timeout=7", pool_size=1) as store:
        assert (await store.transact(parameters))["connect_timeout"] == "7"
    async with PostgresStore(url, pool_size=1) as store:
        assert (await store.transact(parameters))["connect_timeout"] == "10"
    store = PostgresStore(f"{url}{sep}connect_timeout=abc", pool_size=1)
    with pytest.raises(StoreError, match=r"could not open: .*connect_timeout"):
        await store.open()


async def test_a_search_path_without_a_schema_is_a_store_error(postgres_server: str) -> None:
    sep = "&" if "?" in postgres_server else "?"
    url = f"{postgres_server}{sep}options=-csearch_path%3Dt_no_such_schema"
    store = PostgresStore(url)
    with pytest.raises(StoreError, match="search_path names no schema that exists"):
        await store.open()


async def test_terminated_connections_are_replaced(pg_schema: tuple[str, str]) -> None:
    url, name = pg_schema
    async with PostgresStore(url, pool_size=2) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
        with psycopg.connect(url, autocommit=True, application_name="killer") as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] == 2  # both idle pool connections
        assert await store.transact(lambda tx: tx.execute("kv.put", k="b", v="2")) == 1
        assert await store.read(lambda tx: tx.one("kv.count")) == {"n": 2}


async def test_a_server_lost_mid_unit_is_unavailable_not_a_bad_query(
    pg_schema: tuple[str, str],
) -> None:
    """A client told the store is unavailable retries later; told its query failed, it would not."""
    url, _ = pg_schema
    async with PostgresStore(url, pool_size=1) as store:

        def cut_off(tx: Any) -> None:
            pid = tx._conn.info.backend_pid  # this unit's own server process
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            tx.execute("kv.put", k="lost", v="1")

        assert store.unavailable is None
        with pytest.raises(StoreUnavailable):
            await store.transact(cut_off)
        assert store.unavailable is not None and "kv.put" in store.unavailable[1]
        assert await store.transact(lambda tx: tx.execute("kv.put", k="kept", v="1")) == 1
        assert await store.read(lambda tx: tx.all("kv.count")) == [{"n": 1}]


def _sqlite_shape(path: Path) -> tuple[dict[str, list[tuple[str, str, bool]]], set[str]]:
    conn = sqlite3.connect(path)
    try:
        tables: dict[str, list[tuple[str, str, bool]]] = {}
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for (table,) in names:
            cols = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            tables[table] = sorted(
                (c[1], TYPES.get(c[2].upper(), f"unmapped {c[2]}"), bool(c[3] or c[5]))
                for c in cols
            )
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
        return tables, indexes
    finally:
        conn.close()


async def test_the_schema_is_sqlites_with_postgres_types(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, name = pg_schema
    async with SQLiteStore(tmp_path / "s.db"):
        pass
    want_tables, want_indexes = _sqlite_shape(tmp_path / "s.db")
    async with PostgresStore(url):
        pass
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'NO'"
            " FROM information_schema.columns WHERE table_schema = %s",
            (name,),
        ).fetchall()
        got_indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s"
                " AND indexname NOT LIKE '%%\\_pkey' AND indexname NOT LIKE '%%\\_key'",
                (name,),
            )
        }
    got_tables: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, data_type, not_null in rows:
        got_tables.setdefault(table, []).append((column, data_type, not_null))
    # PostgreSQL's own: the digest of the schema scripts that made it (see PostgresStore._prepare)
    assert sorted(got_tables.pop("lienthong_schema")) == [
        ("digest", "text", True),
        ("one", "integer", True),
    ]
    assert {t: sorted(c) for t, c in got_tables.items()} == want_tables
    assert got_indexes == want_indexes


async def test_every_named_block_prepares_on_postgres(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    async with PostgresStore(url):
        pass
    failures = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i, (key, sql) in enumerate(sorted(_statements().items())):
            numbers: dict[str, str] = {}

            def number(m: re.Match[str], numbers: dict[str, str] = numbers) -> str:
                return numbers.setdefault(m.group(1), f"${len(numbers) + 1}")

            # Server-side PREPARE types every parameter from its context, as a bound execute
            # with a None or a str (sent untyped) must: a block that cannot be typed fails here.
            text = re.sub(r"%\((\w+)\)s", number, sql).replace("%%", "%")
            try:
                conn.execute(f"PREPARE p{i} AS {text}".encode())
                conn.execute(f"DEALLOCATE p{i}".encode())
            except psycopg.Error as exc:
                failures.append(f"{key}: {str(exc).strip()}")
    assert failures == []


async def test_reads_never_wait_for_the_audit_lock(pg_schema: tuple[str, str]) -> None:
    # The checkpointer reads audit.head in a read-only unit while appenders hold the lock.
    from gateway.audit import AuditEvent, append

    url, _ = pg_schema
    async with PostgresStore(url, pool_size=3) as store:
        await store.transact(lambda tx: append(tx, AuditEvent(action="one")))
        holding, release = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def appender(tx: Tx) -> int:
            seq = append(tx, AuditEvent(action="two"))  # now holds the audit lock
            loop.call_soon_threadsafe(holding.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(60)
            return seq

        pending = asyncio.ensure_future(store.transact(appender))
        await holding.wait()
        head = await store.read(lambda tx: tx.one("audit.head"))
        assert head is not None and head["seq"] == 0  # the uncommitted entry is not visible
        release.set()
        assert await pending == 1


def _document_for_b(tx: Tx, i: int) -> None:
    tx.execute(
        "documents.insert",
        id=f"D{i}",
        document_id=f"doc{i}",
        sender="A",
        doc_type=0,
        package_sha256="x",
        forward_sha256=None,
        size=1,
        media_type="application/xml",
        subject="",
        target=None,
        received_at=f"2026-01-01T00:00:0{i}Z",
        receipt=b"r",
        meta="{}",
    )
    tx.execute("documents.add_delivery", document=f"D{i}", recipient="B", mode="pull")


async def test_an_inbox_cursor_never_passes_a_delivery_committed_late(
    pg_schema: tuple[str, str],
) -> None:
    """PostgreSQL gives identity values at INSERT: a delivery that took seq 1 but commits after
    one that took seq 2 must not be skipped by a recipient paging with ``after``. Transactions
    adding deliveries take turns (documents.add_delivery), so the second waits for the first."""
    hold, inserted = threading.Event(), threading.Event()

    def first(tx: Tx) -> None:
        _document_for_b(tx, 1)  # the lower seq …
        inserted.set()
        hold.wait(30)  # … committed last, if the second does not wait for it

    async with PostgresStore(pg_schema[0]) as store:
        one = asyncio.create_task(store.transact(first))
        assert await asyncio.to_thread(inserted.wait, 30)
        two = asyncio.create_task(store.transact(lambda tx: _document_for_b(tx, 2)))

        def advisory_waiters() -> int:
            with psycopg.connect(pg_schema[0]) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND objid::bigint = (hashtext(%s)::bigint + 4294967296) %% 4294967296",
                    (pg_schema[1],),
                ).fetchone()
            return int(row[0]) if row else 0

        # Until the second unit has either committed or is seen waiting for its turn.
        for _ in range(600):
            if two.done() or await asyncio.to_thread(advisory_waiters):
                break
            await asyncio.sleep(0.05)

        def inbox(after: int) -> Callable[[Tx], list[Row]]:
            return lambda tx: tx.all(
                "documents.inbox", recipient="B", after=after, limit=100, subject_chars=2001
            )

        page = await store.read(inbox(0))
        cursor = page[-1]["seq"] if page else 0
        hold.set()
        await one
        await two
        seen = [r["id"] for r in page + await store.read(inbox(cursor))]
        assert sorted(seen) == ["D1", "D2"]


async def test_an_instance_frozen_holding_the_audit_turn_holds_the_others_a_bounded_time(
    pg_schema: tuple[str, str],
) -> None:
    """Found by probing two gateways on one schema: one stopped (SIGSTOP) while its transaction
    held the audit turn, and every append of the other, so every request, waited with no limit.
    Now a wait for the turn fails after lock_timeout_s (StoreUnavailable: a 503 to retry), and
    the server ends the frozen session after idle_timeout_s, releasing the turn."""
    from gateway.audit import AuditEvent, append

    url, _ = pg_schema
    frozen = PostgresStore(url, pool_size=1, idle_timeout_s=1.0)
    other = PostgresStore(url, pool_size=1, lock_timeout_s=0.2)
    async with frozen, other:
        await other.transact(lambda tx: append(tx, AuditEvent(action="before")))
        holding = threading.Event()
        thaw = threading.Event()

        def freeze(tx: Tx) -> None:
            append(tx, AuditEvent(action="frozen"))  # holds the audit turn from here
            holding.set()
            thaw.wait(30)  # the process stopped: its session sits idle in its transaction
            append(tx, AuditEvent(action="after the thaw"))

        stuck = asyncio.ensure_future(frozen.transact(freeze))
        await asyncio.to_thread(holding.wait, 30)
        with pytest.raises(StoreUnavailable, match="lock timeout") as waited:
            await other.transact(lambda tx: append(tx, AuditEvent(action="waits")))
        # One line, as a 503's detail and a log line need it: the server's text went on with
        # "\nCONTEXT:  SQL statement …\nPL/pgSQL function lienthong_audit_head() line 4 …".
        assert "\n" not in str(waited.value) and "CONTEXT: " in str(waited.value)
        appended = None
        for _ in range(200):  # bounded: the server ends the frozen session after a second
            try:
                appended = await other.transact(lambda tx: append(tx, AuditEvent(action="on")))
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        assert appended == 1  # the frozen one's entry was never committed
        thaw.set()
        with pytest.raises(StoreUnavailable):  # its session is gone: nothing of it was kept
            await stuck


async def test_a_role_without_create_rights_runs_an_existing_store(
    pg_schema: tuple[str, str],
) -> None:
    """Every open ran the schema scripts, which need the CREATE right (PostgreSQL checks it
    before IF NOT EXISTS): a runtime role with only DML rights, the tables made by another, could
    neither serve nor run an operator's command. An up-to-date schema is now opened as it is."""
    url, schema = pg_schema
    async with PostgresStore(url):  # the owner makes the tables
        pass
    role = f"{schema}_app"
    admin(f'CREATE ROLE "{role}" LOGIN')
    try:
        admin(
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}";'
            f' GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}";'
            f' GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}";'
            f' GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO "{role}"'
        )
        as_role = re.sub(r"//[^@/]*@", f"//{role}@", url)
        async with PostgresStore(as_role) as store:
            await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
            assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
    finally:
        admin(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


async def test_a_pool_the_server_will_not_fill_says_why(pg_schema: tuple[str, str]) -> None:
    """Found by probing: a gateway whose pool_size the server's connection limits could not
    serve stopped with 'could not fill its pool: pool initialization incomplete after 10.0 sec',
    the reason ('sorry, too many clients already') only in a warning logged before it. The
    one-line error now ends with what the server answers a connection."""
    url, schema = pg_schema
    async with PostgresStore(url):  # the owner makes the tables
        pass
    role = f"{schema}_one"
    admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
    try:
        admin(
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}";'
            f' GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}";'
            f' GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO "{role}"'
        )
        as_role = re.sub(r"//[^@/]*@", f"//{role}@", url)
        store = PostgresStore(as_role, pool_size=2, connect_timeout=2)
        with pytest.raises(StoreError, match="could not fill its pool of 2") as refused:
            await store.open()
        message = str(refused.value)
        assert "too many connections for role" in message and "\n" not in message
    finally:
        admin(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


# -- the outbox keeps the server's clock ---------------------------------------------------------
# Gateways sharing the database read each other's leases and due times: written and compared on
# each instance's own clock, one whose clock ran ahead took over the jobs the others were running.


def _skewed(seconds: float) -> Callable[[], float]:
    """A gateway's clock, ``seconds`` off the server's (the test's host is the server's)."""
    return lambda: time.time() + seconds


def _server_time(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT date_part('epoch', statement_timestamp())").fetchone()
    assert row is not None
    return float(row[0])


@pytest.mark.parametrize(
    ("holder", "other"), [(0.0, 60.0), (-60.0, 0.0)], ids=["other-ahead", "holder-behind"]
)
async def test_a_running_job_stays_its_holders_whatever_the_gateways_clocks(
    pg_schema: tuple[str, str], holder: float, other: float
) -> None:
    """Two gateways 60 s apart, 30 s leases: while A runs a job (under a lease that is valid by
    the server's clock), B does not take it, and A's result is the one recorded, once."""
    url, _ = pg_schema
    gate = asyncio.Event()
    held, taken = ScriptedHandler(gate=gate), ScriptedHandler()
    async with PostgresStore(url) as a, PostgresStore(url) as b:
        wa = Worker(a, {"registry": held}, clock=_skewed(holder), owner="A", lease=30.0)
        wb = Worker(b, {"registry": taken}, clock=_skewed(other), owner="B", lease=30.0)
        job_id = await a.transact(
            lambda tx: enqueue(tx, kind="registry", key="k1", payload={}, now=wa.clock())
        )
        running = asyncio.create_task(wa.run_once())
        await held.started.wait()  # A has claimed the job and is calling the registry
        assert await wb.run_once() == 0
        gate.set()
        assert await running == 1
        job = await a.read(lambda tx: get_job(tx, job_id))
        assert job is not None and (job.state, job.attempts) == ("done", 1)
        assert held.recorded == [(job_id, 1)] and taken.runs == []


@pytest.mark.parametrize(
    ("retrier", "other"), [(0.0, 3600.0), (-3600.0, 0.0)], ids=["other-ahead", "retrier-behind"]
)
async def test_a_retried_job_is_due_after_its_delay_on_the_servers_clock(
    pg_schema: tuple[str, str], retrier: float, other: float
) -> None:
    """A retry 600 s later is 600 s later on the server's clock, whichever gateway retried it:
    not due before for a gateway an hour ahead, nor cut short by one an hour behind."""
    url, _ = pg_schema
    handler = ScriptedHandler(TransientError("civil_status", "503 busy"))
    policy = RetryPolicy(max_attempts=4, base_delay=600.0, max_delay=600.0, rng=lambda: 0.0)
    async with PostgresStore(url) as a, PostgresStore(url) as b:
        wa = Worker(a, {"registry": handler}, clock=_skewed(retrier), policy=policy, owner="A")
        wb = Worker(b, {"registry": handler}, clock=_skewed(other), policy=policy, owner="B")
        job_id = await a.transact(
            lambda tx: enqueue(tx, kind="registry", key="k1", payload={}, now=wa.clock())
        )
        before = _server_time(url)
        assert await wa.run_once() == 1  # fails: retry in 600 s
        after = _server_time(url)
        job = await a.read(lambda tx: get_job(tx, job_id))
        assert job is not None and (job.state, job.attempts) == ("pending", 1)
        assert before <= job.updated_at <= after
        assert job.run_after == job.updated_at + 600.0
        assert await wb.run_once() == 0
        assert await wa.run_once() == 0
        # 600 s pass on the server (the job's time moves back): due now, for the gateway behind too.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE outbox_jobs SET run_after = run_after - 600")
        assert await wa.run_once() == 1
        job = await a.read(lambda tx: get_job(tx, job_id))
        assert job is not None and (job.state, job.attempts) == ("done", 2)


async def test_every_time_the_outbox_writes_is_the_servers(pg_schema: tuple[str, str]) -> None:
    """Whatever ``now`` a gateway gives (an hour ahead here), a job's times are the server's."""
    url, _ = pg_schema
    now = float(int(time.time()) + 3600)
    w = "w/1"

    def work(tx: Tx) -> list[Row | None]:
        enqueue(tx, kind="k", key="later", payload={}, now=now, run_after=now + 600)
        enqueue(tx, kind="k", key="done", payload={}, now=now)
        enqueue(tx, kind="k", key="dead", payload={}, now=now)
        claimed = tx.all("outbox.claim", owner=w, now=now, lease=30, limit=5)
        assert [r["id"] for r in claimed] == [2, 3]  # job 1 is due 600 s on, by the server's clock
        tx.execute("outbox.renew", id=2, owner=w, now=now, lease=60)
        renewed = tx.one("outbox.get", id=2)
        tx.execute("outbox.complete", id=2, owner=w, now=now)
        tx.execute("outbox.bury", id=3, owner=w, error="no", now=now)
        buried = tx.one("outbox.get", id=3)
        tx.execute("outbox.replay", id=3, now=now)
        done, replayed = tx.one("outbox.get", id=2), tx.one("outbox.get", id=3)
        return [tx.one("outbox.get", id=1), claimed[0], renewed, done, buried, replayed]

    async with PostgresStore(url) as store:
        before = _server_time(url)
        rows = await store.transact(work)
        after = _server_time(url)
    assert None not in rows
    queued, claimed, renewed, done, buried, replayed = [r for r in rows if r is not None]

    def server(t: float) -> bool:
        return before <= t <= after

    assert server(queued["created_at"]) and queued["updated_at"] == queued["created_at"]
    assert queued["run_after"] == queued["created_at"] + 600
    assert server(claimed["updated_at"]) and claimed["lease_until"] == claimed["updated_at"] + 30
    assert server(renewed["lease_until"] - 60)
    assert server(done["updated_at"]) and done["state"] == "done"
    assert server(buried["updated_at"]) and buried["state"] == "dead"
    assert server(replayed["run_after"]) and replayed["updated_at"] == replayed["run_after"]


async def test_a_commit_whose_connection_is_lost_may_have_committed(
    pg_schema: tuple[str, str],
) -> None:
    """The server ends the session during COMMIT (here a deferred trigger terminates it; a
    failover or restart does the same): the client cannot know whether the commit was made, so
    it is told so (CommitUncertain), not that nothing was kept. A failure before the COMMIT stays
    a plain StoreUnavailable: the server rolls back a transaction it loses."""
    url, name = pg_schema
    async with PostgresStore(url, pool_size=1) as store:
        admin(
            f'CREATE FUNCTION "{name}".cut_off() RETURNS trigger LANGUAGE plpgsql AS $$'
            " BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;"
            f' CREATE CONSTRAINT TRIGGER cut_off AFTER INSERT ON "{name}".kv'
            f' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "{name}".cut_off()'
        )
        with pytest.raises(CommitUncertain) as lost:
            await store.transact(lambda tx: tx.execute("kv.put", k="lost", v="1"))
        assert isinstance(lost.value, StoreUnavailable)  # a 503 to retry, as before
        assert store.unavailable is not None and "commit" in store.unavailable[1]
        admin(f'DROP TRIGGER cut_off ON "{name}".kv')

        def cut_off(tx: Any) -> None:  # lost before the COMMIT: certainly not committed
            tx.execute("kv.put", k="early", v="1")
            tx.execute("kv.count")
            pid = tx._conn.info.backend_pid
            with psycopg.connect(url, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            tx.execute("kv.put", k="late", v="1")

        with pytest.raises(StoreUnavailable) as early:
            await store.transact(cut_off)
        assert not isinstance(early.value, CommitUncertain)
