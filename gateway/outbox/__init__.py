"""The durable outbox: jobs enqueued with the state change that needs them, delivered by a worker
under leases, retried by policy, guarded per registry by circuit breakers, dead-lettered for an
operator to replay."""

from __future__ import annotations

from .breaker import (
    Breakers,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    NotYet,
    endpoint_of,
    wait_behind,
)
from .errors import AttemptLost, JobNotFound, NotDead, OutboxError
from .jobs import STATES, Job, JobState, counts, enqueue, get_job, list_jobs, replay
from .retry import RetryDecision, RetryPolicy, call_with_retries
from .worker import Delivery, JobHandler, Worker, after_giving_up, storable

__all__ = [
    "STATES",
    "AttemptLost",
    "Breakers",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "Delivery",
    "Job",
    "JobHandler",
    "JobNotFound",
    "JobState",
    "NotDead",
    "NotYet",
    "OutboxError",
    "RetryDecision",
    "RetryPolicy",
    "Worker",
    "after_giving_up",
    "call_with_retries",
    "counts",
    "endpoint_of",
    "enqueue",
    "get_job",
    "list_jobs",
    "replay",
    "storable",
    "wait_behind",
]
