"""What the checkpointer tells operators while checkpoints fail: readiness names it from the
first failure (with the default fail_closed_after_s = 0 it never did), metrics count it, and the
log says it once, not every second."""

# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from gateway.app import _last_checkpoint
from gateway.audit.checkpoints import Checkpointer, CheckpointError, load_checkpoints
from gateway.metrics import Metrics
from gateway.store import SQLiteStore
from signing.testing import TestPKI
from signing.timestamps import serve_tsa
from tests.audit.test_checkpoints import add_events, pki, store, tsa_url  # noqa: F401 - fixtures
from tests.e2e.conftest import gateway_config, running_gateway
from tests.e2e.test_lookups import _post, citizen_query

FAILED = "lienthong_audit_checkpoints_total"


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):  # bounded: 30 s; a condition, never a time
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_failing_checkpoints_are_named_in_readiness_counted_and_logged_once(
    store: SQLiteStore, pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    async def tsa_down(digest: bytes) -> bytes:
        raise ConnectionRefusedError("TSA down")

    metrics = Metrics()
    cpr = Checkpointer(
        store,
        pki.key("gateway"),
        timestamper=tsa_down,
        every=1,
        poll_s=0.01,
        fail_closed_after_s=0,  # the default: never refuse work
        metrics=metrics,
    )
    caplog.set_level(logging.WARNING, logger="lienthong.audit.checkpoints")
    await cpr.start()
    try:
        failed = "lienthong_audit_checkpoints_total"
        await _until(lambda: _sample(metrics, failed, outcome="failed") >= 5)
        ready, said = cpr.readiness
        assert ready, said  # work is still taken: not a 503 for the load balancer
        assert "checkpoints failing for" in said and "TSA down" in said, said
        assert "fail_closed_after_s = 0" in said
        assert cpr.healthy == (True, "ok")  # nothing is refused (fail closed stays off)
    finally:
        await cpr.stop()
    warnings = [r for r in caplog.records if r.name == "lienthong.audit.checkpoints"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "TSA down" in warnings[0].getMessage()
    assert _sample(metrics, "lienthong_audit_checkpoints_total", outcome="ok") == 0
    assert _sample(metrics, "lienthong_audit_last_checkpoint_size") == 0


async def test_a_checkpoint_made_is_counted_with_its_size_and_time(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    metrics = Metrics()
    cpr = Checkpointer(
        store, pki.key("gateway"), tsa_url=tsa_url, every=1, poll_s=0.01, metrics=metrics
    )
    await cpr.start()
    try:
        await _until(lambda: cpr.latest is not None)
    finally:
        await cpr.stop()
    assert cpr.latest is not None
    assert _sample(metrics, "lienthong_audit_checkpoints_total", outcome="ok") == 1
    assert _sample(metrics, "lienthong_audit_last_checkpoint_size") == cpr.latest.size == 25
    signed_at = datetime.fromisoformat(cpr.latest.at).timestamp()
    assert _sample(metrics, "lienthong_audit_last_checkpoint_timestamp_seconds") == signed_at
    # A restart reads the latest checkpoint back: the gauges hold it before any new one.
    again = Metrics()
    restarted = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url, metrics=again)
    await restarted.start()
    await restarted.stop()
    assert _sample(again, "lienthong_audit_last_checkpoint_size") == 25


async def test_an_expired_signing_certificate_is_named_before_any_checkpoint_fails(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """An idle log attempts no checkpoint, so none failed, and the gateway said "ok" with a key
    that can sign none."""
    cpr = Checkpointer(store, pki.key("expired"), tsa_url=tsa_url, every=1000, interval_s=3600)
    await cpr.start()
    try:
        ready, said = cpr.readiness
    finally:
        await cpr.stop()
    assert ready and said.startswith("cannot sign checkpoints: certificate expired: "), said


async def test_a_timestamp_from_a_tsa_outside_the_anchors_fails_the_checkpoint(
    store: SQLiteStore, pki: TestPKI, tmp_path: Path
) -> None:
    """A TSA whose certificate does not chain to the trust anchors (another CA's, a public one):
    its tokens fail every `audit verify`. Before, each checkpoint was stored with one, counted
    ``ok``, and readiness said "ok": fail closed never came. Now the token is checked against
    the anchors first, and a checkpoint it fails is a failed checkpoint."""
    other = TestPKI.create(tmp_path / "other")
    now = [0.0]
    metrics = Metrics()
    async with serve_tsa(other.directory) as foreign:
        cpr = Checkpointer(
            store,
            pki.key("gateway"),
            tsa_url=foreign,
            trust=pki.trust(revocation="off"),
            every=1,
            poll_s=0.01,
            fail_closed_after_s=30,
            clock=lambda: now[0],
            metrics=metrics,
        )
        await cpr.start()
        try:
            await _until(lambda: _sample(metrics, FAILED, outcome="failed") >= 1)
            ready, said = cpr.readiness
            assert ready and said.startswith("checkpoints failing for "), said
            assert "timestamp" in said and "no chain to a configured trust anchor: tsa" in said
            now[0] = 31.0
            ok, reason = cpr.healthy  # past fail_closed_after_s: new work refused
            assert not ok and "no chain to a configured trust anchor: tsa" in reason, reason
        finally:
            await cpr.stop()
    assert await load_checkpoints(store) == []
    assert _sample(metrics, FAILED, outcome="ok") == 0
    # Control: the same checkpointer's check passes the TSA the anchors know.
    async with serve_tsa(pki.directory) as known:
        trusted = Checkpointer(
            store, pki.key("gateway"), tsa_url=known, trust=pki.trust(revocation="off")
        )
        made = await trusted.checkpoint_now()
    assert made is not None and [c.size for c in await load_checkpoints(store)] == [made.size]


async def test_the_gateway_tells_of_a_tsa_outside_its_anchors(pki: TestPKI, tmp_path: Path) -> None:
    """The report's case, through the whole gateway: `[audit] tsa_url` names a TSA of another
    PKI. /readyz said `audit: ok` while its own /v1/audit/checkpoints/latest said `verified:
    false`; now no checkpoint is stored and /readyz names why."""
    other = TestPKI.create(tmp_path / "other")
    async with serve_tsa(other.directory) as foreign:
        settings = gateway_config(
            tmp_path, pki.directory, audit={"checkpoint_every": 1, "tsa_url": foreign}
        )
        async with running_gateway(settings) as gw:
            assert (await _post(gw, "/v1/lookups/citizen", citizen_query()))[0] == 200
            for _ in range(3000):  # bounded: 30 s; a condition, never a time
                async with await gw.get("/readyz", who="operator") as r:
                    told = await r.json()
                if told["checks"]["audit"] != "ok":
                    break
                await asyncio.sleep(0.01)
            audit = told["checks"]["audit"]
            assert audit.startswith("checkpoints failing for "), told
            assert "no chain to a configured trust anchor: tsa" in audit, told
            async with await gw.get("/v1/audit/checkpoints/latest", who="auditor") as r:
                assert r.status == 404  # nothing stored that the gateway itself would refuse


async def test_a_tail_checkpoint_that_times_out_at_stop_says_what_it_waited_for(
    store: SQLiteStore, pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop signs the log's tail, for at most 10 s. A TSA that never answered left the line
    `no checkpoint of the log's tail at stop: ` — empty after the colon (an exception is always
    truthy, and a TimeoutError's text is '')."""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # takes the request, answers nothing

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="lienthong.audit")
    try:
        cpr = Checkpointer(store, pki.key("gateway"), tsa_url=f"http://127.0.0.1:{port}/")
        await _last_checkpoint(cpr, timeout_s=0.5)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    [said] = [r.getMessage() for r in caplog.records if r.name == "lienthong.audit"]
    assert said == (
        "no checkpoint of the log's tail at stop: not done within 0.5 s: waiting for the TSA"
    ), said
    assert await load_checkpoints(store) == []


async def test_a_tsa_replaying_a_stale_token_is_named_as_such(
    store: SQLiteStore, pki: TestPKI, stale_tsa_url: str
) -> None:
    """A TSA (or a caching proxy before it) that answers every request with the first reply it
    gave: the token is refused (its nonce is another request's), but the reason logged and shown
    by /readyz was pyHanko's own failure to word it, `'int' object has no attribute 'hex'`."""
    cpr = Checkpointer(
        store, pki.key("gateway"), tsa_url=stale_tsa_url, trust=pki.trust(revocation="off")
    )
    first = await cpr.checkpoint_now()  # the first reply answers its own request
    assert first is not None and first.size == 25
    await add_events(store, 1, first=25)
    with pytest.raises(CheckpointError) as refused:
        await cpr.checkpoint_now()
    assert str(refused.value) == (
        f"timestamp request to {stale_tsa_url} failed: the TSA's reply does not answer this "
        "request (its nonce is another request's: a stale or replayed token)"
    )
    assert [c.size for c in await load_checkpoints(store)] == [25]
