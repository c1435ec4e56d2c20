"""Retry decisions as values (DESIGN.md convention 6), and short in-request retries.

Two kinds of retry, on purpose:

* :class:`RetryPolicy` decides for the OUTBOX: the job is put back with ``run_after = now + delay``
  and survives restarts. Long delays (minutes) are fine there.
* :func:`call_with_retries` (tenacity) is for a SYNCHRONOUS lookup a caller is waiting on: a
  couple of quick tries within about a second, never anything that must outlive the request.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from connectors.api import PermanentError, TransientError

from .breaker import CircuitOpen

__all__ = ["RetryDecision", "RetryPolicy", "call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryDecision:
    """Try again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, up to ``max_attempts`` attempts in all.

    The delay after failed attempt ``n`` (1-based) is ``min(max_delay, base_delay * 2**(n-1))``
    reduced by a random fraction of up to ``jitter`` — jitter only shortens, so ``max_delay`` is a
    true ceiling and jobs that failed together spread out instead of returning together. A
    registry's Retry-After (``TransientError.wait_s``) lengthens it, up to ``max_delay``.
    ``rng`` returns floats in [0, 1); inject one in tests.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 300.0
    jitter: float = 0.2
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def decide(self, exc: BaseException, attempt: int) -> RetryDecision | None:
        """What to do after attempt number ``attempt`` (1-based) failed with ``exc``.

        None means give up now (the job goes dead): a :class:`~connectors.api.PermanentError`
        (the registry understood and refused; resending the same thing cannot help), or the last
        allowed attempt. Anything else — TransientError, timeouts, OSError, and unexpected
        exceptions (a bug must not lose a job silently; it is retried, then dead-lettered where an
        operator can replay it) — gets a backoff delay.
        """
        if isinstance(exc, PermanentError) or attempt >= self.max_attempts:
            return None
        # Cap the exponent too: 2**attempt overflows float for absurd attempt counts.
        raw = self.base_delay * 2.0 ** min(max(attempt - 1, 0), 64)
        delay = min(self.max_delay, raw) * (1.0 - self.jitter * self.rng())
        # A registry that said when to come back (Retry-After) is not called sooner, within the
        # policy's longest delay.
        if isinstance(exc, TransientError) and exc.wait_s is not None:
            delay = max(delay, min(exc.wait_s, self.max_delay))
        return RetryDecision(delay)


# What a short in-request retry may retry: the registry might answer if asked again at once.
_RETRYABLE = (TransientError, asyncio.TimeoutError, ConnectionError)


def _worth_retrying_now(exc: BaseException, max_wait: float, deadline: float | None) -> bool:
    # Not a registry that asked to be left alone for longer than a request may wait, nor a try
    # that would start after the request's deadline.
    asked = exc.wait_s if isinstance(exc, TransientError) else None
    return (
        isinstance(exc, _RETRYABLE)
        and not isinstance(exc, CircuitOpen)
        and (asked is None or asked <= max_wait)
        and (deadline is None or asyncio.get_running_loop().time() + max_wait < deadline)
    )


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    max_wait: float = 1.0,
    deadline: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Await ``fn()`` up to ``attempts`` times while it raises a transient error.

    The wait after failed try ``n`` is random in ``[0, min(max_wait, max_wait / 4 * 2**(n-1))]``
    ("full jitter"). Re-raises the last error as it was; anything not transient — a
    PermanentError, a :class:`~gateway.outbox.breaker.CircuitOpen` (whose wait is far longer
    than a request should take), a registry's Retry-After longer than ``max_wait`` — is raised
    at once. ``deadline`` (the event loop's time): no retry once ``max_wait`` or less is left
    before it (``fn`` itself must stop at it).

    The first try is a plain await and tenacity takes over only once it has failed: building
    tenacity's retry state costs 12-19 µs a call, paid by every lookup when nearly all of them
    succeed at the first try.
    """
    try:
        return await fn()
    except BaseException as exc:
        if attempts <= 1 or not _worth_retrying_now(exc, max_wait, deadline):
            raise

    def backoff(failed: int) -> float:
        return rng() * min(max_wait, max_wait / 4 * 2.0 ** (failed - 1))

    await sleep(backoff(1))

    def wait(state: RetryCallState) -> float:  # tenacity counts from the second try
        return backoff(state.attempt_number + 1)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts - 1),
        wait=wait,
        retry=retry_if_exception(lambda exc: _worth_retrying_now(exc, max_wait, deadline)),
        sleep=sleep,
        reraise=True,
    )
    result: T = await retrying(fn)
    return result
