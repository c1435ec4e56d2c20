"""Every sandbox fault, met by a real REST connector, becomes the right error class."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from connectors.api import TransientError
from connectors.business.client import BusinessConnector
from connectors.business.sandbox import create_app as business_app
from connectors.business.sandbox import endpoint as business_endpoint
from connectors.business.sandbox import generate_enterprises
from connectors.faults import FaultPlan
from connectors.portal.client import PortalConnector
from connectors.portal.sandbox import create_app as portal_app
from connectors.portal.sandbox import endpoint as portal_endpoint
from connectors.sandboxes import serve_app

CODE = next(iter(generate_enterprises(0, 50)))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_app(business_app(count=50)) as base:
        yield base


async def arm(url: str, plan: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{url}/_sandbox/faults", json=plan) as reply,
    ):
        assert reply.status == 200, await reply.text()
        return dict(await reply.json())


async def injected(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_sandbox/faults") as r:
        counts: dict[str, int] = (await r.json())["injected"]
        return counts


async def lookup(url: str, limit: float = 5.0) -> Any:
    endpoint = dataclasses.replace(business_endpoint(url), timeout=limit)
    async with BusinessConnector(endpoint) as connector:
        return await connector.call("enterprise.lookup", {"tax_code": CODE})


@pytest.mark.parametrize(
    ("plan", "kind", "match", "deliveries"),
    [
        ({"error_rate": 1.0}, "error", "HTTP 503", 1),
        # Sent once: the transport never resends (aiohttp's client sent an idempotent GET once
        # more when the server dropped the connection); retrying is the caller's.
        ({"reset_rate": 1.0}, "reset", "connection failed", 1),
        ({"lost_reply_rate": 1.0}, "lost_reply", "connection failed", 1),
        ({"malformed_rate": 1.0}, "malformed", "malformed reply", 1),
        ({"outages": [[0, 3600]]}, "outage", "HTTP 503", 1),
        ({"throttle_rate": 1.0}, "throttle", "HTTP 429", 1),
        ({"cut_reply_rate": 1.0}, "cut_reply", "connection failed", 1),
    ],
)
async def test_fault_is_transient(
    url: str, plan: dict[str, Any], kind: str, match: str, deliveries: int
) -> None:
    await arm(url, plan)
    with pytest.raises(TransientError, match=match):
        await lookup(url)
    assert (await injected(url)) == {kind: deliveries}


async def test_a_throttled_request_carries_the_sandboxs_retry_after(url: str) -> None:
    # A registry that rate-limits says when to ask again; the sandbox says it as a real one does.
    await arm(url, {"throttle_rate": 1.0, "retry_after_s": 7})
    with pytest.raises(TransientError) as caught:
        await lookup(url)
    assert (caught.value.code, caught.value.wait_s) == ("http-429", 7.0)


async def test_timeout_fault_with_a_short_client_timeout(url: str) -> None:
    await arm(url, {"timeout_rate": 1.0, "hang_s": 5})
    with pytest.raises(TransientError, match="no answer in time"):
        await lookup(url, limit=0.2)
    assert (await injected(url)) == {"timeout": 1}


async def test_latency_alone_is_no_error(url: str) -> None:
    await arm(url, {"latency_ms": 50})
    assert (await lookup(url)).reference == CODE


async def test_latency_beyond_the_client_timeout_is_transient(url: str) -> None:
    await arm(url, {"latency_ms": 2000})
    with pytest.raises(TransientError, match="no answer in time"):
        await lookup(url, limit=0.2)


async def test_outage_window_ends(url: str) -> None:
    # A window already over (the sandbox started before this test's request): no fault.
    await arm(url, {"outages": [[0, 0.000001]]})
    assert (await lookup(url)).reference == CODE


async def test_clean_after_faults_are_cleared(url: str) -> None:
    await arm(url, {"error_rate": 1.0})
    with pytest.raises(TransientError):
        await lookup(url)
    await arm(url, {})
    assert (await lookup(url)).reference == CODE


async def test_mixed_plan_under_a_seed_meets_the_same_faults() -> None:
    plan = FaultPlan(error_rate=0.3, malformed_rate=0.3, seed=11)

    async def run() -> list[str]:
        outcomes = []
        async with (
            serve_app(business_app(count=50, faults=plan)) as base,
            BusinessConnector(business_endpoint(base)) as connector,
        ):
            for _ in range(20):
                try:
                    await connector.call("enterprise.lookup", {"tax_code": CODE})
                    outcomes.append("ok")
                except TransientError as exc:
                    outcomes.append(exc.message.split(":")[0])
        return outcomes

    first = await run()
    assert first == await run()
    assert {"ok", "HTTP 503", "malformed reply"} <= set(first)


@pytest.mark.parametrize("fault", ["lost_reply", "cut_reply"])
async def test_portal_write_under_a_lost_or_cut_reply_is_one_write(fault: str) -> None:
    params = {
        "code": "000.00.00.H41-261122-0007",
        "procedure": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "applicant": {"full_name": "Nguyễn Thị Lan", "personal_id": "040190012345"},
        "status": "accepted",
        "received_at": "2026-11-22T09:15:00+07:00",
        "agency": "000.00.00.H41",
    }
    plan = FaultPlan.from_mapping({f"{fault}_rate": 1.0})
    async with serve_app(portal_app(faults=plan)) as url:
        async with PortalConnector(portal_endpoint(url)) as portal:
            for _ in range(2):
                with pytest.raises(TransientError):
                    await portal.call("dossier.sync", params, idempotency_key="same")
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_sandbox/stats") as r:
            stats = await r.json()
    assert stats == {"requests": 2, "writes": {"dossier.sync": 1}, "replays": 1}
