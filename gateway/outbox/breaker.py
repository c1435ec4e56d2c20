"""Circuit breakers, one per registry endpoint.

Why: when a registry is down, every job for it would otherwise burn an attempt (and wait out a
timeout) on each retry, and jobs would go dead during an outage that is not their fault. An open
breaker fails fast with :class:`CircuitOpen`; the worker then reschedules the job at
``retry_after`` WITHOUT counting an attempt.

States: ``closed`` (calls pass; ``failure_threshold`` consecutive failures open it) → ``open``
(calls refused for ``reset_after`` seconds) → ``half-open`` (ONE trial call passes; success closes,
failure re-opens). A trial whose outcome is never recorded (its caller was cancelled) stops
blocking others after ``reset_after``.

A job the circuit refuses is parked on it (:class:`CircuitOpen` carries the breaker): it waits
for the endpoint, not for a time. The worker takes one parked job as the next try when the
circuit lets a call through (:meth:`CircuitBreaker.ready`), and each answer the endpoint gives
(:attr:`TrialWatch.answered`) wakes a few more. Before, every refused job came back at the
circuit's reset, all together, and a receiver down with 12,000 callbacks for it had the outbox
claim and put back 1,000 jobs a second ahead of every other job.

The trial is a real job's call, and its failure says the endpoint is still down, not that the
job is wrong: the worker :func:`watches <watch_trials>` each attempt, and an attempt whose trial
failed is put back without using one of the job's attempts, like a job the open circuit refused.
Only calls made while the circuit is closed use attempts (a trial judged by an answer closes it).

Breakers live in one process: each gateway instance keeps its own view of each registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Literal, TypeVar

import yarl

from connectors.api import PermanentError, TransientError
from gateway.metrics import CIRCUIT_STATES, Metrics

__all__ = [
    "Breakers",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "NotYet",
    "TrialWatch",
    "call_registry",
    "endpoint_of",
    "watch_trials",
]

T = TypeVar("T")
CircuitState = Literal["closed", "open", "half-open"]
log = logging.getLogger("lienthong.outbox")


class NotYet(TransientError):
    """A job cannot run yet, for a reason outside it: the outbox worker reschedules it after
    ``retry_after`` s without using an attempt (nothing was attempted).

    With ``circuit``, what it waits for is that endpoint (its circuit is open, or as many calls
    to it as it may take are in flight): the worker parks the job on the circuit instead, until
    the endpoint answers a call or the circuit lets one through (see gateway.outbox.worker)."""

    def __init__(
        self,
        endpoint: str,
        retry_after: float,
        message: str,
        *,
        code: str = "not-yet",
        circuit: CircuitBreaker | None = None,
    ) -> None:
        super().__init__(endpoint, message, code=code)
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.circuit = circuit


# A job waiting for an earlier one comes back when that one is due, this much later (for it to
# have been claimed first), or, while that one runs, after _WHILE_RUNNING: the one waited for
# makes it due at once when it is done or dead, so these only bound a wake that came between the
# waiting job's look and its wait. Looking every half second instead, 400 dossiers' callbacks
# behind a receiver that was down made 1,100 deferrals a second and slowed every flow.
_AFTER_DUE = 0.5
_WHILE_RUNNING = 5.0


def wait_behind(state: str, run_after: float, now: float) -> float:
    """How long a job waits for an earlier one in ``state``, due at ``run_after`` (both on the
    clock of the jobs' times; ``now``: when the waiting one was claimed)."""
    if state == "running":
        return _WHILE_RUNNING
    return max(run_after - now, 0.0) + _AFTER_DUE


def endpoint_of(url: str) -> str:
    """``scheme://host:port`` of ``url``: one server, whatever the path — what a receiver's or an
    agency's breaker (and its callbacks' in-flight count) is keyed by."""
    parsed = yarl.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


class CircuitOpen(NotYet):
    """The breaker for ``endpoint`` refuses calls for now; try again after ``retry_after`` s (a
    lookup's answer says so). ``circuit``: that breaker, on which an outbox job is parked."""

    def __init__(
        self, endpoint: str, retry_after: float, *, circuit: CircuitBreaker | None = None
    ) -> None:
        super().__init__(
            endpoint,
            retry_after,
            f"circuit open; retry after {retry_after:.1f}s",
            code="circuit-open",
            circuit=circuit,
        )


class TrialWatch:
    """What one outbox attempt's calls through breakers told: whether one of them, let through as
    a half-open circuit's trial, failed (the endpoint is still down), and for how long that
    circuit then refuses calls; which endpoints it called, and which answered (the jobs parked on
    them can go). See :func:`watch_trials`."""

    def __init__(self) -> None:
        self.called: set[str] = set()  # the breakers' names that let a call of ours through
        self.answered: set[str] = set()  # the breakers' names whose endpoints answered a call
        self.trials: set[CircuitBreaker] = set()  # breakers whose trial a call of ours holds
        self.failed_trial: str | None = None  # the endpoint whose trial failed
        self.reopened_for = 0.0  # seconds until its circuit lets a call through again
        self.reset_after = 0.0  # that breaker's reset period


_watch: ContextVar[TrialWatch | None] = ContextVar("lienthong_trial_watch", default=None)


@contextlib.contextmanager
def watch_trials() -> Iterator[TrialWatch]:
    """Watch the breaker calls made in this context (one job's attempt: the outbox worker runs
    each in its own task). A context that nobody watches, a lookup's, is judged the same way;
    only nobody is told."""
    watch = TrialWatch()
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


class CircuitBreaker:
    """One endpoint's breaker. Not awaitable itself: :meth:`before_call` and the ``record_*``
    methods are plain calls, safe from the event loop (a lock makes them thread-safe too)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitBreaker], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None  # half-open: when the one trial was let through

    @property
    def state(self) -> CircuitState:
        """The state as of now (an open breaker whose time is up reads as half-open)."""
        with self._lock:
            self._tick()
            return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def _set(self, state: CircuitState) -> None:
        if state != self._state:
            log.info(
                "circuit %s: %s → %s",
                self.name,
                self._state,
                state,
                extra={"endpoint": self.name, "circuit": state},
            )
            self._state = state
            if self._on_change is not None:
                self._on_change(self)

    def _tick(self) -> None:
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_after:
            self._trial_started = None
            self._set("half-open")

    def before_call(self) -> None:
        """Let a call through or refuse it. Raises :class:`CircuitOpen` when open, or when
        half-open and the one trial call is already in flight."""
        with self._lock:
            self._tick()
            now = self._clock()
            if self._state == "open":
                left = self.reset_after - (now - self._opened_at)
                raise CircuitOpen(self.name, left, circuit=self)
            trial = self._state == "half-open"
            if trial:
                started = self._trial_started
                if started is not None and now - started < self.reset_after:
                    raise CircuitOpen(self.name, self.reset_after - (now - started), circuit=self)
                self._trial_started = now
        if (watch := _watch.get()) is not None:
            watch.called.add(self.name)
            if trial:
                watch.trials.add(self)
            else:
                watch.trials.discard(self)

    def ready(self) -> bool:
        """Whether :meth:`before_call` would let a call through now: the circuit is closed, or
        half-open with its trial not taken."""
        with self._lock:
            self._tick()
            if self._state != "half-open":
                return self._state == "closed"
            started = self._trial_started
            return started is None or self._clock() - started >= self.reset_after

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_started = None
            self._set("closed")

    def record_failure(self) -> None:
        with self._lock:
            self._tick()
            self._failures += 1
            self._trial_started = None
            if self._state == "half-open" or (
                self._state == "closed" and self._failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._set("open")

    def release(self) -> None:
        """Forget an in-flight trial without judging the endpoint (the caller failed for its own
        reasons, not the registry's)."""
        self._was_trial()
        with self._lock:
            self._trial_started = None

    def _was_trial(self) -> TrialWatch | None:
        """The watch of the call ending here if :meth:`before_call` let it through as the trial
        (a context makes one call at a time through one breaker), else None."""
        watch = _watch.get()
        if watch is None or self not in watch.trials:
            return None
        watch.trials.discard(self)
        return watch

    def record(self, error: BaseException | None) -> None:
        """Judge how a call that :meth:`before_call` let through ended: ``error`` is what it
        raised, or None.

        An answer counts as a success, a refusal (PermanentError) too, and a result code saying
        to try again later (``TransientError.answered``): the registry answered, so it is up. A
        TransientError (other than CircuitOpen), TimeoutError or OSError counts as a failure.
        Anything else (the caller was cancelled, a bug of ours) says nothing about the registry:
        it only releases the trial slot. An answer and a failed trial are told to the attempt
        that watches its context (:func:`watch_trials`).
        """
        watch = self._was_trial()
        if (
            error is None
            or isinstance(error, PermanentError)
            or (isinstance(error, TransientError) and error.answered)
        ):
            self.record_success()
            if (attempt := _watch.get()) is not None:
                attempt.answered.add(self.name)
        elif isinstance(error, TransientError | TimeoutError | OSError) and not isinstance(
            error, CircuitOpen
        ):
            self.record_failure()
            if watch is not None:  # the trial failed: tell the attempt, and how long it waits
                with self._lock:
                    self._tick()
                    shut = self._state == "open"
                    left = self.reset_after - (self._clock() - self._opened_at)
                watch.failed_trial = self.name
                watch.reopened_for = max(left, 0.0) if shut else 0.0
                watch.reset_after = self.reset_after
        else:
            self.release()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``before_call``, await ``fn()``, then :meth:`record` the outcome. Raises
        :class:`CircuitOpen` or what ``fn`` raised."""
        self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            self.record(exc)
            raise
        self.record(None)
        return result


async def call_registry(
    breaker: CircuitBreaker,
    operation: str,
    fn: Callable[[], Awaitable[T]],
    metrics: Metrics | None,
    spent: Callable[[float], None] | None = None,
) -> T:
    """One call to the registry ``breaker`` guards, as lookups and flow steps make it: through the
    breaker (judged by :meth:`CircuitBreaker.record`), counted and timed in ``metrics`` (outcome
    ok, refused, error or cancelled); ``spent`` is told the seconds the call took. Raises
    :class:`CircuitOpen` before any call, or what ``fn`` raised."""
    breaker.before_call()
    outcome = "error"
    started = time.perf_counter()
    try:
        result = await fn()
        outcome = "ok"
    except BaseException as exc:
        if isinstance(exc, PermanentError):
            outcome = "refused"
        elif isinstance(exc, asyncio.CancelledError):
            # Our caller stopped waiting (a client that left, a gateway stopping): nothing is
            # known of the registry, whose failures "error" counts.
            outcome = "cancelled"
        breaker.record(exc)
        raise
    finally:
        elapsed = time.perf_counter() - started
        if metrics is not None:
            metrics.called(breaker.name, operation, outcome, elapsed)
        if spent is not None:
            spent(elapsed)
    breaker.record(None)
    return result


class Breakers:
    """The breakers of one gateway, by endpoint name; keeps ``metrics.circuit`` current."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._metrics = metrics
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        """The breaker for ``name``, created closed on first use."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = self._breakers[name] = CircuitBreaker(
                    name,
                    failure_threshold=self.failure_threshold,
                    reset_after=self.reset_after,
                    clock=self._clock,
                    on_change=self._publish,
                )
                self._publish(breaker)
            return breaker

    def states(self) -> dict[str, CircuitState]:
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.state for b in breakers}

    def _publish(self, breaker: CircuitBreaker) -> None:
        if self._metrics is not None:
            # Read the private field: the public property would re-enter the breaker's lock.
            self._metrics.circuit.labels(endpoint=breaker.name).set(CIRCUIT_STATES[breaker._state])
