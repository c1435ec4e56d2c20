import asyncio
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditEvent, append, decode_entry, verify_chain
from gateway.store import QueryError, SQLiteStore, StoreClosed, StoreUnavailable, open_store
from gateway.store import sqlite as sqlite_store


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
    # Submitted in one turn of the loop, they reach the writer in one hand-over of at most
    # max_batch (512) units, and share one commit.
    assert store.commits == 1


async def test_a_turn_of_the_loop_is_handed_over_in_batches_of_max_batch(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "m.db", max_batch=100) as store:
        await asyncio.gather(
            *(store.transact(lambda tx: tx.execute("kv.count")) for _ in range(250))
        )
        assert (store.units, store.commits) == (250, 3)


async def test_units_submitted_just_before_close_are_committed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    pending = [
        asyncio.ensure_future(store.transact(lambda tx, i=i: tx.execute("kv.put", k=str(i), v="x")))
        for i in range(3)
    ]
    await asyncio.sleep(0)  # the three units are in this turn's hand-over, not yet the writer's
    await store.close()
    assert [p.result() for p in pending] == [1, 1, 1]
    async with SQLiteStore(tmp_path / "c.db") as again:
        assert await again.read(lambda tx: tx.one("kv.count")) == {"n": 3}


async def test_unknown_query_and_sql_errors_are_query_errors(store: SQLiteStore) -> None:
    with pytest.raises(QueryError, match="no SQL block"):
        await store.transact(lambda tx: tx.execute("kv.nope"))
    with pytest.raises(QueryError, match=r"kv\.put"):
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v=None))  # NOT NULL


async def test_a_transaction_sqlite_rolled_back_fails_its_whole_batch(store: SQLiteStore) -> None:
    """SQLite rolls the whole transaction back on some errors (an I/O error, at times a full
    disk). The units before the failing one are gone with it; the ones after must not run in
    autocommit. Here a unit stands in for SQLite by rolling the transaction back itself."""

    def lost(tx: Any) -> None:
        tx._conn.execute("ROLLBACK")
        raise OSError("disk I/O error")

    results = await asyncio.gather(
        store.transact(lambda tx: tx.execute("kv.put", k="before", v="1")),
        store.transact(lost),
        store.transact(lambda tx: tx.execute("kv.put", k="after", v="1")),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [StoreUnavailable] * 3, results
    assert store.unavailable is not None and "disk I/O error" in store.unavailable[1]
    assert await store.read(lambda tx: tx.one("kv.count")) == {"n": 0}
    assert await store.transact(lambda tx: tx.execute("kv.put", k="next", v="1")) == 1


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


# --- the writer's batching under load (SQLiteStore._take_batch) -------------------------------
# Driven directly, with the arrival rate set by hand: no clocks are asserted, only what each
# batch holds, and a hang (a wait that should not happen) fails by the thread's join timeout.


def _take(store: SQLiteStore, first: list[object]) -> tuple[list[object], bool]:
    result: list[tuple[list[object], bool]] = []
    worker = threading.Thread(target=lambda: result.append(store._take_batch(first)))  # type: ignore[arg-type]
    worker.start()
    worker.join(timeout=30)
    assert result, "the writer waited when it should not have"
    return result[0]  # type: ignore[return-value]


def test_a_quiet_writer_commits_what_is_queued_at_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db", linger_s=3600)  # a wait would hang the test
    for units in (["b"], ["c", "d"]):
        store._queue.put(units)  # type: ignore[arg-type]
    assert _take(store, ["a"]) == (["a", "b", "c", "d"], False)


def test_a_busy_writer_waits_for_the_units_due(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "b.db", linger_s=3600)
    store._rate = 3 / 3600  # three more units due within the linger: the batch waits for them

    def arrive() -> None:
        for unit in ("b", "c", "d"):
            time.sleep(0.01)
            store._queue.put([unit])  # type: ignore[list-item]

    threading.Thread(target=arrive).start()
    assert _take(store, ["a"]) == (["a", "b", "c", "d"], False)


def test_a_busy_writer_stops_waiting_at_the_deadline_or_on_close(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d.db", linger_s=0.05)
    store._rate = 1e6  # far more due than will come: the deadline ends the wait
    store._queue.put(["b"])  # type: ignore[list-item]
    assert _take(store, ["a"]) == (["a", "b"], False)
    store = SQLiteStore(tmp_path / "e.db", linger_s=3600)
    store._rate = 1e6
    store._queue.put(None)  # close() while the writer waits: the batch goes out, then it stops
    assert _take(store, ["a"]) == (["a"], True)


async def test_the_writer_measures_the_arrival_rate(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "r.db", linger_s=0.001) as store:
        assert store._rate == 0
        for _ in range(3):
            await asyncio.gather(
                *(store.transact(lambda tx: tx.execute("kv.count")) for _ in range(200))
            )
            await asyncio.sleep(0.06)  # past the rate's 50 ms window
        await store.transact(lambda tx: tx.execute("kv.count"))
        assert store._rate > 0


# --- how few statements a commit takes (each call into sqlite3 is a GIL hand-off) -------------


def _append(action: str) -> Any:
    return lambda tx: append(tx, AuditEvent(action=action))


def _calls(traced: list[str]) -> list[str]:
    """The statements of a trace. Each row an INSERT writes runs audit_discloses' trigger, within
    the statement's own step, and sqlite3 traces each such run as the statement again."""
    return [s for i, s in enumerate(traced) if not i or s != traced[i - 1]]


async def test_a_batch_of_audit_appends_is_one_insert(store: SQLiteStore) -> None:
    """After the first commit has read the audit head, a batch of appends alone (lookups) is a
    look at data_version and one multi-row INSERT in autocommit: no BEGIN, no read of the head,
    no COMMIT, no row by row."""
    statements: list[str] = []
    await store.transact(lambda tx: tx._conn.set_trace_callback(statements.append))
    await store.transact(_append("test.first"))  # reads the head: a transaction of its own
    assert any(s.startswith("SELECT seq, chain_hash FROM audit_events") for s in statements)
    statements.clear()
    seqs = await asyncio.gather(*(store.transact(_append(f"test.{i}")) for i in range(150)))
    assert seqs == list(range(1, 151))
    # 150 rows in chunks of 64: three INSERTs, so a BEGIN and a COMMIT around them.
    assert [s.split(None, 1)[0] for s in _calls(statements)] == [
        "PRAGMA", "BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"
    ]  # fmt: skip
    statements.clear()
    seqs = await asyncio.gather(*(store.transact(_append("test.more")) for _ in range(5)))
    assert seqs == [151, 152, 153, 154, 155]
    calls = _calls(statements)
    assert calls[0] == "PRAGMA data_version" and len(calls) == 2
    assert calls[1].startswith("INSERT INTO audit_events")
    # Lookups whose answers disclose people (their parents) too: their index rows are written
    # by the same INSERT (its trigger), not by statements of their own.
    statements.clear()
    disclosing = [
        AuditEvent(action="lookup.citizen", discloses={f"{i:064x}": ["father"]}) for i in range(5)
    ]
    await asyncio.gather(*(store.transact(lambda tx, e=e: append(tx, e)) for e in disclosing))
    calls = _calls(statements)
    assert calls[0] == "PRAGMA data_version" and len(calls) == 2
    assert calls[1].startswith("INSERT INTO audit_events")
    indexed = await store.read(lambda tx: tx.tuples("audit.verify_range", start=156, stop=161))
    assert [row[-1] for row in indexed] == [f'["{i:064x}"]' for i in range(5)]
    report = await verify_chain(store)
    assert report.ok and report.entries == 161, report.describe()
    entries = await store.read(lambda tx: tx.tuples("audit.range", start=0, stop=156))
    assert [decode_entry(e)["action"] for _, e, _, _ in entries[1:151]] == [
        f"test.{i}" for i in range(150)
    ]


async def test_a_unit_failing_before_any_statement_fails_alone(store: SQLiteStore) -> None:
    await store.transact(
        _append("test.first")
    )  # the head is known: the next batch begins no transaction

    def fails(tx: Any) -> None:
        raise ValueError("refused before touching the store")

    results = await asyncio.gather(
        store.transact(_append("test.a")),
        store.transact(fails),
        store.transact(_append("test.b")),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)
    assert (await verify_chain(store)).entries == 3


async def test_appends_alternating_with_another_connection_keep_one_chain(tmp_path: Path) -> None:
    """An operator's command appends, or a test truncates the log, through a connection of its
    own while the gateway runs: the head the gateway carried from its last commit is then stale,
    and its next batch runs on the head the store holds."""
    async with SQLiteStore(tmp_path / "two.db") as a, SQLiteStore(tmp_path / "two.db") as b:
        seqs = []
        for i in range(6):
            seqs.append(await (a if i % 2 == 0 else b).transact(_append(f"test.{i}")))
        assert seqs == list(range(6))
        conn = sqlite3.connect(a.path)
        with conn:
            conn.execute("DELETE FROM audit_events WHERE seq >= 4")
        conn.close()
        assert await a.transact(_append("test.after-truncation")) == 4

        # Another connection appends after the batch looked at data_version, before its INSERT:
        # the INSERT collides, and the batch runs again on the new head.
        loop = asyncio.get_running_loop()
        runs = []

        def races(tx: Any) -> int:
            runs.append(1)
            if len(runs) == 1:
                asyncio.run_coroutine_threadsafe(b.transact(_append("test.b")), loop).result(10)
            return append(tx, AuditEvent(action="test.a"))

        assert await a.transact(races) == 6 and len(runs) == 2
        report = await verify_chain(b)
        assert report.ok and report.entries == 7, report.describe()


# --- commits made with durable=False: synced by the writer, not by the commit ----------------


class _Syncs:
    """Records what the store's os.fsync syncs (the file each descriptor names)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[str] = []
        self.done = threading.Event()
        real = os.fsync

        def fsync(fd: int) -> None:
            real(fd)
            self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
            self.done.set()

        monkeypatch.setattr(sqlite_store.os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd (Linux)")
async def test_the_writer_syncs_the_wal_after_a_relaxed_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _Syncs(monkeypatch)
    async with SQLiteStore(tmp_path / "r.db") as store:
        assert await store.transact(_append("test.lookup"), durable=False) == 0
        # Nothing else arrives: the writer's wait for work runs out and it syncs the WAL.
        assert await asyncio.to_thread(syncs.done.wait, 30)
        assert syncs.files == [str((tmp_path / "r.db-wal").resolve())]
        assert not store._wal.dirty
        await store.transact(_append("test.accepted"))  # durable: SQLite syncs, not the writer
        assert syncs.files == [str((tmp_path / "r.db-wal").resolve())]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd (Linux)")
async def test_a_durable_commit_or_closing_syncs_what_relaxed_commits_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "RELAXED_SYNC_S", 3600.0)  # the writer never gets to it
    syncs = _Syncs(monkeypatch)
    async with SQLiteStore(tmp_path / "d.db") as store:
        await store.transact(_append("test.lookup"), durable=False)
        assert store._wal.dirty
        await store.transact(_append("test.accepted"))  # FULL syncs every frame before it
        assert not store._wal.dirty and syncs.files == []
        await store.transact(_append("test.lookup"), durable=False)
        assert store._wal.dirty
    assert syncs.files == [str((tmp_path / "d.db-wal").resolve())]  # synced on close


_CRASH = """
import asyncio, os, signal, sys
from gateway.audit import AuditEvent, append
from gateway.store import SQLiteStore, sqlite

sqlite.RELAXED_SYNC_S = 3600.0  # never synced: only written to the WAL

async def main():
    store = SQLiteStore(sys.argv[1])
    await store.open()
    for i in range(20):
        await store.transact(lambda tx, i=i: append(tx, AuditEvent(action=f"test.{i}")), durable=False)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_relaxed_commits_survive_a_crash_of_the_process(tmp_path: Path) -> None:
    """What durable=False promises: once transact returned, a killed gateway loses nothing."""
    path = tmp_path / "crash.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASH, str(path), cwd=str(Path(__file__).parents[2])
    )
    assert await proc.wait() == -signal.SIGKILL
    async with SQLiteStore(path) as store:
        report = await verify_chain(store)
        assert report.ok and report.entries == 20, report.describe()
        entries = await store.read(lambda tx: tx.tuples("audit.range", start=0, stop=20))
        assert [decode_entry(e)["action"] for _, e, _, _ in entries] == [
            f"test.{i}" for i in range(20)
        ]


# --- checkpoints: the WAL keeper's, never a commit's ------------------------------------------


def _in_database_file(path: Path) -> int | None:
    """Audit entries the database file itself holds, without its WAL (immutable=1 ignores it).

    None while a checkpoint is copying pages into the file: immutable=1 tells SQLite nothing
    changes it, so a read torn by that copy finds a malformed image."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_events").fetchone()[0])
    except sqlite3.OperationalError as exc:
        assert "no such table" in str(exc)  # even the schema is only in the WAL yet
        return 0
    except sqlite3.DatabaseError as exc:
        assert "malformed" in str(exc)
        return None
    finally:
        conn.close()


def _many(n: int) -> Any:
    def work(tx: Any) -> None:
        for i in range(n):
            append(tx, AuditEvent(action="test.bulk", dossier=f"D-{i:06d}", detail="x" * 400))

    return work


async def test_no_commit_checkpoints_the_wal_even_past_sqlites_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's automatic checkpoint (at 1,000 pages) ran inside the commit that crossed it: that
    commit, and every answer waiting on it, waited for the copy and its fsyncs."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_S", 3600.0)  # the keeper never gets to it
    path = tmp_path / "c.db"
    async with SQLiteStore(path) as store:
        for _ in range(8):
            await store.transact(_many(1000))
        assert (tmp_path / "c.db-wal").stat().st_size > 1000 * 4096  # past the threshold
        assert _in_database_file(path) == 0  # all of it still only in the WAL
    assert _in_database_file(path) == 8000  # the writer's close checkpointed it


async def test_the_wal_keeper_checkpoints_while_commits_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_S", 0.05)
    path = tmp_path / "k.db"
    async with SQLiteStore(path) as store:
        await store.transact(_many(10))
        for _ in range(600):  # within a few of its rounds
            if _in_database_file(path) == 10:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the keeper never checkpointed the WAL into the database file")
        assert store.unavailable is None


async def test_the_wal_keeper_starts_a_wal_grown_past_its_limit_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While commits keep coming, a PASSIVE checkpoint never catches up with them, and SQLite
    starts the WAL over only once one has: past its limit, the keeper has the writer write it from
    its start again, so the file stops growing."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_S", 0.02)
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_BYTES", 256 * 1024)
    path, wal = tmp_path / "t.db", tmp_path / "t.db-wal"
    written = 0
    async with SQLiteStore(path) as store:

        async def commits() -> None:
            nonlocal written
            while written < 20000:  # ~10 MB of WAL: forty times the limit
                await store.transact(_many(10))
                written += 10

        await asyncio.gather(*(commits() for _ in range(4)))  # the writer always has work
        assert wal.stat().st_size < 32 * 256 * 1024  # without the restarts: 22-51 MB
        assert store.unavailable is None
    assert _in_database_file(path) == written


async def test_a_row_that_fails_while_fetched_is_a_query_error(tmp_path: Path) -> None:
    """SQLite goes on stepping while rows are fetched: a text column that is not UTF-8 (written
    around the gateway) fails there, and must reach the caller as the store's error."""
    path = tmp_path / "t.db"
    async with SQLiteStore(path) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="fine"))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE kv SET v = CAST(x'ff00fe' AS TEXT) WHERE k = 'a'")
    conn.close()
    async with SQLiteStore(path) as store:
        for read in (
            lambda tx: tx.one("kv.get", k="a"),
            lambda tx: tx.all("kv.get", k="a"),
            lambda tx: tx.tuples("kv.get", k="a"),
        ):
            with pytest.raises(QueryError, match="UTF-8"):
                await store.read(read)
