"""Errors raised by the outbox's public calls.

Exceptions::

    OutboxError            base
    ├── JobNotFound        no job has that id (also a LookupError)
    └── NotDead            the job exists but is not dead, so it cannot be replayed

:class:`gateway.outbox.breaker.CircuitOpen` is NOT in this tree: it is a
:class:`connectors.api.TransientError`, so code that retries registry calls handles it already.
"""

from __future__ import annotations

__all__ = ["JobNotFound", "NotDead", "OutboxError"]


class OutboxError(Exception):
    """Something the outbox refused or could not do."""


class JobNotFound(OutboxError, LookupError):
    """No outbox job has this id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no outbox job {job_id}")
        self.job_id = job_id


class NotDead(OutboxError):
    """Only dead jobs can be replayed; this one is in another state."""

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(
            f"outbox job {job_id} is {state}, not dead: only dead jobs can be replayed"
            if state != "dead"
            else f"outbox job {job_id} was replayed by another request meanwhile: no longer dead"
        )
        self.job_id = job_id
        self.state = state
