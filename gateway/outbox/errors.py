"""Errors raised by the outbox's public calls.

Exceptions::

    OutboxError            base
    ├── JobNotFound        no job has that id (also a LookupError)
    ├── NotDead            the job exists but is not dead, so it cannot be replayed
    └── AttemptLost        given to a handler's ``failed``: an attempt whose holder stopped
                           mid-way (its outcome is unknown), never raised by a public call

:class:`gateway.outbox.breaker.CircuitOpen` is NOT in this tree: it is a
:class:`connectors.api.TransientError`, so code that retries registry calls handles it already.
"""

from __future__ import annotations

__all__ = ["AttemptLost", "JobNotFound", "NotDead", "OutboxError"]


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


class AttemptLost(OutboxError):
    """The gateway that made attempt ``attempt`` stopped before recording it (killed, hung, or
    cut off from the store until its lease ran out): the registry may or may not have done what
    it was asked. The worker that takes the job over records it as a failed attempt with this
    error — retried by the policy like any fault whose answer was lost, or dead once the job's
    attempts are used up."""

    def __init__(self, attempt: int) -> None:
        super().__init__(
            f"the gateway stopped during attempt {attempt} (its lease ran out): "
            "its outcome is unknown"
        )
        self.attempt = attempt
