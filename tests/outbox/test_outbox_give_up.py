"""A job that keeps failing is given up after ``[outbox] give_up_after_s`` of failing, not only
after its attempts.

Found by reading the worker: a failed trial of a half-open circuit gives the job its attempt back
(the endpoint is down, not the job's fault), so a job whose calls fail ALONE — a registry answers
5xx to that one request every time, or an endpoint only it calls is down — is every call the
trial, never uses up its attempts and was tried every two reset periods for ever: its dossier
stayed in_progress, and no dead letter told the operator. Attempts cannot judge it (a registry
down for an hour must keep its work pending): time does, counted from the job's first failed
try. Waiting — refused by the open circuit, parked on it — is no failure, and kills nothing.

The stores write and compare a job's failing time on their own clocks (PostgreSQL's, the
server's): time is made to pass by moving the rows' times back, on both stores alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.api import TransientError
from gateway.audit import Actor
from gateway.metrics import Metrics
from gateway.outbox import Breakers, Job, RetryPolicy, Worker, enqueue, get_job, replay
from gateway.outbox.breaker import call_registry
from gateway.outbox.testing import ManualClock, ScriptedHandler, audit_entries
from gateway.settings import SettingsError, settings_from_mapping
from gateway.store import SQLiteStore, Store, open_store
from tests.outbox.stores import raw_sql, store_urls

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=60.0, rng=lambda: 0.0)
RESET_S = 30.0
LIMIT_S = 3600.0
OPERATOR = Actor(member="GOV", subsystem="ops")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_urls(request.param, tmp_path, "giveup")


@pytest.fixture
async def any_store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as s:
        yield s


class FailsAlone:
    """A registry that answers 503 to this one job's call, every time, through its breaker."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers
        self.calls = 0
        self.up = False

    async def deliver(self, job: Job) -> None:
        async def send() -> None:
            self.calls += 1
            if not self.up:
                raise TransientError("civil_status", "HTTP 503: Service Unavailable")

        await call_registry(self.breakers.get("civil_status"), "death.register", send, None)


async def _add(store: Store, key: str = "k", now: float | None = None) -> int:
    job_id = await store.transact(
        lambda tx: enqueue(tx, kind="registry", key=key, payload={}, now=now)
    )
    assert job_id is not None
    return job_id


async def _job(store: Store, job_id: int) -> Job:
    found = await store.read(lambda tx: get_job(tx, job_id))
    assert found is not None
    return found


def _passes(url: str, breaker_clock: ManualClock, seconds: float) -> None:
    """``seconds`` pass: for the jobs' due times and failing times (on the store's clock) and
    for the breakers."""
    raw_sql(
        url, f"UPDATE outbox_jobs SET run_after = run_after - {seconds} WHERE state = 'pending'"
    )
    raw_sql(url, f"UPDATE outbox_failing SET since = since - {seconds}")
    breaker_clock.advance(seconds)


async def _fail_for(
    url: str, worker: Worker, breaker_clock: ManualClock, seconds: float, step: float = 60.0
) -> None:
    """Every ``step`` seconds for ``seconds``, run what is due."""
    for _ in range(int(seconds // step)):
        _passes(url, breaker_clock, step)
        await worker.run_once()


async def test_a_job_failing_alone_goes_dead_once_it_has_failed_for_the_limit(
    any_store: Store, store_url: str
) -> None:
    bclock = ManualClock()
    registry = FailsAlone(Breakers(failure_threshold=1, reset_after=RESET_S, clock=bclock))
    handler = ScriptedHandler(call=registry.deliver)
    metrics = Metrics()
    worker = Worker(
        any_store,
        {"registry": handler},
        policy=POLICY,
        concurrency=1,
        give_up_after=LIMIT_S,
        metrics=metrics,
    )
    job_id = await _add(any_store)
    await worker.run_once()  # attempt 1, counted: the circuit opens
    # Then each try is the half-open circuit's trial, refunded: in 59 minutes it used no more
    # attempts, and it is still pending (a registry down for less than the limit keeps its work).
    await _fail_for(store_url, worker, bclock, LIMIT_S - 60)
    j = await _job(any_store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    tries = registry.calls
    assert tries >= 20

    await _fail_for(store_url, worker, bclock, 120)  # its next failure after the limit
    j = await _job(any_store, job_id)
    assert (j.state, j.attempts) == ("dead", 2)  # the last try, given up, is not refunded
    assert registry.calls == tries + 1
    assert j.last_error is not None
    assert j.last_error.startswith("given up: failing for 1 h 0 min since its first failed try")
    assert f"({tries + 1} failed tries; [outbox] give_up_after_s = 3600)" in j.last_error
    assert j.last_error.endswith(
        "last error: TransientError: civil_status: HTTP 503: Service Unavailable"
    )
    # Audited as every death is, told to the handler (a flow step marks its dossier failed), and
    # counted as a dead letter.
    events = await audit_entries(any_store)
    assert len(events) == registry.calls
    assert (events[-1]["action"], events[-1]["outcome"]) == ("job.dead", "dead")
    assert events[-1]["detail"] == f"attempt 2 (the trial of circuit civil_status): {j.last_error}"
    assert [f.dead for f in handler.failures] == [False] * tries + [True]
    # The handler is told why, apart from the error itself (whose type and recorded reference it
    # reads): a flow step's dossier shows it (tests/e2e/test_step_errors.py).
    last = handler.failures[-1]
    assert last.error == "civil_status: HTTP 503: Service Unavailable"
    assert last.given_up is not None and j.last_error.startswith(last.given_up + "; last error: ")
    assert last.given_up.endswith("[outbox] give_up_after_s = 3600)")
    assert [f.given_up for f in handler.failures[:-1]] == [None] * tries
    assert metrics.dead_letters.labels(kind="registry")._value.get() == 1

    # Nothing more happens to it.
    await _fail_for(store_url, worker, bclock, 600)
    assert registry.calls == tries + 1


async def test_a_replay_starts_the_clock_again(any_store: Store, store_url: str) -> None:
    bclock = ManualClock()
    registry = FailsAlone(Breakers(failure_threshold=1, reset_after=RESET_S, clock=bclock))
    handler = ScriptedHandler(call=registry.deliver)
    worker = Worker(
        any_store, {"registry": handler}, policy=POLICY, concurrency=1, give_up_after=LIMIT_S
    )
    job_id = await _add(any_store)
    await worker.run_once()
    await _fail_for(store_url, worker, bclock, LIMIT_S + 120)
    assert (await _job(any_store, job_id)).state == "dead"

    await any_store.transact(lambda tx: replay(tx, job_id, actor=OPERATOR))
    _passes(store_url, bclock, RESET_S)  # a circuit that lets the replayed job's call through
    await worker.run_once()  # a failure: the first of its new clock, not the limit's end
    j = await _job(any_store, job_id)
    assert (j.state, j.attempts) == ("pending", 0)  # the trial's failure: refunded
    await _fail_for(store_url, worker, bclock, LIMIT_S - 120)
    assert (await _job(any_store, job_id)).state == "pending"
    await _fail_for(store_url, worker, bclock, 180)
    j = await _job(any_store, job_id)
    assert j.state == "dead"
    assert j.last_error is not None and "failing for 1 h 0 min" in j.last_error

    # Replayed once the registry is back, it is delivered, and a later failure of it would
    # start from nothing: its clock went with the success.
    await any_store.transact(lambda tx: replay(tx, job_id, actor=OPERATOR))
    registry.up = True
    _passes(store_url, bclock, RESET_S)
    await worker.run_once()
    assert (await _job(any_store, job_id)).state == "done"
    assert raw_sql(store_url, "SELECT job FROM outbox_failing") == []


async def test_a_job_waiting_behind_an_open_circuit_is_never_killed_without_a_try(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """The limit judges failures, not waiting. A job that failed once, then waits two days
    behind a circuit that never lets a call through (refused at each fallback time), is still
    pending: only its next failed try, whenever the circuit lets it make one, gives it up."""
    frozen = ManualClock()  # the breaker's: its circuit stays open
    registry = FailsAlone(Breakers(failure_threshold=1, reset_after=RESET_S, clock=frozen))
    handler = ScriptedHandler(call=registry.deliver)
    worker = Worker(
        store,
        {"registry": handler},
        policy=POLICY,
        concurrency=1,
        clock=clock,
        give_up_after=LIMIT_S,
    )
    job_id = await _add(store, now=clock())
    await worker.run_once()  # failed: its clock starts; the circuit opens, for ever
    for _ in range(48):
        clock.advance(3600)  # each hour its fallback time comes: claimed, refused, parked again
        await worker.run_once()
    j = await _job(store, job_id)
    assert (j.state, j.attempts, registry.calls) == ("pending", 1, 1)
    assert len(handler.failures) == 1

    frozen.advance(RESET_S)  # the circuit lets its trial through at last: it fails
    clock.advance(3600)
    await worker.run_once()
    j = await _job(store, job_id)
    assert (j.state, registry.calls) == ("dead", 2)
    assert j.last_error is not None and "failing for 2 d 1 h since" in j.last_error
    assert "(2 failed tries;" in j.last_error


async def test_the_clock_starts_at_the_first_failure_not_when_the_job_was_queued(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """A job queued long ago, parked behind a circuit that other jobs' failing trials kept open
    for longer than the limit, is not given up at its first failed try: it has failed once."""
    bclock = clock  # one clock for the worker and the breakers
    breakers = Breakers(failure_threshold=1, reset_after=RESET_S, clock=bclock)
    registry = FailsAlone(breakers)
    handler = ScriptedHandler(call=registry.deliver)
    worker = Worker(
        store,
        {"registry": handler},
        policy=POLICY,
        concurrency=1,
        clock=clock,
        give_up_after=LIMIT_S,
    )
    breakers.get("civil_status").record_failure()  # opened by the others' calls
    late = await _add(store, "late", now=clock())
    await worker.run_once()  # refused: parked, not tried
    assert registry.calls == 0
    clock.advance(2 * LIMIT_S)  # its circuit's trials went to other jobs meanwhile
    breakers.get("civil_status").before_call()
    breakers.get("civil_status").record_failure()
    clock.advance(RESET_S)
    await worker.run_once()  # its first try, the trial: it fails
    j = await _job(store, late)
    assert (j.state, j.attempts, registry.calls) == ("pending", 0, 1)


async def test_zero_never_gives_up_by_time(store: SQLiteStore, clock: ManualClock) -> None:
    registry = FailsAlone(Breakers(failure_threshold=1, reset_after=RESET_S, clock=clock))
    worker = Worker(
        store,
        {"registry": ScriptedHandler(call=registry.deliver)},
        policy=POLICY,
        concurrency=1,
        clock=clock,
        give_up_after=0,
    )
    job_id = await _add(store, now=clock())
    await worker.run_once()
    for _ in range(3 * 24 * 4):  # three days of trials, every 15 minutes of them
        clock.advance(900)
        await worker.run_once()
    j = await _job(store, job_id)
    assert (j.state, j.attempts) == ("pending", 1)
    assert registry.calls > 100


async def test_a_stopping_worker_does_not_give_a_job_up(
    store: SQLiteStore, clock: ManualClock
) -> None:
    """The attempt a stopping worker cuts short is put back, not judged: no failure of the job
    (nor of its endpoint), so not one that can end its time."""
    registry = FailsAlone(Breakers(failure_threshold=1, reset_after=RESET_S, clock=clock))
    handler = ScriptedHandler(call=registry.deliver)
    worker = Worker(
        store, {"registry": handler}, policy=POLICY, concurrency=1, clock=clock, give_up_after=60
    )
    job_id = await _add(store, now=clock())
    await worker.run_once()  # failed: its clock starts
    clock.advance(3600)

    hang = ScriptedHandler(gate=asyncio.Event())
    worker.handlers["registry"] = hang
    await worker.start()
    await hang.started.wait()
    worker.drain_timeout = 0
    await worker.stop()
    j = await _job(store, job_id)
    assert j.state == "pending"
    assert j.last_error is not None and "interrupted" in j.last_error


def test_give_up_after_s_defaults_to_three_days_and_takes_zero() -> None:
    assert settings_from_mapping({}, environ={}).outbox.give_up_after_s == 259_200
    zero = settings_from_mapping({"outbox": {"give_up_after_s": 0}}, environ={})
    assert zero.outbox.give_up_after_s == 0
    env = settings_from_mapping({}, environ={"LIENTHONG_OUTBOX_GIVE_UP_AFTER_S": "7200"})
    assert env.outbox.give_up_after_s == 7200


@pytest.mark.parametrize(
    ("outbox", "says"),
    [
        ({"give_up_after_s": -1}, "outbox.give_up_after_s: must be 0 or more, got -1"),
        ({"give_up_after_s": 10**9}, "outbox.give_up_after_s: must be at most"),
        ({"give_up_after_s": "a day"}, "outbox.give_up_after_s"),
        ({"give_up_after": 60}, "give_up_after"),
    ],
)
def test_a_bad_give_up_after_s_is_refused_in_one_line(outbox: dict[str, object], says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_mapping({"outbox": outbox}, environ={})
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_worker_refuses_a_negative_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give_up_after"):
        Worker(SQLiteStore(tmp_path / "x.db"), {}, give_up_after=-1)
