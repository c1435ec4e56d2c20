from __future__ import annotations

import sqlite3

import pytest

from gateway.audit import Actor, verify_chain
from gateway.outbox import (
    JobNotFound,
    NotDead,
    counts,
    enqueue,
    get_job,
    list_jobs,
    replay,
)
from gateway.outbox.jobs import depth
from gateway.outbox.testing import ManualClock, audit_entries
from gateway.store import SQLiteStore, Tx
from gateway.store.queries import queries


async def test_enqueue_stores_the_job_pending_and_due(
    store: SQLiteStore, clock: ManualClock
) -> None:
    payload = {"step": "birth.register", "child": {"full_name": "Nguyễn Thị Lan"}, "n": [1, 2]}
    job_id = await store.transact(
        lambda tx: enqueue(
            tx, kind="registry", key="k1", payload=payload, dossier="D-1", now=clock()
        )
    )
    assert isinstance(job_id, int)
    job = await store.read(lambda tx: get_job(tx, job_id))
    assert job is not None
    assert (job.kind, job.key, job.payload, job.dossier, job.document) == (
        "registry",
        "k1",
        payload,
        "D-1",
        None,
    )
    assert (job.state, job.attempts, job.run_after, job.last_error) == ("pending", 0, clock(), None)
    assert job.created_at == job.updated_at == clock()


async def test_a_repeated_key_is_not_enqueued_twice(store: SQLiteStore) -> None:
    first = await store.transact(lambda tx: enqueue(tx, kind="a", key="same", payload={"v": 1}))
    again = await store.transact(lambda tx: enqueue(tx, kind="b", key="same", payload={"v": 2}))
    assert first is not None
    assert again is None
    jobs = await store.read(lambda tx: list_jobs(tx))
    assert [(j.id, j.kind, j.payload) for j in jobs] == [(first, "a", {"v": 1})]


async def test_enqueue_rolls_back_with_the_callers_transaction(store: SQLiteStore) -> None:
    def accept(tx: Tx) -> None:
        enqueue(tx, kind="a", key="lost", payload={})
        raise RuntimeError("the dossier insert failed")

    with pytest.raises(RuntimeError):
        await store.transact(accept)
    assert await store.read(lambda tx: list_jobs(tx)) == []


async def test_run_after_defers_the_job(store: SQLiteStore, clock: ManualClock) -> None:
    job_id = await store.transact(
        lambda tx: enqueue(
            tx, kind="a", key="later", payload={}, run_after=clock() + 60, now=clock()
        )
    )
    job = await store.read(lambda tx: get_job(tx, job_id))
    assert job is not None and job.run_after == clock() + 60


async def test_list_filters_by_state_and_pages_by_cursor(store: SQLiteStore) -> None:
    def fill(tx: Tx) -> None:
        for i in range(5):
            enqueue(tx, kind="a", key=f"k{i}", payload={"i": i})

    await store.transact(fill)
    page1 = await store.read(lambda tx: list_jobs(tx, limit=2))
    page2 = await store.read(lambda tx: list_jobs(tx, limit=2, after_id=page1[-1].id))
    page3 = await store.read(lambda tx: list_jobs(tx, limit=2, after_id=page2[-1].id))
    assert [j.payload["i"] for j in page1 + page2 + page3] == [0, 1, 2, 3, 4]
    assert await store.read(lambda tx: list_jobs(tx, state="dead")) == []
    assert len(await store.read(lambda tx: list_jobs(tx, state="pending"))) == 5
    with pytest.raises(ValueError, match="unknown job state"):
        await store.read(lambda tx: list_jobs(tx, state="stuck"))


async def test_counts_name_every_state(store: SQLiteStore) -> None:
    assert await store.read(counts) == {"pending": 0, "running": 0, "done": 0, "dead": 0}
    await store.transact(lambda tx: enqueue(tx, kind="a", key="x", payload={}))
    assert await store.read(counts) == {"pending": 1, "running": 0, "done": 0, "dead": 0}


async def test_depth_counts_what_is_queued_from_the_index(store: SQLiteStore) -> None:
    """The worker reads the depth after every poll and /metrics on every scrape: it must cost
    what is queued, not every job ever done (kept, and counted by a full scan, it took an idle
    gateway with 2 million done jobs 29 % of a CPU)."""
    for key in ("a", "b", "c", "d"):
        await store.transact(lambda tx, k=key: enqueue(tx, kind="k", key=k, payload={}))
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE outbox_jobs SET state = 'done' WHERE key IN ('a', 'b')")
        raw.execute("UPDATE outbox_jobs SET state = 'dead' WHERE key = 'c'")
        raw.commit()
        plan = " ".join(
            str(row[-1])
            for row in raw.execute("EXPLAIN QUERY PLAN " + queries("sqlite")["outbox.unfinished"])
        )
    raw.close()
    assert await store.read(depth) == {"pending": 1, "running": 0, "dead": 1}
    assert await store.read(counts) == {"pending": 1, "running": 0, "done": 2, "dead": 1}
    # SEARCH (a range of the index), where a count of every state SCANs all of it.
    assert plan == "SEARCH outbox_jobs USING COVERING INDEX outbox_jobs_due (state=?)", plan


async def test_get_unknown_job_is_none(store: SQLiteStore) -> None:
    assert await store.read(lambda tx: get_job(tx, 404)) is None


async def test_replay_refuses_unknown_and_live_jobs(store: SQLiteStore) -> None:
    job_id = await store.transact(lambda tx: enqueue(tx, kind="a", key="x", payload={}))
    assert job_id is not None
    with pytest.raises(JobNotFound):
        await store.transact(lambda tx: replay(tx, 404))
    with pytest.raises(NotDead, match="pending"):
        await store.transact(lambda tx: replay(tx, job_id))
    assert await audit_entries(store) == []


async def test_replay_revives_a_dead_job_and_audits_it(
    store: SQLiteStore, clock: ManualClock
) -> None:
    def dead_job(tx: Tx) -> int:
        job_id = enqueue(tx, kind="a", key="x", payload={"step": "notify"}, dossier="D-9")
        assert job_id is not None
        # As the worker would leave it after giving up.
        tx.all("outbox.claim", owner="w/1", now=10**10, lease=30, limit=1)
        tx.execute("outbox.bury", id=job_id, owner="w/1", error="PermanentError: no", now=1.0)
        return job_id

    job_id = await store.transact(dead_job)
    job = await store.transact(
        lambda tx: replay(
            tx,
            job_id,
            actor=Actor("VN:GOV:000.00.00.H29", "VN:GOV:000.00.00.H29:stp"),
            request_id="r-7",
            now=clock(),
        )
    )
    assert (job.state, job.attempts, job.run_after) == ("pending", 0, clock())
    assert job.last_error == "PermanentError: no"  # kept: why it died
    [event] = await audit_entries(store)
    assert event["action"] == "job.replayed"
    # Named as every other caller is: the agency, then its subsystem; the operator's service.
    assert (event["subsystem"], event["service"], event["request_id"]) == (
        "VN:GOV:000.00.00.H29:stp",
        "admin",
        "r-7",
    )
    assert (event["member"], event["job"], event["dossier"], event["step"]) == (
        "VN:GOV:000.00.00.H29",
        job_id,
        "D-9",
        "notify",
    )
    assert (await verify_chain(store)).ok
    with pytest.raises(NotDead):  # replaying twice is refused
        await store.transact(lambda tx: replay(tx, job_id))
