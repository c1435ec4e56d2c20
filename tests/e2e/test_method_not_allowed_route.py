"""A 405 is counted and logged under the route whose path matched, not as "unmatched" with the
404s of paths no route has (a scanner's)."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import Gateway


async def test_a_405_is_counted_under_its_route(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lienthong.http")
    for method, path in [("DELETE", "/healthz"), ("OPTIONS", "/v1/dossiers"), ("GET", "/nope")]:
        async with gateway.http.request(method, gateway.url + path) as r:
            assert r.status == (404 if path == "/nope" else 405)
    async with gateway.http.get(gateway.url + "/metrics") as r:
        lines = (await r.text()).splitlines()
    for counted in [
        'lienthong_http_requests_total{method="DELETE",route="/healthz",status="405"} 1.0',
        'lienthong_http_requests_total{method="OPTIONS",route="/v1/dossiers",status="405"} 1.0',
        'lienthong_http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
    ]:
        assert counted in lines, [x for x in lines if "_requests_total" in x]
    access = [r.__dict__ for r in caplog.records if r.name == "lienthong.http"]
    assert [(a["status"], a["route"]) for a in access if a["status"] != 200] == [
        (405, "/healthz"),
        (405, "/v1/dossiers"),
        (404, "unmatched"),
    ]
