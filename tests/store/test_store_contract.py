"""The store contract, run on both backends (SQLite in tmp_path, PostgreSQL in a fresh schema).

What a caller of :class:`gateway.store.Store` may rely on whichever store it was given: units
commit or roll back whole, failures are QueryErrors, reads see one snapshot, values have the same
Python types, the audit log stays one gap-free chain under concurrent appenders, and two gateway
instances never claim the same outbox job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from connectors.api import TransientError
from gateway.audit import AuditEvent, append, verify_chain
from gateway.audit import verify as verify_module
from gateway.audit.chain import PAGE_QUERY, VERIFY_QUERY, verify_page
from gateway.audit.events import GENESIS
from gateway.dossiers import Conflict, accept
from gateway.outbox import RetryPolicy, Worker, enqueue, get_job, list_jobs
from gateway.outbox.testing import ManualClock, ScriptedHandler, audit_entries
from gateway.samples import sample_dossiers
from gateway.store import PostgresStore, QueryError, Store, StoreClosed, StoreError, Tx, open_store

StoreFactory = Callable[[], Awaitable[Store]]  # the conftest's new_store

CLIENT = "VN:GOV:000.00.00.H41:motcua"
MEMBER = "VN:GOV:000.00.00.H41"
KEY = b"k" * 32


async def count(store: Store, query: str) -> int:
    row = await store.read(lambda tx: tx.one(query))
    assert row is not None
    return int(row["n"])


# -- units of work -----------------------------------------------------------------------------


async def test_a_unit_commits_and_is_read_back(store: Store) -> None:
    assert await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1")) == 1
    assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
    assert await store.read(lambda tx: tx.one("kv.get", k="missing")) is None
    assert await store.read(lambda tx: tx.all("kv.get", k="missing")) == []


def _sync_setting(tx: Any) -> str:
    """What the backend will do at this transaction's commit: SQLite's synchronous (1 NORMAL,
    2 FULL), PostgreSQL's synchronous_commit."""
    if hasattr(tx, "begun"):  # SQLite's Tx
        return {1: "normal", 2: "full"}[tx._conn.execute("PRAGMA synchronous").fetchone()[0]]
    return str(tx._conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"])


async def test_relaxed_units_commit_without_waiting_for_the_sync_and_others_wait(
    store: Store,
) -> None:
    """durable=False: committed (read back, one chain with the durable appends) by a commit
    that does not wait for the disk; durable units, alone or batched with relaxed ones, by one
    that does. A relaxed unit that fails still rolls back alone."""

    def relaxed_append(tx: Tx) -> str:
        append(tx, AuditEvent(action="test.lookup"))
        return _sync_setting(tx)

    def durable_append(tx: Tx) -> str:
        append(tx, AuditEvent(action="test.accepted"))
        return _sync_setting(tx)

    def fails(tx: Tx) -> None:
        tx.execute("kv.put", k="half", v="written")
        raise RuntimeError("boom")

    waits = {"full", "on"}  # SQLite, PostgreSQL
    assert await store.transact(relaxed_append, durable=False) in {"normal", "off"}
    assert await store.transact(durable_append) in waits
    together = await asyncio.gather(
        store.transact(relaxed_append, durable=False),
        store.transact(durable_append),
        store.transact(fails, durable=False),
        return_exceptions=True,
    )
    assert together[1] in waits
    # SQLite commits the three as one batch, durably; PostgreSQL commits each unit on its own.
    assert together[0] in {"full", "off"}
    assert isinstance(together[2], RuntimeError)
    assert await store.transact(relaxed_append, durable=False) in {"normal", "off"}
    assert await store.read(lambda tx: tx.one("kv.get", k="half")) is None
    report = await verify_chain(store)
    assert report.ok and report.entries == 5, report.describe()


async def test_a_failing_unit_rolls_back_alone(store: Store) -> None:
    def bad(tx: Tx) -> None:
        tx.execute("kv.put", k="half", v="written")
        raise RuntimeError("boom")

    results = await asyncio.gather(
        *(
            store.transact(lambda tx, i=i: tx.execute("kv.put", k=f"good{i}", v="1"))
            for i in range(8)
        ),
        store.transact(bad),
        return_exceptions=True,
    )
    assert results[:8] == [1] * 8
    assert isinstance(results[8], RuntimeError) and str(results[8]) == "boom"
    assert await store.read(lambda tx: tx.one("kv.get", k="half")) is None
    assert await count(store, "kv.count") == 8


async def test_sql_failures_are_query_errors_and_undo_the_unit(store: Store) -> None:
    with pytest.raises(QueryError, match="no SQL block"):
        await store.transact(lambda tx: tx.execute("kv.nope"))

    def violates(tx: Tx) -> None:
        tx.execute("kv.put", k="before", v="kept?")
        tx.execute("kv.put", k="a", v=None)  # NOT NULL

    with pytest.raises(QueryError, match=r"kv\.put"):
        await store.transact(violates)
    assert await store.read(lambda tx: tx.one("kv.get", k="before")) is None

    with pytest.raises(QueryError):  # a parameter the block needs is missing
        await store.transact(lambda tx: tx.execute("kv.put", k="x"))
    # The store is still usable after every one of those.
    assert await store.transact(lambda tx: tx.execute("kv.put", k="after", v="1")) == 1


async def test_a_deferred_write_missing_a_parameter_fails_its_unit_alone(store: Store) -> None:
    def bad(tx: Tx) -> None:
        tx.execute("kv.put", k="half", v="written")
        tx.defer("kv.put", k="deferred")  # no v

    results = await asyncio.gather(
        store.transact(lambda tx: tx.defer("kv.put", k="good", v="1")),
        store.transact(bad),
        store.transact(lambda tx: tx.defer("kv.put", k="also", v="2")),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], QueryError)
    assert await store.read(lambda tx: tx.one("kv.get", k="half")) is None
    assert await store.read(lambda tx: tx.one("kv.get", k="also")) == {"v": "2"}
    assert await count(store, "kv.count") == 2


async def test_a_deferred_write_breaking_a_constraint_fails_its_unit_alone(store: Store) -> None:
    # Deferred rows are written together at the commit (SQLite: one batch of units); a row that
    # breaks a constraint there must take only its own unit down.
    results = await asyncio.gather(
        *(
            store.transact(lambda tx, i=i: tx.defer("kv.put", k=f"good{i}", v="1"))
            for i in range(5)
        ),
        store.transact(lambda tx: tx.defer("kv.put", k="bad", v=None)),  # NOT NULL
        store.transact(lambda tx: tx.execute("kv.put", k="direct", v="2")),
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5 and results[6] == 1
    assert isinstance(results[5], QueryError)
    assert await count(store, "kv.count") == 6


async def test_a_unit_raising_stop_iteration_fails_alone_and_leaves_no_caller_waiting(
    store: Store,
) -> None:
    # asyncio refuses StopIteration on a Future: given as it is, the unit's caller (and, in a
    # batch, the callers after it) would wait for ever.
    def stops(tx: Tx) -> None:
        tx.execute("kv.put", k="stopped", v="1")
        next(iter([]))

    results = await asyncio.wait_for(
        asyncio.gather(
            store.transact(stops),
            store.transact(lambda tx: tx.execute("kv.put", k="after", v="1")),
            return_exceptions=True,
        ),
        timeout=10,
    )
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[0].__cause__, StopIteration)
    assert results[1] == 1
    assert await store.read(lambda tx: tx.one("kv.get", k="stopped")) is None


async def test_tuples_are_the_rows_in_column_order(store: Store) -> None:
    for i in range(3):
        await store.transact(lambda tx, i=i: append(tx, AuditEvent(action="t", dossier=f"D{i}")))

    def both(tx: Tx) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        return tx.all("audit.range", start=1, stop=9), tx.tuples("audit.range", start=1, stop=9)

    rows, tuples = await store.read(both)
    assert [r["seq"] for r in rows] == [1, 2]
    assert tuples == [tuple(r.values()) for r in rows]
    assert [type(v) for v in tuples[0]] == [int, bytes, bytes, bytes]
    assert await store.read(lambda tx: tx.tuples("audit.range", start=5, stop=9)) == []
    with pytest.raises(QueryError, match="no SQL block"):
        await store.read(lambda tx: tx.tuples("audit.nope"))


async def test_a_read_cannot_write(store: Store) -> None:
    with pytest.raises(QueryError):
        await store.read(lambda tx: tx.execute("kv.put", k="a", v="1"))
    assert await count(store, "kv.count") == 0


async def test_a_read_sees_one_snapshot(store: Store) -> None:
    first_done, go_on = threading.Event(), threading.Event()

    def reader(tx: Tx) -> tuple[Any, Any]:
        before = tx.one("kv.count")
        first_done.set()
        if not go_on.wait(60):  # a guard against a hung test, not a timing assertion
            raise TimeoutError("the writer never ran")
        return before, tx.one("kv.count")

    reading = asyncio.ensure_future(store.read(reader))
    assert await asyncio.to_thread(first_done.wait, 60)
    await store.transact(lambda tx: tx.execute("kv.put", k="new", v="1"))
    go_on.set()
    assert await reading == ({"n": 0}, {"n": 0})
    assert await count(store, "kv.count") == 1  # a new read sees the commit


async def test_a_closed_store_refuses_work(store_url: str) -> None:
    s = open_store(store_url)
    with pytest.raises(StoreClosed):
        await s.transact(lambda tx: None)
    async with s:
        await s.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    with pytest.raises(StoreClosed):
        await s.read(lambda tx: None)
    with pytest.raises(StoreClosed):
        await s.transact(lambda tx: None)


async def test_instances_opening_together_share_one_schema(
    new_store: StoreFactory, store_url: str
) -> None:
    # SQLite too: a gateway restarting while an operator's command opens the same file.
    a, b, c = await asyncio.gather(new_store(), new_store(), new_store())
    await a.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    assert await c.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}
    assert await count(b, "kv.count") == 1


async def test_values_come_back_with_sqlite_types(store: Store) -> None:
    at = 1_700_000_000.123456  # needs a double: REAL in PostgreSQL would round it to 128 s

    def work(tx: Tx) -> tuple[Any, ...]:
        job_id = enqueue(tx, kind="k", key="v1", payload={"n": 1}, dossier="D", now=at)
        # PostgreSQL's enqueue keeps the server's time, not ``at``: due_now writes the one given.
        tx.execute("outbox.due_now", dossier="D", kind="k", now=at)
        seq = append(tx, AuditEvent(action="test.types", detail="ư ơ đ"))
        return job_id, seq

    job_id, seq = await store.transact(work)
    row = await store.read(lambda tx: tx.one("outbox.get", id=job_id))
    assert row is not None
    assert type(row["id"]) is int and row["id"] == job_id
    assert type(row["run_after"]) is float and row["run_after"] == at
    assert type(row["attempts"]) is int and row["attempts"] == 0
    assert row["payload"] == '{"n":1}' and row["owner"] is None and row["lease_until"] is None
    event = await store.read(lambda tx: tx.one("audit.get", seq=seq))
    assert event is not None
    assert seq == 0 and type(event["seq"]) is int
    for name in ("entry", "leaf_hash", "chain_hash"):
        assert type(event[name]) is bytes
    assert "ư ơ đ".encode() in event["entry"]
    counts = await store.read(lambda tx: tx.all("outbox.counts"))
    assert counts == [{"state": "pending", "n": 1}] and type(counts[0]["n"]) is int


# -- the audit log: one sequence, from any number of writers -----------------------------------


async def test_concurrent_appends_from_two_instances_keep_one_gapless_chain(
    new_store: StoreFactory,
) -> None:
    a, b = await new_store(), await new_store()
    per_store = 25

    def unit(i: int) -> Any:
        def work(tx: Tx) -> int:
            tx.execute("kv.put", k=f"k{i}", v="x")  # a state change, audited with it
            return append(tx, AuditEvent(action="test.append", detail=str(i)))

        return work

    seqs = await asyncio.gather(
        *(s.transact(unit(i)) for i in range(per_store) for s in (a, b)),
    )
    assert sorted(seqs) == list(range(2 * per_store))
    report = await verify_chain(b)
    assert report.ok, report.describe()
    assert report.entries == 2 * per_store
    details = sorted(int(e["detail"]) for e in await audit_entries(a))
    assert details == sorted(list(range(per_store)) * 2)


async def test_a_rolled_back_append_leaves_no_gap(store: Store) -> None:
    def append_then_fail(tx: Tx) -> None:
        append(tx, AuditEvent(action="test.lost"))
        raise RuntimeError("after the append")

    await store.transact(lambda tx: append(tx, AuditEvent(action="test.one")))
    with pytest.raises(RuntimeError):
        await store.transact(append_then_fail)
    assert await store.transact(lambda tx: append(tx, AuditEvent(action="test.two"))) == 1
    assert [e["action"] for e in await audit_entries(store)] == ["test.one", "test.two"]
    assert (await verify_chain(store)).ok


# -- the outbox: claims across instances -------------------------------------------------------


async def _enqueue(store: Store, clock: ManualClock, n: int) -> list[int]:
    def work(tx: Tx) -> list[int]:
        ids = [
            enqueue(tx, kind="registry", key=f"job{i}", payload={"i": i}, now=clock())
            for i in range(n)
        ]
        return [i for i in ids if i is not None]

    return await store.transact(work)


async def _time_passes(store: Store, url: str, clock: ManualClock, seconds: float) -> None:
    """``seconds`` go by for the outbox. On SQLite its times are the workers' clock, which moves;
    on PostgreSQL they are the server's, which a test cannot move: the jobs' times move back."""
    if not isinstance(store, PostgresStore):
        clock.advance(seconds)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE outbox_jobs SET run_after = run_after - %(s)s, lease_until = lease_until - %(s)s",
            {"s": seconds},
        )


async def test_two_instances_never_claim_the_same_job(new_store: StoreFactory) -> None:
    clock = ManualClock()
    a, b = await new_store(), await new_store()
    ids = await _enqueue(a, clock, 40)
    assert len(ids) == 40
    workers = [Worker(s, {}, clock=clock, owner=name) for s, name in ((a, "A"), (b, "B"))]
    claimed: list[tuple[str, int]] = []
    while True:  # rounds of concurrent claims until one round finds nothing left
        batches = await asyncio.gather(*(w._claim(3) for w in workers for _ in range(6)))
        found = [(job.owner or "", job.id) for batch in batches for job in batch]
        if not found:
            break
        claimed.extend(found)
    claimed_ids = [job_id for _, job_id in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)), "a job was claimed twice"
    assert sorted(claimed_ids) == sorted(ids)
    assert {owner.split("/")[0] for owner, _ in claimed} <= {"A", "B"}
    for owner, job_id in claimed:
        job = await a.read(lambda tx, job_id=job_id: get_job(tx, job_id))
        assert job is not None
        assert (job.state, job.attempts, job.owner) == ("running", 1, owner)


async def test_an_expired_lease_moves_to_the_other_instance(
    new_store: StoreFactory, store_url: str
) -> None:
    clock = ManualClock()
    a, b = await new_store(), await new_store()
    [job_id] = await _enqueue(a, clock, 1)
    wa = Worker(a, {}, clock=clock, owner="A", lease=30.0)
    wb = Worker(b, {}, clock=clock, owner="B", lease=30.0)
    [first] = await wa._claim(5)
    assert await wb._claim(5) == []  # held under a live lease
    await _time_passes(a, store_url, clock, 31)
    # B takes the job over, records A's attempt as lost, and puts it back (due in 0.5 s) …
    assert await wb._claim(5) == []
    lost = await b.read(lambda tx: get_job(tx, job_id))
    assert lost is not None and (lost.state, lost.attempts) == ("pending", 1)
    await _time_passes(a, store_url, clock, 1)
    [second] = await wb._claim(5)  # … then claims it for attempt 2
    assert second.id == job_id and second.attempts == 2 and second.owner != first.owner

    def complete(owner: str | None) -> Any:
        return lambda tx: tx.execute("outbox.complete", id=job_id, owner=owner, now=clock())

    assert await a.transact(complete(first.owner)) == 0  # fenced out: the job moved on
    assert await b.transact(complete(second.owner)) == 1
    job = await a.read(lambda tx: get_job(tx, job_id))
    assert job is not None and job.state == "done"


async def test_the_worker_retries_then_delivers_with_its_audit_trail(
    store: Store, store_url: str
) -> None:
    clock = ManualClock()
    handler = ScriptedHandler(TransientError("civil_status", "503 busy"), None)
    policy = RetryPolicy(max_attempts=4, base_delay=60.0, max_delay=60.0, rng=lambda: 0.0)
    worker = Worker(store, {"registry": handler}, clock=clock, policy=policy)
    [job_id] = await _enqueue(store, clock, 1)

    assert await worker.run_once() == 1
    job = await store.read(lambda tx: get_job(tx, job_id))
    assert job is not None
    assert (job.state, job.attempts, job.run_after) == ("pending", 1, job.updated_at + 60.0)
    assert await worker.run_once() == 0  # not due yet
    await _time_passes(store, store_url, clock, 60.0)
    assert await worker.run_once() == 1
    job = await store.read(lambda tx: get_job(tx, job_id))
    assert job is not None and (job.state, job.attempts) == ("done", 2)
    assert handler.recorded == [(job_id, 2)]
    actions = [e["action"] for e in await audit_entries(store)]
    assert len(actions) == 2 and all(a.startswith("step.") for a in actions)
    assert (await verify_chain(store)).ok


async def test_an_error_the_store_cannot_keep_as_said_still_moves_the_job_on(store: Store) -> None:
    # PostgreSQL refuses NUL in text, and neither store takes a lone surrogate: a registry's error
    # saying either must still be recorded (readably), or the job would stay "running" and be sent
    # again after every lease, for ever, with no reason kept.
    clock = ManualClock()
    handler = ScriptedHandler(TransientError("insurance", "note: bad\x00byte \udce9"))
    policy = RetryPolicy(max_attempts=1, base_delay=1.0, max_delay=1.0, rng=lambda: 0.0)
    worker = Worker(store, {"registry": handler}, clock=clock, policy=policy)
    [job_id] = await _enqueue(store, clock, 1)

    assert await worker.run_once() == 1
    job = await store.read(lambda tx: get_job(tx, job_id))
    assert job is not None and (job.state, job.attempts) == ("dead", 1)
    assert job.last_error is not None and "note: bad\ufffdbyte ?" in job.last_error
    assert [e["action"] for e in await audit_entries(store)] == ["job.dead"]


# -- dossiers ----------------------------------------------------------------------------------


async def test_accepting_a_dossier_twice_stores_it_once(store: Store) -> None:
    doc = next(sample_dossiers(1, seed=7))

    def accept_it(tx: Tx) -> Any:
        return accept(
            tx, document=doc, client=CLIENT, member=MEMBER, request_id="r1", citizen_key=KEY
        )

    first = await store.transact(accept_it)
    again = await store.transact(accept_it)
    assert (first.replayed, again.replayed) == (False, True)
    assert first.code == again.code == doc["code"]
    row = await store.read(lambda tx: tx.one("dossiers.get", code=doc["code"]))
    assert row is not None and type(row["body"]) is bytes and row["status"] == "accepted"
    listed = await store.read(
        lambda tx: tx.all("dossiers.list_by_status", status=None, client=None, after="", limit=10)
    )
    assert [r["code"] for r in listed] == [doc["code"]]
    # Once: its first step, and the portal told it was received (no callback_url here).
    jobs = await store.read(lambda tx: list_jobs(tx))
    assert sorted((j.kind, j.state) for j in jobs) == [
        ("flow.step", "pending"),
        ("portal.sync", "pending"),
    ]
    # Accepted once; the other person it names (the deceased) searchable by a second event.
    assert [e["action"] for e in await audit_entries(store)] == [
        "dossier.accepted",
        "dossier.concerns",
    ]


def _acceptances(entries: list[dict[str, Any]]) -> int:
    return sum(1 for e in entries if e["action"] == "dossier.accepted")


async def test_a_conflicting_dossier_is_refused_and_stores_nothing(store: Store) -> None:
    doc = next(sample_dossiers(1, seed=7))
    changed = {**doc, "procedure": doc["procedure"] + "-other"}
    await store.transact(
        lambda tx: accept(
            tx, document=doc, client=CLIENT, member=MEMBER, request_id="r1", citizen_key=KEY
        )
    )
    with pytest.raises(Conflict):
        await store.transact(
            lambda tx: accept(
                tx, document=changed, client=CLIENT, member=MEMBER, request_id="r2", citizen_key=KEY
            )
        )
    assert _acceptances(await audit_entries(store)) == 1


async def test_the_same_dossier_accepted_concurrently_is_stored_once(store: Store) -> None:
    # A client that times out and submits again while its first request is still in flight:
    # on PostgreSQL the two transactions race to insert the same code. The loser must get what
    # a repeat gets (a replay, or a conflict for another body), never a failed query.
    doc = next(sample_dossiers(1, seed=7))
    changed = {**doc, "procedure": doc["procedure"] + "-other"}

    def accept_it(document: dict[str, Any], request_id: str) -> Callable[[Tx], Any]:
        return lambda tx: accept(
            tx,
            document=document,
            client=CLIENT,
            member=MEMBER,
            request_id=request_id,
            citizen_key=KEY,
        )

    same = await asyncio.gather(
        *(store.transact(accept_it(doc, f"r{i}")) for i in range(4)), return_exceptions=True
    )
    assert sorted(r.replayed for r in same) == [False, True, True, True], same
    other = await asyncio.gather(
        store.transact(accept_it({**doc, "code": doc["code"] + "-2"}, "r5")),
        store.transact(accept_it({**changed, "code": doc["code"] + "-2"}, "r6")),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in other) == ["Acceptance", "Conflict"], other
    assert _acceptances(await audit_entries(store)) == 2
    assert (await verify_chain(store)).ok
    # Two dossiers stored once each: each its first step and its portal sync.
    assert await store.read(lambda tx: tx.all("outbox.counts")) == [{"state": "pending", "n": 4}]


async def test_units_that_read_before_writing_or_only_defer_are_undone_alone(store: Store) -> None:
    # The SQLite store opens a unit's savepoint at its first statement that is not a SELECT:
    # a unit failing after a read and a write, or after only deferring, must leave nothing.
    def read_then_write(tx: Tx) -> None:
        tx.one("kv.get", k="good")
        tx.execute("kv.put", k="late", v="written")
        raise RuntimeError("after the write")

    def only_defers(tx: Tx) -> None:
        tx.defer("kv.put", k="deferred", v="1")
        raise RuntimeError("after the defer")

    results = await asyncio.gather(
        store.transact(lambda tx: tx.defer("kv.put", k="good", v="1")),
        store.transact(read_then_write),
        store.transact(only_defers),
        store.transact(lambda tx: tx.execute("kv.put", k="next", v="2")),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] == 1
    assert [str(r) for r in results[1:3]] == ["after the write", "after the defer"]
    for gone in ("late", "deferred"):
        assert await store.read(lambda tx, k=gone: tx.one("kv.get", k=k)) is None
    assert await store.read(lambda tx: tx.one("kv.get", k="next")) == {"v": "2"}


# -- the document hub's blobs ------------------------------------------------------------------


async def test_a_blob_is_named_by_a_package_its_copy_its_meta_or_a_status(store: Store) -> None:
    package, copy, attachment, message, orphan = (f"{c}" * 64 for c in "abcde")

    def unit(tx: Tx) -> None:
        tx.execute(
            "documents.insert",
            id="d1",
            document_id="000.00.11.H53,2026/12/05,1/STC",
            sender="000.00.11.H53",
            doc_type=0,
            package_sha256=package,
            forward_sha256=copy,
            size=1,
            media_type="application/xml",
            subject="",
            target=None,
            received_at="2026-12-05T00:00:00+00:00",
            receipt=b"r",
            meta=f'{{"attachments": [{{"name": "a.pdf", "sha256": "{attachment}"}}]}}',
        )
        tx.execute(
            "documents.add_status",
            document="d1",
            recipient="000.00.00.H41",
            code="03",
            description="",
            staff="",
            at="2026-12-05T00:00:00+00:00",
            recorded_at="2026-12-05T00:00:00+00:00",
            message_sha256=message,
        )

    await store.transact(unit)
    named = await store.read(
        lambda tx: [
            d
            for d in (package, copy, attachment, message, orphan)
            if tx.one("documents.blob_named", sha256=d) is not None
        ]
    )
    assert named == [package, copy, attachment, message]


async def test_create_false_opens_only_an_existing_store(store_url: str) -> None:
    """An operator's command (create=False) given the URL of a database that holds no store is
    refused, and leaves that database without lienthong's tables; a real store opens."""
    for _ in range(2):  # the first refusal created nothing: the second is the same
        with pytest.raises(StoreError, match=r"not a lienthong store|no store at"):
            async with open_store(store_url, create=False):
                pass
    async with open_store(store_url) as store:  # the gateway itself creates it
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    async with open_store(store_url, create=False) as store:
        assert await store.read(lambda tx: tx.one("kv.get", k="a")) == {"v": "1"}


async def test_each_backend_builds_the_audit_page_the_verifier_checks_in_one_piece(
    store: Store,
) -> None:
    """audit.verify_page: a clean log's pages pass gateway.audit.chain.verify_page on each backend
    (its columns written as the entry writes its fields, Vietnamese and escapes included), or
    every verification would fall back to reading row by row."""
    names = ["Sở Tư pháp Hà Nội", "UBND xã Đông Anh", 'tab\tand "quote"', None]
    for i in range(12):
        await store.transact(
            lambda tx, i=i: append(
                tx,
                AuditEvent(
                    action="dossier.accepted",
                    member=names[i % 4],
                    dossier=f"Hồ sơ {i}" if i % 3 else None,
                    citizen="c" * 64 if i % 2 else None,
                ),
            )
        )
    rows = await store.read(lambda tx: tx.tuples(VERIFY_QUERY, start=0, stop=12))
    for start, stop in ((0, 12), (5, 12)):
        (page,) = await store.read(
            lambda tx, a=start, b=stop: tx.tuples(PAGE_QUERY, start=a, stop=b)
        )
        prev = bytes(rows[start - 1][3]) if start else GENESIS
        leaves = bytearray()
        assert verify_page(page, start_seq=start, prev=prev, leaves=leaves) == bytes(rows[-1][3])
        assert bytes(leaves) == b"".join(bytes(r[2]) for r in rows[start:stop])


async def test_each_backend_verifies_a_log_of_several_pages_each_in_one_piece(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page was checked row by row")

    monkeypatch.setattr(verify_module, "_PAGE", 7)  # 30 entries: four full pages and a short one
    monkeypatch.setattr(verify_module, "verify_rows", never)
    for i in range(30):
        await store.transact(
            lambda tx, i=i: append(tx, AuditEvent(action="test.page", dossier=f"Hồ sơ {i}"))
        )
    report = await verify_module.verify_log(store)
    assert report.ok and report.entries == 30, report.problems


def _status(tx: Tx, recipient: str, code: str, message: str) -> None:
    tx.execute(
        "documents.add_status",
        document="d1",
        recipient=recipient,
        code=code,
        description="",
        staff="",
        at="2026-12-05T00:00:00+00:00",
        recorded_at="2026-12-05T00:00:00+00:00",
        message_sha256=message,
    )


def _as_before_the_key(store_url: str, copies: list[tuple[str, str, str]]) -> None:
    """Make the store one from before a status message was unique: no key, and (as concurrent
    PostgreSQL units left them) ``copies`` of messages already recorded."""
    rows = [
        ("d1", r, c, "2026-12-05T00:00:00+00:00", "2026-12-05T00:00:00+00:00", m)
        for r, c, m in copies
    ]
    insert = (
        "INSERT INTO document_statuses (document, recipient, code, at, recorded_at, message_sha256)"
        " VALUES ({0}, {0}, {0}, {0}, {0}, {0})"
    )
    if store_url.startswith("sqlite:"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with conn:
            conn.execute("DROP INDEX document_statuses_message")
            conn.executemany(insert.format("?"), rows)
        conn.close()
        return
    with psycopg.connect(store_url, autocommit=True) as pg:
        pg.execute("DROP INDEX document_statuses_message")
        pg.cursor().executemany(insert.format("%s").encode(), rows)
        pg.execute("UPDATE lienthong_schema SET digest = 'an earlier version'")


async def test_a_status_message_is_recorded_once_and_older_stores_are_mended(
    store_url: str,
) -> None:
    one, two = "a" * 64, "b" * 64
    async with open_store(store_url) as store:
        await store.transact(
            lambda tx: tx.execute(
                "documents.insert",
                id="d1",
                document_id="000.00.11.H53,2026/12/05,1/STC",
                sender="000.00.11.H53",
                doc_type=0,
                package_sha256="c" * 64,
                forward_sha256=None,
                size=1,
                media_type="application/xml",
                subject="",
                target=None,
                received_at="2026-12-05T00:00:00+00:00",
                receipt=b"r",
                meta="{}",
            )
        )
        await store.transact(lambda tx: _status(tx, "000.00.00.H41", "01", one))
        await store.transact(lambda tx: _status(tx, "000.00.00.G15", "01", one))  # another's
        with pytest.raises(QueryError):
            await store.transact(lambda tx: _status(tx, "000.00.00.H41", "01", one))
    # A store an earlier version left with the same message recorded three times (the copies
    # made its history 01, 01, 01, 03, 03: refused for ever as it no longer replays).
    _as_before_the_key(
        store_url,
        [
            ("000.00.00.H41", "01", one),
            ("000.00.00.H41", "03", two),
            ("000.00.00.H41", "01", one),
            ("000.00.00.H41", "03", two),
        ],
    )
    async with open_store(store_url) as store:
        histories = await store.read(
            lambda tx: {
                r: [
                    (h["code"], h["message_sha256"])
                    for h in tx.all("documents.recipient_history", document="d1", recipient=r)
                ]
                for r in ("000.00.00.H41", "000.00.00.G15")
            }
        )
        assert histories == {
            "000.00.00.H41": [("01", one), ("03", two)],
            "000.00.00.G15": [("01", one)],
        }
        with pytest.raises(QueryError):  # and the key is there
            await store.transact(lambda tx: _status(tx, "000.00.00.H41", "03", two))
