from __future__ import annotations

import pytest

from connectors.api import PermanentError, TransientError
from gateway.outbox import CircuitOpen, RetryDecision, RetryPolicy, call_with_retries


def test_backoff_doubles_from_base_until_the_cap() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay=0.5, max_delay=10.0, rng=lambda: 0.0)
    delays = []
    for n in range(1, 8):
        d = policy.decide(TransientError("population", "busy"), n)
        assert d is not None
        delays.append(d.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    top = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=0.2, rng=lambda: 0.9999)
    d = top.decide(TransientError("x", "busy"), 3)
    assert d is not None
    assert 4.0 * 0.8 <= d.delay < 4.0  # cap 4 = 1 * 2**2, shortened by < 20 %
    none = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=0.2, rng=lambda: 0.0)
    assert none.decide(TransientError("x", "busy"), 3) == RetryDecision(4.0)
    half = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=0.2, rng=lambda: 0.5)
    assert half.decide(TransientError("x", "busy"), 1) == RetryDecision(pytest.approx(0.9))


def test_permanent_errors_give_up_at_once() -> None:
    assert RetryPolicy().decide(PermanentError("population", "unknown citizen"), 1) is None


def test_last_attempt_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3, rng=lambda: 0.0)
    assert policy.decide(TransientError("x", "busy"), 2) is not None
    assert policy.decide(TransientError("x", "busy"), 3) is None
    assert policy.decide(TransientError("x", "busy"), 9) is None


@pytest.mark.parametrize(
    "exc", [TimeoutError(), OSError("reset"), ValueError("a bug"), CircuitOpen("p", 3.0)]
)
def test_everything_not_permanent_is_retried(exc: BaseException) -> None:
    assert RetryPolicy(rng=lambda: 0.0).decide(exc, 1) == RetryDecision(0.5)


def test_a_registrys_retry_after_lengthens_the_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=9, base_delay=1.0, max_delay=60.0, rng=lambda: 0.0)
    busy = TransientError("insurance", "HTTP 503", wait_s=20.0)
    assert policy.decide(busy, 1) == RetryDecision(20.0)  # not the 1 s backoff
    assert policy.decide(busy, 7) == RetryDecision(60.0)  # the backoff, already longer
    too_long = TransientError("insurance", "HTTP 429", wait_s=3600.0)
    assert policy.decide(too_long, 1) == RetryDecision(60.0)  # within the policy's ceiling
    assert policy.decide(TransientError("insurance", "HTTP 503"), 1) == RetryDecision(1.0)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    d = RetryPolicy(max_attempts=10**6, rng=lambda: 0.0).decide(TransientError("x", "y"), 5000)
    assert d == RetryDecision(300.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": -1}, {"base_delay": 5, "max_delay": 1}, {"jitter": 1.5}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


class Flaky:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_short_retries_recover_from_transient_errors() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    fn = Flaky(TransientError("p", "busy"), TimeoutError())
    assert await call_with_retries(fn, attempts=3, max_wait=1.0, sleep=sleep) == "ok"
    assert fn.calls == 3
    assert len(waits) == 2
    assert all(0 <= w <= 1.0 for w in waits)


async def test_short_retries_give_up_with_the_original_error() -> None:
    async def sleep(s: float) -> None:
        pass

    last = TransientError("p", "still busy")
    fn = Flaky(TransientError("p", "busy"), TransientError("p", "busy"), last)
    with pytest.raises(TransientError) as raised:
        await call_with_retries(fn, attempts=3, sleep=sleep)
    assert raised.value is last
    assert fn.calls == 3


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("p", "no such citizen"),
        CircuitOpen("p", 30.0),
        ValueError("bug"),
        TransientError("p", "HTTP 429", wait_s=30.0),  # asked to wait longer than a request may
    ],
)
async def test_short_retries_do_not_retry_the_rest(exc: BaseException) -> None:
    async def sleep(s: float) -> None:
        raise AssertionError("should not wait")

    fn = Flaky(exc)
    with pytest.raises(type(exc)):
        await call_with_retries(fn, sleep=sleep)
    assert fn.calls == 1


async def test_short_retries_wait_with_full_jitter_under_a_growing_cap() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    fn = Flaky(*(TransientError("p", "busy") for _ in range(4)))
    assert await call_with_retries(fn, attempts=5, max_wait=1.0, sleep=sleep, rng=lambda: 1.0)
    assert waits == [0.25, 0.5, 1.0, 1.0]  # the cap doubles, then max_wait holds
    waits.clear()
    fn = Flaky(TransientError("p", "busy"))
    await call_with_retries(fn, attempts=2, max_wait=1.0, sleep=sleep, rng=lambda: 0.5)
    assert waits == [0.125]


@pytest.mark.parametrize(("left", "tries"), [(0.5, 1), (1.5, 2), (None, 2)])
async def test_short_retries_start_no_try_that_the_deadline_would_overtake(
    left: float | None, tries: int
) -> None:
    """A lookup's deadline: no retry once its longest wait (max_wait) would reach it."""
    import asyncio

    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise TransientError("population", "busy")

    async def sleep(_: float) -> None:
        return None

    deadline = None if left is None else asyncio.get_running_loop().time() + left
    with pytest.raises(TransientError):
        await call_with_retries(fn, attempts=2, max_wait=1.0, deadline=deadline, sleep=sleep)
    assert calls == tries
