"""Prometheus metrics, one registry per gateway (so several apps in one process do not mix)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CIRCUIT_STATES", "Metrics"]

CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "lienthong_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "lienthong_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.outbox_jobs = Gauge(
            "lienthong_outbox_jobs",
            "Outbox jobs not done, by state: pending, running, dead (the depth)",
            ["state"],
            registry=r,
        )
        self.store_up = Gauge(
            "lienthong_store_up",
            "1 if the store answered this scrape within 2 s and can be written: 0 from a write "
            "that failed for want of it (a full disk) until one succeeds (if it did not answer, "
            "the outbox depth is stale)",
            registry=r,
        )
        self.attempts = Counter(
            "lienthong_outbox_attempts",
            "Delivery attempts by outcome: delivered, superseded (done unsent: a newer "
            "notification carries the news), retry, dead, discarded (a lease lost)",
            ["kind", "outcome"],
            registry=r,
        )
        self.waits = Counter(
            "lienthong_outbox_waits",
            "Jobs put back without using an attempt (an open circuit, an earlier job of the "
            "dossier not sent yet, a receiver's callbacks all in flight)",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "lienthong_outbox_dead_letters", "Jobs that ran out of attempts", ["kind"], registry=r
        )
        self.circuit = Gauge(
            "lienthong_circuit_state",
            "Circuit breaker per registry endpoint (0 closed, 1 half-open, 2 open)",
            ["endpoint"],
            registry=r,
        )
        self.registry_calls = Counter(
            "lienthong_registry_calls",
            "Calls to national registries, by outcome: ok, refused (the registry said no), error "
            "(any other failure), cancelled (the caller stopped waiting)",
            ["registry", "operation", "outcome"],
            registry=r,
        )
        self.registry_latency = Histogram(
            "lienthong_registry_call_duration_seconds",
            "Time from sending a call to a national registry to having read its answer",
            ["registry"],
            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.audit_entries = Gauge(
            "lienthong_audit_entries", "Entries in the audit log, read at each scrape", registry=r
        )
        self.checkpoints = Counter(
            "lienthong_audit_checkpoints",
            "Periodic audit checkpoints attempted, by outcome: ok (signed, timestamped, stored) "
            "or failed (retried at the next poll)",
            ["outcome"],
            registry=r,
        )
        self.checkpoint_size = Gauge(
            "lienthong_audit_last_checkpoint_size",
            "Entries the latest audit checkpoint covers (the log's entries past it are unsealed)",
            registry=r,
        )
        self.checkpoint_time = Gauge(
            "lienthong_audit_last_checkpoint_timestamp_seconds",
            "When the latest audit checkpoint was signed, in Unix time",
            registry=r,
        )
        # labels() takes a lock and checks its arguments on every call, twice a request: the
        # series are kept here instead. As many as the registry holds: routes are the app's own.
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._called: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency. Methods other than HTTP's usual ones are
        counted as ``other``: a client may send any token as a method, and each would otherwise
        be a new series for as long as the gateway runs."""
        key = (method if method in _METHODS else "other", route, status)
        series = self._answered.get(key)
        if series is None:
            series = self._answered[key] = (
                self.requests.labels(key[0], route, str(status)),
                self.latency.labels(route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def called(self, registry: str, operation: str, outcome: str, seconds: float) -> None:
        """Count one call to a registry (``outcome``: ok, refused, error or cancelled) and its
        duration. Lookups and deliveries alike; each in-request retry is a call of its own. A
        cancelled call (its caller stopped waiting) is counted but not timed: it was not
        answered, and the time its caller waited is no time the registry took to answer."""
        key = (registry, operation, outcome)
        series = self._called.get(key)
        if series is None:
            series = self._called[key] = (
                self.registry_calls.labels(registry, operation, outcome),
                None if outcome == "cancelled" else self.registry_latency.labels(registry),
            )
        series[0].inc()
        if series[1] is not None:
            series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
