"""A real gateway on a real socket, with the embedded sandboxes, the test PKI and a fresh store."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from blockbuster import blockbuster_ctx

from gateway.app import RUNTIME, Runtime
from gateway.cli import build_app
from gateway.settings import Settings, settings_from_mapping

MOTCUA = "VN:GOV:000.00.00.H41:motcua"
TOKENS = {
    "motcua": "t-motcua-0123456789",
    "operator": "t-operator-0123456789",
    "auditor": "t-auditor-0123456789",
    "outsider": "t-outsider-0123456789",
}
CALLBACK_SECRET = "cb-secret-of-motcua"  # at least 16 bytes
FAST_RETRY = {"max_attempts": 4, "base_delay_s": 0.02, "max_delay_s": 0.1, "jitter": 0.1}


def gateway_config(
    tmp: Path, pki_dir: Path, *, callback_urls: Sequence[str] = (), **sections: Any
) -> Settings:
    """The tests' gateway; ``callback_urls``: where motcua's callbacks may go (none by default)."""
    config: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp / 'gateway.db'}"},
        "subsystems": [
            {"id": MOTCUA, "token": TOKENS["motcua"], "callback_secret": CALLBACK_SECRET,
             "callback_urls": list(callback_urls),
             "rights": ["dossiers.submit", "lookups.citizen", "lookups.insurance-card", "lookups.enterprise"]},
            {"id": "VN:GOV:000.00.00.H41:vanhanh", "token": TOKENS["operator"], "rights": ["admin"]},
            {"id": "VN:GOV:000.00.00.H41:kiemtoan", "token": TOKENS["auditor"], "rights": ["audit.read"]},
            {"id": "VN:GOV:000.00.11.H53:motcua", "token": TOKENS["outsider"], "rights": []},
        ],
        "registries": {name: {"timeout_s": 2.0, "retry": FAST_RETRY}
                       for name in ("population", "civil_status", "insurance", "business", "portal")},
        "outbox": {"workers": 8, "lease_s": 30, "poll_s": 0.05, "breaker_failures": 50, "breaker_reset_s": 0.2},
        "sandbox": {"embedded": True, "seed": 0, "pki": str(pki_dir)},
    }  # fmt: skip
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value} if isinstance(value, dict) else value
    return settings_from_mapping(config, base_dir=tmp, environ={})


@dataclass
class Gateway:
    http: aiohttp.ClientSession
    url: str
    runtime: Runtime

    def headers(self, who: str = "motcua", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}", **extra}

    async def post(
        self, path: str, body: Any, who: str = "motcua", headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        merged = {**self.headers(who), **(headers or {})}
        return await self.http.post(self.url + path, json=body, headers=merged)

    async def get(self, path: str, who: str = "motcua") -> aiohttp.ClientResponse:
        return await self.http.get(self.url + path, headers=self.headers(who))

    async def wait_status(
        self, code: str, wanted: set[str], *, within: float = 60.0
    ) -> dict[str, Any]:
        """Poll the dossier until its status is one of ``wanted`` (bounded; never a timing assert)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            async with await self.get(f"/v1/dossiers/{code}") as r:
                doc: dict[str, Any] = await r.json()
            if doc.get("status") in wanted:
                return doc
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"dossier {code} stuck in {doc.get('status')}: {doc}")
            await asyncio.sleep(0.05)

    def sandbox(self, name: str) -> str:
        return self.runtime.registry_urls[name]


@asynccontextmanager
async def running_gateway(settings: Settings, **extras: Any) -> AsyncIterator[Gateway]:
    app = build_app(settings, **extras)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Gateway(http, str(server.make_url("")).rstrip("/"), app[RUNTIME])
    finally:
        await server.close()


@pytest.fixture
def make_gateway(tmp_path: Path, pki: Any) -> Callable[..., Any]:
    def make(**sections: Any) -> Any:
        return running_gateway(gateway_config(tmp_path, pki.directory, **sections))

    return make


@pytest.fixture
async def gateway(make_gateway: Callable[..., Any]) -> AsyncIterator[Gateway]:
    async with make_gateway() as gw:
        yield gw


@dataclass
class PopulationRegistry:
    """The population sandbox as a configured registry (not embedded): a test changes its
    records (``app[REGISTRY_KEY].people``) and reads every request body it got (``requests``)."""

    app: web.Application
    requests: list[bytes]
    settings: dict[str, Any]  # the gateway's [registries.population] for it


@asynccontextmanager
async def population_registry(
    seed: int = 0, *, on_request: Callable[[web.Application, bytes], None] | None = None
) -> AsyncIterator[PopulationRegistry]:
    """``on_request``: told of each request (its body) before the registry handles it, to change
    the registry's records as the world changes meanwhile (a mother dying mid-flow)."""
    from connectors.population.sandbox import SANDBOX_OFFICER_ID, SOAP_PATH, create_app
    from connectors.sandboxes import serve_app

    app = create_app(seed=seed, citizens=100, require_auth=False)
    requests: list[bytes] = []

    @web.middleware
    async def keep(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        requests.append(body)
        if on_request is not None:
            on_request(app, body)
        return await handler(request)

    app.middlewares.append(keep)
    async with serve_app(app) as base:
        # A url needs the registry's credentials; this sandbox does not check them.
        settings = {"url": base + SOAP_PATH, "username": "u", "secret": "s", "api_key": "k",
                    "officer_id": SANDBOX_OFFICER_ID, "service_code": "1.001193", "timeout_s": 2.0, "retry": FAST_RETRY}  # fmt: skip
        yield PopulationRegistry(app, requests, settings)


POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.encode())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``[store]`` section of a gateway on each store: SQLite in ``tmp_path``, or a fresh
    schema of the real PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``, dropped afterwards.
    An unreachable server fails the test: a skipped case would vouch for code nobody ran."""
    if request.param == "sqlite":
        yield {"url": f"sqlite:///{tmp_path / 'gateway.db'}"}
        return
    schema = f"e2e_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in POSTGRES_URL else "?"
        yield {"url": f"{POSTGRES_URL}{sep}options={quote(f'-c search_path={schema}')}"}
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def any_gateway(
    make_gateway: Callable[..., Any], store_section: dict[str, str]
) -> AsyncIterator[Gateway]:
    """The gateway, once on SQLite and once on PostgreSQL."""
    async with make_gateway(store=store_section) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _no_blocking_on_the_loop():
    # Our packages must never block the loop; the throw-away PKI (a test double) may.
    with blockbuster_ctx(["gateway", "connectors", "signing"]) as bb:
        for function in bb.functions.values():
            function.can_block_functions.append(("signing/testing.py", _PKI_HELPERS))
        yield bb


_PKI_HELPERS = {
    "key",
    "trust",
    "certificate",
    "create",
    "load",
    "issue",
    "crls",
    "ocsp_response",
    "sample_pdf",
}
