"""Fault injection for the sandboxes: make an emulated registry slow, failing or garbled.

A :class:`FaultPlan` says how often each fault happens; :func:`fault_middleware` applies it to
every request of a sandbox except its ``/_sandbox/`` admin routes. Decisions come from one
``random.Random(seed)`` drawn in arrival order, so the same requests in the same order meet the
same faults. ``PUT /_sandbox/faults`` (JSON, the plan's fields) changes the plan at run time;
``GET /_sandbox/faults`` shows it.

Kinds, as a client sees them:
- ``error_rate``: 503 before the request is processed;
- ``timeout_rate``: no answer for ``hang_s`` seconds (longer than any sane client timeout);
- ``reset_rate``: the connection is dropped before the request is processed;
- ``lost_reply_rate``: the request IS processed, then the connection is dropped — the case that
  only idempotency keys make safe;
- ``malformed_rate``: 200 with a body that is not the contract's;
- ``latency_ms``: added to every answer;
- ``outages``: windows ``(start_s, end_s)`` after the sandbox started during which it answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["FAULTS_KEY", "FaultPlan", "FaultState", "fault_middleware", "fault_routes"]

_KINDS = ("error", "timeout", "reset", "lost_reply", "malformed")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    lost_reply_rate: float = 0.0
    malformed_rate: float = 0.0
    latency_ms: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()
    hang_s: float = 30.0
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> FaultPlan:
        """Build a plan from config or JSON; unknown keys and out-of-range rates are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        values = dict(data)
        if "outages" in values:
            values["outages"] = tuple((float(a), float(b)) for a, b in values["outages"])
        plan = cls(**values)
        for kind in _KINDS:
            rate = getattr(plan, f"{kind}_rate")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{kind}_rate must be between 0 and 1, not {rate}")
        return plan

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultState:
    """The live plan of one sandbox, its random stream, and counts of what it injected."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.started = time.monotonic()
        self.injected: dict[str, int] = {}
        self.set_plan(plan or FaultPlan())

    def set_plan(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)

    def draw(self) -> str | None:
        """The fault for the next request, or None. One draw per request keeps runs repeatable."""
        plan, roll = self.plan, self._rng.random()
        elapsed = time.monotonic() - self.started
        if any(start <= elapsed < end for start, end in plan.outages):
            return self._count("outage")
        for kind in _KINDS:
            rate: float = getattr(plan, f"{kind}_rate")
            if roll < rate:
                return self._count(kind)
            roll -= rate
        return None

    def _count(self, kind: str) -> str:
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind


FAULTS_KEY = web.AppKey("faults", FaultState)

MALFORMED_BODY = b"<html><body>502 Bad Gateway (upstream garbled)</body>"


def _drop(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.close()
    # The socket is gone; aiohttp discards what follows.
    raise asyncio.CancelledError


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_sandbox/"):
        return await handler(request)
    state = request.app[FAULTS_KEY]
    if state.plan.latency_ms:
        await asyncio.sleep(state.plan.latency_ms / 1000)
    fault = state.draw()
    if fault in ("error", "outage"):
        return web.Response(status=503, text="Service Unavailable (sandbox fault)")
    if fault == "timeout":
        await asyncio.sleep(state.plan.hang_s)
        return web.Response(status=504, text="Gateway Timeout (sandbox fault)")
    if fault == "reset":
        return _drop(request)
    response = await handler(request)
    if fault == "lost_reply":
        return _drop(request)
    if fault == "malformed":
        return web.Response(status=200, body=MALFORMED_BODY, content_type=response.content_type)
    return response


async def _get_faults(request: web.Request) -> web.Response:
    state = request.app[FAULTS_KEY]
    return web.json_response({"plan": state.plan.as_dict(), "injected": state.injected})


async def _put_faults(request: web.Request) -> web.Response:
    try:
        plan = FaultPlan.from_mapping(await request.json())
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    request.app[FAULTS_KEY].set_plan(plan)
    return await _get_faults(request)


def fault_routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/faults", _get_faults), web.put("/_sandbox/faults", _put_faults)]
