"""Run the registry sandboxes together, and the pieces every sandbox shares.

- :func:`run_sandboxes` starts the emulators on loopback and yields ``name → base URL``;
- :func:`sandbox_endpoint` gives the :class:`~connectors.api.Endpoint` (URL + the sandbox's
  built-in credentials) a connector needs to talk to one of them;
- :func:`new_sandbox_app`, :class:`Ledger` and :func:`idempotent_write` are the common machinery of
  a sandbox application: fault injection, request/write/replay counts at ``GET /_sandbox/stats``,
  and the idempotency record that makes the same ``Idempotency-Key`` register once;
- :func:`serve_app` serves one application on a real socket (port 0 = a free port).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from connectors.api import Endpoint
from connectors.faults import FAULTS_KEY, FaultPlan, FaultState, fault_middleware, fault_routes

__all__ = [
    "LEDGER_KEY",
    "REGISTRIES",
    "Ledger",
    "Outcome",
    "counting",
    "idempotent_write",
    "new_sandbox_app",
    "run_sandboxes",
    "sandbox_endpoint",
    "serve_app",
]

# The registries, in flow order. Defined here rather than in connectors/__init__ so that this module
# never needs the package's __init__ (re-exported there as connectors.REGISTRIES).
REGISTRIES: tuple[str, ...] = ("population", "civil_status", "insurance", "business", "portal")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Record:
    operation: str
    fingerprint: str
    status: int
    payload: Any


@dataclass
class Ledger:
    """What a sandbox saw: requests, distinct writes per operation, replays by idempotency key."""

    requests: int = 0
    writes: dict[str, int] = field(default_factory=dict)
    replays: int = 0
    records: dict[str, _Record] = field(default_factory=dict)

    def as_stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "writes": dict(self.writes), "replays": self.replays}


LEDGER_KEY = web.AppKey("ledger", Ledger)


def counting(ledger_of: Callable[[web.Application], Any]) -> Middleware:
    """A middleware counting each request but the admin routes in ``ledger_of(app)``. Put it
    before the fault middleware, so requests that meet a fault are counted too: "the sandbox saw
    zero requests" must mean nothing reached it at all."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/_sandbox/"):
            ledger_of(request.app).requests += 1
        return await handler(request)

    return count


_count_requests = counting(lambda app: app[LEDGER_KEY])


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[LEDGER_KEY].as_stats())


def new_sandbox_app(
    *, faults: FaultPlan | None = None, routes: Iterable[web.AbstractRouteDef] = ()
) -> web.Application:
    """An application with request counting, fault injection and the ``/_sandbox/`` admin routes."""
    app = web.Application(middlewares=[_count_requests, fault_middleware])
    app[FAULTS_KEY] = FaultState(faults)
    app[LEDGER_KEY] = Ledger()
    app.router.add_routes([*fault_routes(), web.get("/_sandbox/stats", _stats), *routes])
    return app


Outcome = Literal["written", "found", "rejected"]


async def idempotent_write(
    request: web.Request,
    operation: str,
    body: bytes,
    perform: Callable[[], tuple[int, Any, Outcome]],
) -> web.Response:
    """Perform a write once per ``Idempotency-Key``; later deliveries get the recorded answer.

    ``perform`` returns ``(status, json payload, outcome)``: ``"written"`` (a new registration:
    counted in ``writes`` and recorded under the key), ``"found"`` (answered from an earlier
    registration of the same thing under another key: recorded, not counted) or ``"rejected"``
    (neither, so a corrected request may be sent again under the same key). The same key with a
    different body is refused with 409: replaying an answer to a different question would be
    wrong. ``perform`` must not await: check-and-record happens without yielding to the loop, so
    two concurrent deliveries of one key cannot both perform the write.
    """
    ledger = request.app[LEDGER_KEY]
    key = request.headers.get("Idempotency-Key")
    fingerprint = hashlib.sha256(operation.encode() + b"\0" + body).hexdigest()
    if key is not None and (record := ledger.records.get(key)) is not None:
        if record.fingerprint != fingerprint:
            return web.json_response(
                {"error": "idempotency-key-reused", "detail": "same key, different request"},
                status=409,
            )
        ledger.replays += 1
        return web.json_response(record.payload, status=record.status)
    status, payload, outcome = perform()
    if outcome == "written":
        ledger.writes[operation] = ledger.writes.get(operation, 0) + 1
    if outcome != "rejected" and key is not None:
        ledger.records[key] = _Record(operation, fingerprint, status, payload)
    return web.json_response(payload, status=status)


@asynccontextmanager
async def serve_app(
    app: web.Application, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0 = a free port) and yield its base URL."""
    # A short shutdown: a sandbox may be holding a request open on purpose (the timeout fault).
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound[1]}"  # IPv6 in brackets
    finally:
        await runner.cleanup()


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    # Routing by declared keyword (not **options) means a typo is refused, not silently ignored.
    parameter = inspect.signature(factory).parameters.get(name)
    return parameter is not None and parameter.kind is not inspect.Parameter.VAR_KEYWORD


@asynccontextmanager
async def run_sandboxes(
    *,
    names: Iterable[str] = REGISTRIES,
    seed: int = 0,
    faults: Mapping[str, FaultPlan] | None = None,
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    **options: Any,
) -> AsyncIterator[dict[str, str]]:
    """Start the named sandboxes on ``host`` and yield ``name → base URL``.

    The base URL is the REST registries' Endpoint URL as it is; the SOAP ones serve under
    ``/soap``. ``sandbox_endpoint(name, url)`` gives the right Endpoint for any of them.

    Each option goes to the sandboxes whose ``create_app`` names it as a keyword (``signer`` and
    ``trust`` reach civil_status). Ports default to 0 (a free port each).

    Raises:
        ValueError: an unknown registry name, or fault plans / ports for a registry not started.
        TypeError: an option no started sandbox accepts.
        OSError: a requested port is taken.
    """
    wanted = list(names)
    unknown = sorted(set(wanted) - set(REGISTRIES))
    if unknown:
        raise ValueError(f"unknown registry name(s): {', '.join(unknown)}")
    faults, ports = dict(faults or {}), dict(ports or {})
    strays = sorted((set(faults) | set(ports)) - set(wanted))
    if strays:
        raise ValueError(f"faults or ports given for registries not started: {', '.join(strays)}")
    factories: dict[str, Callable[..., web.Application]] = {
        name: importlib.import_module(f"connectors.{name}.sandbox").create_app for name in wanted
    }
    used: set[str] = set()
    urls: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        for name, factory in factories.items():
            mine = {k: v for k, v in options.items() if _accepts(factory, k)}
            used |= set(mine)
            app = factory(seed=seed, faults=faults.get(name), **mine)
            urls[name] = await stack.enter_async_context(
                serve_app(app, host=host, port=ports.get(name, 0))
            )
        unused = sorted(set(options) - used)
        if unused:
            raise TypeError(f"no sandbox accepts option(s): {', '.join(unused)}")
        yield urls


def sandbox_endpoint(name: str, url: str, **overrides: Any) -> Endpoint:
    """The Endpoint for the sandbox of ``name`` whose base URL (from :func:`run_sandboxes`) is
    ``url``: its built-in test credentials and service path, with ``overrides`` applied
    (``timeout=…``, ``sign_requests=…``).

    A sandbox module says how with ``endpoint(url)`` or ``sandbox_endpoint(url)``; without
    either, the URL alone.

    Raises:
        ValueError: an unknown registry name.
    """
    if name not in REGISTRIES:
        raise ValueError(f"unknown registry name: {name}")
    module = importlib.import_module(f"connectors.{name}.sandbox")
    make = getattr(module, "endpoint", None) or getattr(module, "sandbox_endpoint", None)
    base: Endpoint = make(url) if make is not None else Endpoint(url=url)
    return dataclasses.replace(base, **overrides) if overrides else base
