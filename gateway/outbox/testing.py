"""Test doubles for code that runs on the outbox: a clock you move by hand and a scripted handler.

The worker and store under test stay real; these stand in for the code AROUND the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.audit import decode_entry
from gateway.store import Store, Tx

from .jobs import Job
from .worker import Delivery

__all__ = ["Failure", "ManualClock", "ScriptedHandler", "audit_entries"]


class ManualClock:
    """A ``time.time``-like clock that only moves when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Failure:
    """One call of :meth:`ScriptedHandler.failed`."""

    job: int
    attempt: int
    error: str
    dead: bool
    retry_in: float | None
    given_up: str | None = None  # why it was given up for its time of failing (see Worker)


class ScriptedHandler:
    """A :class:`~gateway.outbox.JobHandler` whose attempts follow a script.

    Each ``run`` takes the next outcome: an exception instance is raised, None succeeds (once the
    script is used up, every run succeeds). ``call`` — an async function of the job — replaces the
    script when given (e.g. a registry call through a breaker). ``gate``, when set, makes every
    run wait for it after announcing itself on ``started``.

    ``recorded`` lists ``(job id, attempt)`` each time a recording unit RAN (even if its
    transaction later rolled back), which is what exactly-once tests need to see.
    """

    def __init__(
        self,
        *outcomes: BaseException | None,
        call: Callable[[Job], Any] | None = None,
        gate: asyncio.Event | None = None,
        reference: str | None = "REF-1",
        record_error: BaseException | None = None,
        failed_error: BaseException | None = None,
    ) -> None:
        self.outcomes = list(outcomes)
        self.call = call
        self.gate = gate
        self.started = asyncio.Event()
        self.reference = reference
        self.record_error = record_error
        self.failed_error = failed_error
        self.runs: list[Job] = []
        self.recorded: list[tuple[int, int]] = []
        self.failures: list[Failure] = []

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        self.runs.append(job)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.call is not None:
            await self.call(job)
        elif self.outcomes:
            outcome = self.outcomes.pop(0)
            if outcome is not None:
                raise outcome

        def record(tx: Tx) -> Delivery:
            self.recorded.append((job.id, job.attempts))
            if self.record_error is not None:
                raise self.record_error
            return Delivery(reference=self.reference)

        return record

    def failed(
        self,
        tx: Tx,
        job: Job,
        error: BaseException,
        *,
        dead: bool,
        retry_in: float | None,
        given_up: str | None = None,
    ) -> None:
        if self.failed_error is not None:
            raise self.failed_error
        self.failures.append(Failure(job.id, job.attempts, str(error), dead, retry_in, given_up))


async def audit_entries(store: Store) -> list[dict[str, Any]]:
    """Every audit entry, decoded, in sequence order (for assertions on what was audited)."""

    def work(tx: Tx) -> list[dict[str, Any]]:
        rows = tx.all("audit.range", start=0, stop=2**62)
        return [decode_entry(bytes(r["entry"])) for r in rows]

    return await store.read(work)
