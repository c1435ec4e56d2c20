"""The aiohttp application factory: one settings object in, a running gateway out.

Every resource opens and closes in one ``cleanup_ctx`` (store → sandboxes → connectors → outbox
worker), in that order and back, so a gateway that fails to start leaves nothing half-open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes

from connectors import create_connector
from connectors.api import Connector, Endpoint
from connectors.faults import FaultPlan
from connectors.sandboxes import run_sandboxes, sandbox_endpoint
from gateway.audit import withhold_numbers
from gateway.auth import IDENTITY_KEY, Authenticator
from gateway.crossorigin import cross_site_middleware
from gateway.exchange import DocumentHub, ExchangeError
from gateway.flows import (
    CallbackHandler,
    FlowStepHandler,
    PortalProgressHandler,
    PortalSyncHandler,
)
from gateway.gil import quick_handoffs
from gateway.metrics import Metrics
from gateway.outbox.breaker import Breakers
from gateway.outbox.jobs import Job
from gateway.outbox.retry import RetryPolicy
from gateway.outbox.worker import JobHandler, Worker
from gateway.parse_errors import server_handler_args
from gateway.problems import (
    CLIENT_CLOSED,
    SERVER,
    Problem,
    client_gone,
    defer_expectation,
    problem_middleware,
)
from gateway.requestid import REQUEST_ID_KEY, echo_request_id, request_id_middleware
from gateway.settings import REGISTRY_NAMES, Settings, SettingsError, citizen_key
from gateway.store import Store, StoreError, open_store

if TYPE_CHECKING:
    from signing.testing import TestPKI

__all__ = ["RUNTIME", "Runtime", "create_app"]

log = logging.getLogger("lienthong.http")
_documents_log = logging.getLogger("lienthong.documents")
_pki_log = logging.getLogger("lienthong.signing")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Runtime:
    """Everything the handlers share, built once per app in :func:`_lifecycle`."""

    settings: Settings
    store: Store
    metrics: Metrics
    auth: Authenticator
    breakers: Breakers
    connectors: dict[str, Connector] = field(default_factory=dict)
    registry_urls: dict[str, str] = field(default_factory=dict)
    worker: Worker | None = None
    citizen_key: bytes = b""
    extras: dict[str, Any] = field(default_factory=dict)  # pki, signer, trust, checkpointer …

    def connector(self, name: str) -> Connector:
        try:
            return self.connectors[name]
        except KeyError:
            raise Problem(
                503, "registry-unavailable", f"the {name} registry is not configured", registry=name
            ) from None


RUNTIME = web.AppKey("runtime", Runtime)
# Seconds a request waited for registries (a lookup's calls, retries included): logged beside its
# whole duration, so that a slow answer says whose time it was.
REGISTRY_SECONDS_KEY = web.RequestKey("registry_seconds", float)


async def _route_name(request: web.Request) -> str:
    """The template of the route that answered; for a 405, of the resource whose path matched
    (the method did not), so that a route's 405s are not counted with scanners' 404s; for a path
    no route has, "unmatched"."""
    match = request.match_info
    if match.route.resource is not None:
        return match.route.resource.canonical
    if isinstance(match.http_exception, web.HTTPMethodNotAllowed):
        for resource in request.app.router.resources():
            _, allowed = await resource.resolve(request)  # a match of the path alone: no I/O
            if allowed:
                return resource.canonical
    return "unmatched"


# A tax code is an individual's personal id since 1 July 2025 (identifiers.md), and access logs
# must never hold one (API.md: personal ids never travel in URLs, because logs keep URLs). Its one
# route keeps its tax code in the path (API.md); the log names the route instead of the path, and
# so it does for any path under it that matched no route (a 404, a 405).
_TAX_CODE_ROUTE = "/v1/lookups/enterprises/{tax_code}"
_TAX_CODE_PREFIX = _TAX_CODE_ROUTE.removesuffix("{tax_code}")


# Any other path may hold what a client typed there by mistake (``//v1/lookups/enterprises/…``, a
# personal id as a dossier code): runs of 9 or more digits (an old ID card has 9, a personal id
# 12, a tax code 10 or 13), also typed in groups (``094 182 054 845``), are masked, as free text
# in the audit log is (withhold_numbers), which keeps an amount of money ("100.000.000 đồng").
# Dossier codes and document ids have no such run.


def _logged_path(request: web.Request) -> str:
    """The path an access-log line shows: the route's template where the path carries a tax
    code, else the path with anything that may be a person's number masked."""
    path = request.path
    if path.startswith(_TAX_CODE_PREFIX):
        return _TAX_CODE_ROUTE
    return withhold_numbers(path, "…")


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics and one JSON access-log line per request, once its answer has been sent (never
    the body, never a query string, never a tax code: see _logged_path)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        # Sent here rather than by aiohttp once every middleware has returned, so that the
        # clock and the status cover the body: a document is streamed for as long as its reader
        # takes (an 11 s fetch was logged as 2 ms, and one its reader left halfway as a 200).
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:  # the client left while the answer was being sent
            status = CLIENT_CLOSED
        return response
    except web.HTTPException as exc:  # a redirect (GET /console → /console/) aiohttp answers
        status = exc.status
        raise
    except asyncio.CancelledError:
        if client_gone(request):  # aiohttp cancels the handler of a client that went away
            status = CLIENT_CLOSED
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = await _route_name(request)
        metrics = request.app[RUNTIME].metrics if RUNTIME in request.app else None
        if metrics is not None:
            metrics.answered(request.method, route, status, elapsed)
        identity = request.get(IDENTITY_KEY)
        extra = {
            "request_id": request.get(REQUEST_ID_KEY),
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "route": route,
            "client": identity.id if identity else None,
        }
        registry = request.get(REGISTRY_SECONDS_KEY)
        if registry is not None:
            extra["registry_ms"] = round(registry * 1000, 3)
        log.info("%s %s %s", request.method, _logged_path(request), status, extra=extra)


@web.middleware
async def identify_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    identity = runtime.auth.identify(request)
    if identity is not None:
        signing = runtime.extras.get("signing")
        if identity.via == "mtls" and signing is not None and signing.clients is not None:
            await signing.clients.check(request)
        request[IDENTITY_KEY] = identity
    return await handler(request)


def _fault_plans(settings: Settings) -> dict[str, FaultPlan]:
    try:
        return {
            name: FaultPlan.from_mapping(dict(p)) for name, p in settings.sandbox.faults.items()
        }
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"[sandbox.faults]: {exc}") from None


SIGNED_BY_DEFAULT = {"civil_status"}  # registries whose contract requires signed requests


def _endpoint(settings: Settings, name: str, sandbox_url: str | None) -> Endpoint:
    reg = settings.registry(name)
    sign = reg.sign_requests if reg.sign_requests is not None else name in SIGNED_BY_DEFAULT
    if sandbox_url is not None:
        return sandbox_endpoint(name, sandbox_url, timeout=reg.timeout_s, sign_requests=sign)
    assert reg.url is not None
    return Endpoint(
        url=reg.url,
        username=reg.username,
        password=reg.password,
        secret=reg.secret,
        api_key=reg.api_key,
        client_id=reg.client_id,
        timeout=reg.timeout_s,
        sign_requests=sign,
    )


def _policy(settings: Settings) -> Callable[[Job], RetryPolicy]:
    policies: dict[str, RetryPolicy] = {}
    for name in REGISTRY_NAMES:
        r = settings.registry(name).retry
        policies[name] = RetryPolicy(
            max_attempts=r.max_attempts,
            base_delay=r.base_delay_s,
            max_delay=r.max_delay_s,
            jitter=r.jitter,
        )
    default = policies["portal"]

    def policy_for(job: Job) -> RetryPolicy:
        service = str(job.payload.get("service", ""))
        return policies.get(service.split("/", 1)[0], default)

    return policy_for


def _preload_connectors() -> None:
    """Import every registry's client and sandbox now, in a thread: their modules (zeep, the
    signing stack) are read from disk, which must not happen on the event loop."""
    for name in REGISTRY_NAMES:
        for part in ("client", "sandbox"):
            importlib.import_module(f"connectors.{name}.{part}")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await asyncio.to_thread(_preload_connectors)
    configured = None
    if runtime.extras.pop("load_keys", False):
        from gateway.keys import configured_signing

        # Reading key files is disk and CPU work: off the loop. A key refused is told before
        # the store is opened, or made.
        configured = await asyncio.to_thread(configured_signing, runtime.settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(runtime.store)
        await _bind_blob_folder(runtime)
        if configured is not None:
            from gateway.keys import completed_signing

            # The development PKI (its CAs' private keys) is made on a first start only once the
            # store and the blob folder are this gateway's: a start refused for them (another
            # application's database) leaves nothing beside the config. Off the loop too.
            runtime.extras["signing"] = await asyncio.to_thread(
                completed_signing, runtime.settings, configured
            )
            if runtime.extras.pop("serve_pki", False):
                await _serve_test_pki(runtime.extras["signing"].pki, stack)
        await _start_checkpointer(runtime, stack)
        await _start_registries(runtime, stack)
        await _start_worker(runtime, stack)
        with _tuned_for_serving():
            yield


@contextlib.contextmanager
def _tuned_for_serving() -> Iterator[None]:
    """Three process settings for serving, undone on the way out (tests run many apps in one
    process), each measured under the lookup bench:

    - ``gc.freeze()``: everything loaded so far (WSDL models, keys, code) lives as long as the
      process; left in the collector's generations, each full collection walked all of it again,
      pausing the loop 30–70 ms.
    - collections less often (``gc.set_threshold(20_000, 20, 20)``): what a request allocates is
      nearly all freed by reference counting, yet each collection walks every request in flight.
      In paired runs (December 6): +4.0 and +4.6 % lookups/s and 3 and 8 % less CPU per lookup;
      in 24 s at 600 lookups/s, 2 collections took over 1 ms instead of 31.
    - a 0.5 ms GIL switch interval (:func:`gateway.gil.quick_handoffs`): the loop shares the GIL
      with the store's writer thread, and a lookup waits for its audit commit, which takes the
      writer two or three GIL hand-offs; with CPython's default 5 ms a busy loop kept the writer
      waiting (added p99 18 ms → 8 ms).
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        with quick_handoffs():
            yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _bind_blob_folder(runtime: Runtime) -> None:
    """Refuse to start on a blob folder that is not the store's: gateways sharing a store that
    each kept their own would answer 500 for the documents the others took."""
    from gateway.api import documents
    from gateway.exchange.blobs import BlobStore, bind_to_store

    blobs = await asyncio.to_thread(BlobStore, documents.blob_dir(runtime))  # makes its folders
    await bind_to_store(blobs, runtime.store)


async def _start_registries(runtime: Runtime, stack: AsyncExitStack) -> None:
    """The sandboxes for registries without a url (embedded default), then every connector."""
    settings = runtime.settings
    sandboxed = [n for n in REGISTRY_NAMES if settings.registry(n).url is None]
    if sandboxed and not settings.embedded:
        raise SettingsError(
            f"no url for registr{'y' if len(sandboxed) == 1 else 'ies'} {', '.join(sandboxed)}: "
            "set [registries.<name>] url, or [sandbox] embedded = true"
        )
    civil_options: dict[str, Any] = {}
    sandbox_options: dict[str, Any] = {}
    signing = runtime.extras.get("signing")
    if signing is not None:
        civil_options = {
            "signer": signing.signer,
            "trust": signing.trust,
            "register_fingerprints": _register_fingerprints(settings, signing.register),
        }
        if "civil_status" in sandboxed:
            # The register takes requests from this gateway only, as the real one from the
            # members whose certificates it registered.
            callers = [signing.signer.certificate]
            sandbox_options = {
                "signer": signing.register,
                "trust": signing.trust,
                "callers": callers,
            }
    if sandboxed:
        plans = _fault_plans(settings)
        runtime.registry_urls = await stack.enter_async_context(
            run_sandboxes(
                names=sandboxed,
                seed=settings.sandbox.seed,
                faults={k: v for k, v in plans.items() if k in sandboxed},
                **sandbox_options,
            )
        )
    for name in REGISTRY_NAMES:
        endpoint = _endpoint(settings, name, runtime.registry_urls.get(name))
        options = civil_options if name == "civil_status" else _officer(settings, name)
        runtime.connectors[name] = await stack.enter_async_context(
            create_connector(name, endpoint, **options)
        )


def _register_fingerprints(settings: Settings, sandbox_register: Any) -> tuple[str, ...]:
    """The certificates whose signatures on a birth certificate are the register's:
    ``[registries.civil_status] signer_fingerprint`` (required with its url), else the embedded
    sandbox's register key, of the development PKI."""
    configured = settings.registry("civil_status").signer_fingerprints
    if configured or sandbox_register is None:
        return configured
    return (sandbox_register.certificate.fingerprint(hashes.SHA256()).hex(),)


def _officer(settings: Settings, name: str) -> dict[str, str]:
    """The officer a registry is told asks (``officer_name``, ``officer_id``), where it takes
    one and the configuration names one; and the population registry's ``service_code``."""
    reg = settings.registry(name)
    if name == "population":
        # Only the embedded sandbox has none configured (a real url requires both).
        from connectors.population.sandbox import SANDBOX_OFFICER_ID

        named = {"officer_id": reg.officer_id or SANDBOX_OFFICER_ID}
        return named | ({"service_code": reg.service_code} if reg.service_code else {})
    if name == "insurance":
        # Likewise (a real url requires both): the embedded sandbox refuses a card check that
        # names no person as the officer, as BHXH does.
        from connectors.insurance.sandbox import SANDBOX_OFFICER

        named = {"officer_name": reg.officer_name, "officer_id": reg.officer_id}
        return {k: v or SANDBOX_OFFICER[k] for k, v in named.items()}
    return {}


async def _start_worker(runtime: Runtime, stack: AsyncExitStack) -> None:
    """The outbox worker with a handler for every job kind, and the document hub."""
    from gateway.api import documents

    settings = runtime.settings
    # Every callback and agency push, to any receiver: no cookie jar, or one receiver's cookies
    # went back with every later request to its host (another subsystem's callbacks, an
    # agency's pushes), and a receiver could grow the jar, and those requests' Cookie header,
    # without bound. The registries' calls go over connectors.http1, which keeps no cookies.
    session = await stack.enter_async_context(
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    )
    handlers: dict[str, JobHandler] = {
        "flow.step": FlowStepHandler(
            runtime.store,
            runtime.connectors,
            runtime.breakers,
            citizen_key=runtime.citizen_key,
            metrics=runtime.metrics,
            on_result=runtime.extras.get("on_result"),
        ),
        "callback": CallbackHandler(
            runtime.store,
            lambda: session,
            {s.id: s for s in settings.subsystems},
            timeout_s=settings.gateway.callback_timeout_s,
            breakers=runtime.breakers,
            # A receiver that hangs holds at most a quarter of the workers.
            max_in_flight=max(1, settings.outbox.workers // 4),
        ),
        "portal.sync": PortalSyncHandler(
            runtime.connectors["portal"], runtime.store, runtime.breakers, runtime.metrics
        ),
        "portal.progress": PortalProgressHandler(
            runtime.connectors["portal"], runtime.store, runtime.breakers, runtime.metrics
        ),
    }
    # The blob store makes its folders: off the loop.
    handlers.update(await asyncio.to_thread(documents.job_handlers, runtime, lambda: session))
    handlers.update(runtime.extras.get("handlers", {}))
    runtime.worker = Worker(
        runtime.store,
        handlers,
        policy=_policy(settings),
        concurrency=settings.outbox.workers,
        lease=settings.outbox.lease_s,
        poll_interval=settings.outbox.poll_s,
        give_up_after=settings.outbox.give_up_after_s,
        metrics=runtime.metrics,
    )
    await stack.enter_async_context(runtime.worker)
    if runtime.extras.get("signing") is not None:
        hub = await documents.hub_for(runtime)  # built now, on this loop, not on a first request
        # Before the first request: a DocumentId an earlier version filed as sent is looked up
        # by its normal form from now on.
        if refiled := await hub.refile_document_ids():
            _documents_log.info("%d stored DocumentId(s) refiled as yyyy/MM/dd", refiled)
        sweeper = asyncio.create_task(_sweep_blobs(hub), name="lienthong-blob-sweeper")
        stack.callback(sweeper.cancel)


async def _sweep_blobs(hub: DocumentHub, every_s: float = 3600, first_s: float = 60) -> None:
    """Hourly, the blobs of document intakes whose transaction failed (DocumentHub.sweep); the
    first a minute after start, so that a gateway restarted more often than hourly sweeps too."""
    delay = first_s
    while True:
        await asyncio.sleep(delay)
        delay = every_s
        try:
            swept = await hub.sweep()
        except (ExchangeError, StoreError) as exc:
            _documents_log.warning("blob sweep failed: %s", exc)
            continue
        if swept:
            _documents_log.info(
                "swept %d blobs no document names", len(swept), extra={"blobs": swept}
            )


async def _serve_test_pki(pki: TestPKI | None, stack: AsyncExitStack) -> None:
    """The sandboxes' test PKI's CRLs and OCSP, at the URLs its certificates name, as the demo
    serves them while it runs: without them every revocation check of its certificates (a
    revoked agency's signature among them) found the status unknown and, under soft-fail,
    accepted it. A port another program holds (`lienthong pki serve` of the same PKI, another
    gateway's PKI) is logged, not refused: a development convenience does not stop the start."""
    if pki is None:
        return
    from signing.testing import serve_pki

    try:
        url = await stack.enter_async_context(serve_pki(pki))
    except OSError as exc:
        _pki_log.warning(
            "cannot serve the test PKI's CRLs and OCSP on %s (%s): its certificates' revocation "
            "status is asked there, and is unknown unless something there answers "
            "(`lienthong pki serve %s`)",
            pki.base_url,
            exc.strerror or exc,
            pki.directory,
        )
    else:
        _pki_log.info("serving the test PKI's CRLs and OCSP on %s (development only)", url)


async def _start_checkpointer(runtime: Runtime, stack: AsyncExitStack) -> None:
    """Signed, timestamped audit checkpoints; with ``fail_closed_after_s`` the gateway refuses new
    work (503 ``not-accepting``, and /readyz says why) while checkpoints cannot be timestamped;
    before that (or with no limit) /readyz names the failure in a ready answer."""
    from gateway.audit.checkpoints import Checkpointer
    from signing.timestamps import serve_tsa

    settings, signing = runtime.settings, runtime.extras.get("signing")
    if signing is None:
        return  # no key: no checkpoints (unit tests of the HTTP layer)
    audit = settings.audit
    tsa_url = audit.tsa_url
    if tsa_url is None and signing.pki is not None:
        # The embedded default: a local TSA of the test PKI, as the real one would be configured.
        tsa_url = await stack.enter_async_context(serve_tsa(signing.pki.directory))
    if tsa_url is None:
        raise SettingsError("[audit] tsa_url is required for signed, timestamped checkpoints")
    checkpointer = Checkpointer(
        runtime.store,
        signing.signer,
        tsa_url=tsa_url,
        origin=audit.origin,
        every=audit.checkpoint_every,
        interval_s=audit.checkpoint_interval_s,
        fail_closed_after_s=audit.fail_closed_after_s,
        trust=signing.trust,
        metrics=runtime.metrics,
    )
    await checkpointer.start()
    stack.push_async_callback(_last_checkpoint, checkpointer)
    runtime.extras["checkpointer"] = checkpointer
    runtime.extras.setdefault("readiness", {})["audit"] = lambda: checkpointer.readiness
    runtime.extras["accepting"] = lambda: checkpointer.healthy


async def _last_checkpoint(checkpointer: Any, timeout_s: float = 10) -> None:
    """Stop the checkpointer, then sign the log's tail: by now the server and the outbox have
    stopped, so nothing is appended after it, and a stopped gateway's log is covered whole (an
    auditor's copy of its store verified only up to the last periodic checkpoint). Bounded: a
    TSA that does not answer delays the stop by at most ``timeout_s``, and only this is lost."""
    from gateway.audit.checkpoints import CheckpointError

    await checkpointer.stop()
    try:
        async with asyncio.timeout(timeout_s):
            await checkpointer.checkpoint_now()
    except CheckpointError as exc:
        logging.getLogger("lienthong.audit").warning(
            "no checkpoint of the log's tail at stop: %s", exc
        )
    except TimeoutError:  # its text is '': say what the checkpoint was waiting for
        logging.getLogger("lienthong.audit").warning(
            "no checkpoint of the log's tail at stop: not done within %g s: %s",
            timeout_s,
            checkpointer.step,
        )


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    extras: Mapping[str, Any] | None = None,
) -> web.Application:
    """Build the gateway. ``extras`` carries optional parts (``load_keys``: load ``[signing]`` at
    start, and with it ``serve_pki``: serve the CRLs and OCSP of the sandboxes' test PKI, if one
    is used; or ``signing``: a ready SigningSetup; extra ``handlers`` by job kind; an
    ``on_result`` hook for the demo)."""
    from gateway import console
    from gateway.api import admin, audit, documents, dossiers, lookups, ops

    metrics = Metrics()
    app = web.Application(
        middlewares=[
            request_id_middleware,
            observe_middleware,
            problem_middleware,
            # Before anyone is identified: a forged request is refused whoever's certificate
            # the browser presented with it.
            cross_site_middleware,
            identify_middleware,
        ],
        client_max_size=settings.gateway.max_body_bytes,
        # What aiohttp's HTTP parser refuses, before any middleware: problem+json, one WARNING,
        # counted as requests of the route "malformed", or "unsupported-encoding" for a body in
        # br or zstd (the method and path are unknown: "-").
        handler_args=server_handler_args(
            lambda route, status: metrics.requests.labels("-", route, str(status)).inc()
        ),
    )
    app[RUNTIME] = Runtime(
        settings=settings,
        store=store
        or open_store(
            settings.store.url, base=settings.base_dir, pool_size=settings.store.pool_size
        ),
        metrics=metrics,
        auth=Authenticator(settings.subsystems),
        breakers=Breakers(
            failure_threshold=settings.outbox.breaker_failures,
            reset_after=settings.outbox.breaker_reset_s,
            metrics=metrics,
        ),
        citizen_key=citizen_key(settings),
        extras=dict(extras or {}),
    )
    app.cleanup_ctx.append(_lifecycle)
    app.on_response_prepare.append(echo_request_id)
    app.on_response_prepare.append(_name_server)
    for module in (ops, dossiers, lookups, documents, admin, audit, console):
        app.router.add_routes(map(_deferring_expect, module.routes))
    return app


def _deferring_expect(route: web.AbstractRouteDef) -> web.AbstractRouteDef:
    """``route`` with defer_expectation as its expect handler: aiohttp's default one answers
    ``Expect`` outside every middleware (gateway.problems)."""
    if not isinstance(route, web.RouteDef):  # a StaticDef takes one too: add it here then
        raise TypeError(f"{route!r}: only plain routes are registered here")
    kwargs = {**route.kwargs, "expect_handler": defer_expectation}
    return web.RouteDef(route.method, route.path, route.handler, kwargs)


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


async def _name_server(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp's default (Python/3.11 aiohttp/3.14.5) tells any client which versions to attack.
    response.headers["Server"] = SERVER
    # The API's answers carry personal data (a dossier's people, a child's issued personal id, a
    # lookup's citizen, a document): no browser or proxy in between may keep them on disk. The
    # probes' neither: /readyz tells an operator why a check fails (paths, database hosts), which
    # a shared cache would hand to anyone, and a kept probe or scrape is a stale one.
    if request.path.startswith("/v1/") or request.path in _PROBES:
        response.headers.setdefault("Cache-Control", "no-store")


def base_url_of(listen: str) -> str:
    """The URL of a ``listen`` address (``host:port``; an IPv6 host goes in brackets)."""
    host, _, port = listen.rpartition(":")
    host = host or "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def data_dir(settings: Settings) -> Path:
    return settings.base_dir
