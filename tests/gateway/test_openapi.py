"""The published contract (schemas/openapi.yaml) is the code's, and documents every route."""

from __future__ import annotations

import threading
from typing import Any, cast

import aiohttp
import msgspec
import pytest
import yaml
from aiohttp import web

import schemas
from gateway import openapi as openapi_module
from gateway.api import ops
from gateway.app import RUNTIME, Runtime, create_app
from gateway.auth import Authenticator
from gateway.metrics import Metrics
from gateway.openapi import OPERATIONS, document, render_yaml
from gateway.outbox.breaker import Breakers
from gateway.settings import settings_from_mapping

UNDOCUMENTED = {
    "/openapi.json",
    "/console",
    "/console/",
    "/console/{name}",
}  # the doc itself; static pages


def test_schemas_openapi_yaml_is_current() -> None:
    on_disk = schemas.path("openapi.yaml").read_text(encoding="utf-8")
    assert on_disk == render_yaml(), (
        "run: .venv/bin/python -m gateway.openapi > schemas/openapi.yaml"
    )


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(settings_from_mapping({}, environ={}))
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.method not in ("HEAD", "*")
        and r.resource.canonical not in UNDOCUMENTED
    }
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert served == documented


def test_document_is_openapi_3_1_with_problem_details() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/v1/dossiers"]["post"]
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Accepted"
    )
    assert "application/problem+json" in post["responses"]["422"]["content"]
    schema = doc["components"]["schemas"]["DossierIn"]
    assert set(schema["required"]) >= {
        "code",
        "procedure",
        "flow",
        "applicant",
        "data",
        "submitted_at",
    }
    assert yaml.safe_load(render_yaml()) == doc


async def test_the_document_is_built_once_per_app_off_the_loop_and_served_as_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/openapi.json (no login) made every JSON schema again for each request, on the event
    loop: seven /healthz' worth of CPU that any client could ask for as often as it liked."""
    built: list[int] = []

    def counting() -> dict[str, Any]:
        built.append(threading.get_ident())
        return document()

    monkeypatch.setattr(openapi_module, "document", counting)
    settings = settings_from_mapping({}, environ={})
    app = web.Application()
    app[RUNTIME] = Runtime(
        settings=settings,
        store=cast(Any, None),  # the document needs no store
        metrics=Metrics(),
        auth=Authenticator(settings.subsystems),
        breakers=Breakers(),
    )
    app.router.add_routes(ops.routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/openapi.json"
    try:
        async with aiohttp.ClientSession() as http:
            bodies = []
            for _ in range(3):
                async with http.get(url) as r:
                    assert r.status == 200 and r.content_type == "application/json"
                    bodies.append(await r.read())
    finally:
        await runner.cleanup()
    assert bodies == [msgspec.json.encode(document())] * 3
    assert len(built) == 1, "the document was built again for a later request"
    assert built[0] != threading.get_ident(), "built on the event loop's thread"
