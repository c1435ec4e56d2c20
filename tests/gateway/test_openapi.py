"""The published contract (schemas/openapi.yaml) is the code's, and documents every route."""

from __future__ import annotations

import yaml

import schemas
from gateway.app import create_app
from gateway.openapi import OPERATIONS, document, render_yaml
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
