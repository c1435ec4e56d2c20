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
- ``throttle_rate``: 429 with ``Retry-After: retry_after_s`` (whole seconds, rounded up) before
  the request is processed, as a rate-limiting registry or API gateway answers;
- ``cut_reply_rate``: the request IS processed, then its reply's head and half its body are
  sent (its ``Content-Length`` promising the whole) and the connection is dropped;
- ``latency_ms``: added to every answer;
- ``outages``: windows ``(start_s, end_s)`` after the sandbox started during which it answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["FAULTS_KEY", "FaultPlan", "FaultState", "fault_middleware", "fault_routes"]

# Drawn in this order: a kind added at the end leaves every earlier plan's draws as they were.
_KINDS = ("error", "timeout", "reset", "lost_reply", "malformed", "throttle", "cut_reply")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    lost_reply_rate: float = 0.0
    malformed_rate: float = 0.0
    throttle_rate: float = 0.0
    cut_reply_rate: float = 0.0
    latency_ms: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()
    hang_s: float = 30.0
    retry_after_s: float = 5.0
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from config or JSON (``sandbox serve --faults``, ``PUT /_sandbox/faults``).

        Raises:
            ValueError: naming the field: an unknown key; a rate that is not a number between 0
                and 1; ``latency_ms``, ``hang_s`` or ``retry_after_s`` not a finite number >= 0; ``outages`` not a
                list of ``[start_s, end_s]`` with 0 <= start_s <= end_s; ``seed`` not an integer;
                rates that add up to more than 1 (each request draws at most one fault).
                Numbers are JSON numbers: neither strings nor booleans.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault plan must be an object, not {_shown(data)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in set(data) - names)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"seed must be an integer, not {_shown(value)}")
                values[name] = value
            elif name == "outages":
                values[name] = _outages(value)
            else:
                number = _number(name, value)
                if name.endswith("_rate") and not 0.0 <= number <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1, not {_shown(value)}")
                if number < 0:
                    raise ValueError(f"{name} must not be negative, not {_shown(value)}")
                values[name] = number
        # One draw per request picks at most one fault: rates are shares of the requests, and
        # over 1 together the later ones were cut short (0.7 + 0.7 gave 0.7 and 0.3).
        rates = {k: v for k, v in values.items() if k.endswith("_rate") and v}
        if sum(rates.values()) > 1.0 + 1e-9:
            shown = " + ".join(f"{k} {v:g}" for k, v in rates.items())
            raise ValueError(f"the fault rates add up to more than 1 ({shown})")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(name: str, value: Any) -> float:
    """A finite JSON number (int or float, not a bool) as a float, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {_shown(value)}")
    return number


def _outages(value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"outages must be a list of [start_s, end_s], not {_shown(value)}")
    windows = []
    for i, window in enumerate(value):
        where = f"outages[{i}]"
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise ValueError(f"{where} must be [start_s, end_s], not {_shown(window)}")
        start, end = _number(f"{where}[0]", window[0]), _number(f"{where}[1]", window[1])
        if not 0.0 <= start <= end:
            raise ValueError(f"{where} must have 0 <= start_s <= end_s, not {_shown(window)}")
        windows.append((start, end))
    return tuple(windows)


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


async def _cut(request: web.Request, response: web.Response) -> web.StreamResponse:
    body = response.body if isinstance(response.body, bytes) else b""
    cut = web.StreamResponse(status=response.status, headers=response.headers)
    cut.content_length = len(body)
    await cut.prepare(request)
    await cut.write(body[: len(body) // 2])
    return _drop(request)


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
    if fault == "throttle":
        wait = str(math.ceil(state.plan.retry_after_s))
        return web.Response(
            status=429, text="Too Many Requests (sandbox fault)", headers={"Retry-After": wait}
        )
    if fault == "reset":
        return _drop(request)
    response = await handler(request)
    if fault == "lost_reply":
        return _drop(request)
    if fault == "cut_reply" and isinstance(response, web.Response):
        return await _cut(request, response)
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
