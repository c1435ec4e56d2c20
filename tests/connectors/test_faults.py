"""FaultPlan: validation, determinism under a seed, and the run-time admin routes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from connectors.business.sandbox import API_KEY
from connectors.business.sandbox import create_app as business_app
from connectors.faults import FaultPlan, FaultState
from connectors.sandboxes import new_sandbox_app, serve_app

PLAN = FaultPlan(error_rate=0.2, timeout_rate=0.1, reset_rate=0.1, lost_reply_rate=0.1,
                 malformed_rate=0.1, seed=42)  # fmt: skip


def draws(plan: FaultPlan, n: int = 500) -> list[str | None]:
    state = FaultState(plan)
    return [state.draw() for _ in range(n)]


def test_same_seed_same_sequence() -> None:
    first = draws(PLAN)
    assert draws(PLAN) == first
    # Every kind happens, and so do clean requests, so the comparison means something.
    assert set(first) == {None, "error", "timeout", "reset", "lost_reply", "malformed"}


def test_other_seed_other_sequence() -> None:
    assert draws(FaultPlan(**{**PLAN.as_dict(), "seed": 43})) != draws(PLAN)


def test_rates_are_respected_roughly() -> None:
    sequence = draws(PLAN, 5000)
    share = sequence.count("error") / len(sequence)
    assert 0.17 < share < 0.23


def test_setting_a_plan_restarts_its_sequence() -> None:
    state = FaultState(PLAN)
    head = [state.draw() for _ in range(50)]
    state.set_plan(PLAN)
    assert [state.draw() for _ in range(50)] == head


def test_injected_counts() -> None:
    state = FaultState(PLAN)
    sequence = [state.draw() for _ in range(300)]
    for kind in ("error", "timeout", "reset", "lost_reply", "malformed"):
        assert state.injected.get(kind, 0) == sequence.count(kind)


def test_outage_window_overrides_rates() -> None:
    state = FaultState(FaultPlan(outages=((0.0, 3600.0),)))
    assert [state.draw() for _ in range(3)] == ["outage"] * 3
    assert FaultState(FaultPlan(outages=((3600.0, 7200.0),))).draw() is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"error_rate": 0.1, "eror_rate": 0.2}, "unknown fault setting"),
        ({"error_rate": 1.5}, "between 0 and 1"),
        ({"malformed_rate": -0.1}, "between 0 and 1"),
        ({"seed": [1]}, "seed must be an integer, not \\[1\\]"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"latency_ms": "5"}, "latency_ms must be a number, not '5'"),
        ({"latency_ms": -1}, "latency_ms must not be negative"),
        ({"latency_ms": float("nan")}, "latency_ms must be a finite number"),
        ({"hang_s": 10**400}, "hang_s must be a finite number"),
        ({"error_rate": True}, "error_rate must be a number, not True"),
        ({"reset_rate": None}, "reset_rate must be a number"),
        ({"outages": 5}, "outages must be a list"),
        ({"outages": [5]}, "outages\\[0\\] must be \\[start_s, end_s\\]"),
        ({"outages": [[0, 1, 2]]}, "outages\\[0\\] must be"),
        ({"outages": [[0, "9"]]}, "outages\\[0\\]\\[1\\] must be a number"),
        ({"outages": [[5, 1]]}, "0 <= start_s <= end_s"),
        ({"outages": [[-1, 1]]}, "0 <= start_s <= end_s"),
        ([("error_rate", 0.5)], "a fault plan must be an object"),
        # One draw per request: 0.7 + 0.7 timed out 30 % of the requests, not 70 %.
        ({"error_rate": 0.7, "timeout_rate": 0.7}, "add up to more than 1"),
        ({"error_rate": 0.7, "throttle_rate": 0.2, "cut_reply_rate": 0.2}, "add up to more than 1"),
        ({"retry_after_s": -1}, "retry_after_s must not be negative"),
    ],
)
def test_from_mapping_refuses(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.from_mapping(data)


def test_rates_adding_up_to_one_are_taken() -> None:
    plan = FaultPlan.from_mapping({"error_rate": 0.5, "reset_rate": 0.3, "lost_reply_rate": 0.2})
    assert plan.error_rate + plan.reset_rate + plan.lost_reply_rate == 1.0


async def test_a_cut_reply_sends_the_head_and_part_of_the_body_then_drops() -> None:
    # What a client meets: a reply whose Content-Length promises more than ever comes.
    async with serve_app(business_app(count=5, faults=FaultPlan(cut_reply_rate=1.0))) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = API_KEY.encode()
        writer.write(
            b"GET /api/doanhnghiep/0100233488 HTTP/1.1\r\nHost: x\r\nApiKey: %s\r\n\r\n" % key
        )
        received = await reader.read()  # until the sandbox drops the connection
        writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    lines = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    length = int(next(value for name, value in lines if name.lower() == b"content-length"))
    assert head.startswith(b"HTTP/1.1 404 ")  # processed: the registry's own answer, begun
    assert 0 < len(body) < length


def test_from_mapping_round_trip() -> None:
    plan = FaultPlan.from_mapping({"error_rate": 0.5, "outages": [[1, 2]], "seed": 9})
    assert plan.outages == ((1.0, 2.0),)
    assert FaultPlan.from_mapping(plan.as_dict()) == plan


async def test_put_faults_refuses_unknown_keys_and_keeps_the_plan() -> None:
    async with (
        serve_app(new_sandbox_app(faults=FaultPlan(error_rate=0.25))) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.put(f"{url}/_sandbox/faults", json={"error_rat": 1.0}) as reply:
            assert reply.status == 400
            assert "error_rat" in (await reply.json())["error"]
        for wrong in (
            {"error_rate": 2},
            {"error_rate": True},
            {"latency_ms": "5"},
            {"seed": [1]},
            ["error_rate"],
        ):
            async with session.put(f"{url}/_sandbox/faults", json=wrong) as reply:
                assert reply.status == 400, wrong
                assert "must be" in (await reply.json())["error"]
        async with session.put(f"{url}/_sandbox/faults", data=b"{nope") as reply:
            assert reply.status == 400
        async with session.get(f"{url}/_sandbox/faults") as reply:
            assert (await reply.json())["plan"]["error_rate"] == 0.25
        async with session.put(f"{url}/_sandbox/faults", json={"reset_rate": 0.5}) as reply:
            assert reply.status == 200
            shown = (await reply.json())["plan"]
        assert (shown["reset_rate"], shown["error_rate"]) == (0.5, 0.0)


async def test_same_seed_same_faults_over_the_wire() -> None:
    async def statuses() -> list[int]:
        plan = FaultPlan(error_rate=0.5, seed=5)
        async with serve_app(new_sandbox_app(faults=plan)) as url:
            async with aiohttp.ClientSession() as session:
                seen = []
                for _ in range(40):
                    async with session.get(f"{url}/nothing-here") as reply:
                        seen.append(reply.status)
                return seen

    first = await statuses()
    assert first == await statuses()
    assert set(first) == {503, 404}
