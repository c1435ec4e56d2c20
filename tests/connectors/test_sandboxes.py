"""run_sandboxes, sandbox_endpoint, create_connector, the package's __all__, and the CLI."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import sys
from typing import Any

import aiohttp
import pytest

from connectors import REGISTRIES, create_connector
from connectors.api import Connector, Endpoint
from connectors.faults import FaultPlan
from connectors.sandboxes import run_sandboxes, sandbox_endpoint, serve_app


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as reply:
        assert reply.status == 200, f"{url}: {reply.status}"
        return await reply.json()


@pytest.mark.parametrize(
    "module",
    ["connectors.rest", "connectors.sandboxes", "connectors.cli", "connectors.insurance",
     "connectors.business", "connectors.portal", "connectors.insurance.mapping",
     "connectors.business.mapping", "connectors.portal.mapping", "connectors.insurance.sandbox",
     "connectors.business.sandbox", "connectors.portal.sandbox"],
)  # fmt: skip
def test_module_all_is_honest(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.__all__ names missing {name}"
    assert len(set(loaded.__all__)) == len(loaded.__all__)


def test_registries_in_flow_order() -> None:
    assert REGISTRIES == ("population", "civil_status", "insurance", "business", "portal")


@pytest.mark.parametrize("name", REGISTRIES)
def test_create_connector_for_every_registry(name: str) -> None:
    connector = create_connector(name, Endpoint(url="http://127.0.0.1:9"))
    assert isinstance(connector, Connector)
    assert connector.registry == name


def test_create_connector_refuses() -> None:
    with pytest.raises(ValueError, match="unknown registry 'tax'"):
        create_connector("tax", Endpoint(url="http://x"))
    with pytest.raises(TypeError):
        create_connector("business", Endpoint(url="http://x"), signer=object())


async def test_five_working_sandboxes() -> None:
    async with run_sandboxes(seed=4) as urls:
        assert list(urls) == list(REGISTRIES)
        assert len(set(urls.values())) == 5
        for name, url in urls.items():
            assert url.startswith("http://127.0.0.1:")
            stats = await get_json(f"{url}/_sandbox/stats")
            assert stats["requests"] == 0, name
            await get_json(f"{url}/_sandbox/faults")
        # The REST ones answer a real call through their connector and the endpoint helper.
        from connectors.insurance.sandbox import SANDBOX_OFFICER, scenarios

        async with create_connector(
            "insurance", sandbox_endpoint("insurance", urls["insurance"]), **SANDBOX_OFFICER
        ) as c:
            assert (await c.call("card.check", scenarios(4)["000"])).data["status"] == "valid"
        from connectors.business.sandbox import generate_enterprises

        code = next(iter(generate_enterprises(4)))
        async with create_connector(
            "business", sandbox_endpoint("business", urls["business"])
        ) as c:
            assert (await c.call("enterprise.lookup", {"tax_code": code})).reference == code
        from connectors.population.sandbox import SANDBOX_OFFICER_ID

        async with create_connector(
            "population",
            sandbox_endpoint("population", urls["population"]),
            officer_id=SANDBOX_OFFICER_ID,
        ) as c:
            from connectors.testdata import Population

            citizen = Population(4).citizen(12)
            found = await c.call(
                "citizen.lookup",
                {
                    "personal_id": citizen.personal_id,
                    "full_name": citizen.full_name,
                    "birth_date": citizen.birth_date.isoformat(),
                },
            )
            assert found.data["match"] is True
    # Everything is closed afterwards.
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_json(f"{urls['portal']}/_sandbox/stats")


async def test_selected_sandboxes_ports_and_faults() -> None:
    async with serve_app(aiohttp.web.Application()) as probe:
        pass
    free = int(probe.rsplit(":", 1)[1])
    plan = FaultPlan(error_rate=1.0)
    async with run_sandboxes(names=["portal", "business"], faults={"business": plan},
                             ports={"portal": free}) as urls:  # fmt: skip
        assert set(urls) == {"portal", "business"}
        assert urls["portal"] == f"http://127.0.0.1:{free}"
        shown = await get_json(f"{urls['business']}/_sandbox/faults")
        assert shown["plan"]["error_rate"] == 1.0
        shown = await get_json(f"{urls['portal']}/_sandbox/faults")
        assert shown["plan"]["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"names": ["tax"]}, ValueError, "unknown registry"),
        ({"names": ["portal"], "faults": {"business": FaultPlan()}}, ValueError, "not started"),
        ({"names": ["portal"], "ports": {"insurance": 0}}, ValueError, "not started"),
        ({"names": ["portal"], "signer": object()}, TypeError, "signer"),
    ],
)
async def test_run_sandboxes_refuses(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        async with run_sandboxes(**kwargs):
            pass


async def test_options_reach_only_the_sandboxes_that_take_them() -> None:
    async with run_sandboxes(names=["portal", "business"], api_key="other-key") as urls:
        endpoint = Endpoint(url=urls["business"], api_key="other-key")
        from connectors.business.sandbox import generate_enterprises

        code = next(iter(generate_enterprises(0)))
        async with create_connector("business", endpoint) as c:
            assert (await c.call("enterprise.lookup", {"tax_code": code})).reference == code


def test_sandbox_endpoint() -> None:
    assert sandbox_endpoint("population", "http://h:1").url == "http://h:1/soap"
    insurance = sandbox_endpoint("insurance", "http://h:2", timeout=3.0)
    assert (insurance.url, insurance.timeout) == ("http://h:2", 3.0)
    assert insurance.username and insurance.password
    assert sandbox_endpoint("business", "http://h:3").api_key
    with pytest.raises(ValueError):
        sandbox_endpoint("tax", "http://h:4")


async def test_cli_serves_until_interrupted() -> None:
    script = "from connectors.cli import sandbox; sandbox()"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, "serve", "--registry", "portal", "--registry", "insurance",
        "--seed", "2", "--faults", '{"portal": {"error_rate": 1.0}}', "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        started = json.loads(line)
        assert started["seed"] == 2 and set(started["registries"]) == {"portal", "insurance"}
        shown = await get_json(f"{started['registries']['portal']}/_sandbox/faults")
        assert shown["plan"]["error_rate"] == 1.0
        await get_json(f"{started['registries']['insurance']}/_sandbox/stats")
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "{nope"], "not JSON"),
        (["--faults", '{"eror_rate": 1}'], "unknown fault setting"),
        (["--faults", '{"portal": {"error_rate": 1}}', "--registry", "business"], "not served"),
        (["--registry", "tax"], "tax"),
        (["--faults", '{"seed": [1]}'], "seed must be an integer"),
        (["--faults", '{"latency_ms": "5"}'], "latency_ms must be a number"),
        (["--faults", '{"error_rate": true}'], "error_rate must be a number"),
        (["--faults", '{"portal": 5}'], "a fault plan must be an object"),
        (["--faults", '{"portal": {"outages": [[5, 1]]}}'], "outages[0] must have 0 <= start_s"),
    ],
)
def test_cli_refuses(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from connectors.cli import sandbox

    result = CliRunner().invoke(sandbox, ["serve", *args])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


async def test_every_sandbox_counts_the_requests_that_meet_a_fault() -> None:
    """The SOAP sandboxes counted inside their handler, after the fault middleware: a request
    answered with an injected 503 was missing from /_sandbox/stats ("nothing reached it")."""
    async with run_sandboxes(seed=4) as urls, aiohttp.ClientSession() as http:
        for name, url in urls.items():
            async with http.put(f"{url}/_sandbox/faults", json={"error_rate": 1.0}) as r:
                assert r.status == 200, name
            async with http.post(f"{url}/anything", data=b"<x/>") as r:
                assert r.status >= 500, name
            assert (await get_json(f"{url}/_sandbox/stats"))["requests"] == 1, name


async def test_the_enterprise_listing_refuses_a_limit_that_is_no_count() -> None:
    async with run_sandboxes(seed=4) as urls, aiohttp.ClientSession() as http:
        base = urls["business"]
        for limit in ("abc", "-1", "1e3", "٣"):
            async with http.get(f"{base}/_sandbox/enterprises", params={"limit": limit}) as r:
                assert r.status == 400, limit
                assert (await r.json())["maLoi"] == "THAM_SO_KHONG_HOP_LE"
        async with http.get(f"{base}/_sandbox/enterprises", params={"limit": "2"}) as r:
            assert r.status == 200 and len((await r.json())["codes"]) == 2
