"""What /metrics and /readyz say when the registry recovers or the store stops answering."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.e2e.test_lookups import FAST, _metric, _post, citizen_query


async def _scrape(gw: Any) -> str:
    async with gw.http.get(gw.url + "/metrics") as r:
        assert r.status == 200
        return str(await r.text())


async def test_an_open_circuit_shows_half_open_once_its_time_is_up_without_traffic(
    make_gateway: Any,
) -> None:
    """The gauge changed only when a call read the breaker: after the registry came back, with
    no traffic, /metrics said "open" for ever and an alert on it kept firing."""
    async with make_gateway(
        registries={"population": {"timeout_s": 0.3, "retry": FAST}},
        gateway={"lookup_attempts": 2},
        outbox={"breaker_failures": 2, "breaker_reset_s": 0.5},
        sandbox={"faults": {"population": {"error_rate": 1.0}}},
    ) as gw:
        status, _ = await _post(gw, "/v1/lookups/citizen", citizen_query())
        assert status == 502
        gauge = 'lienthong_circuit_state{endpoint="population"}'
        assert _metric(await _scrape(gw), gauge) == 2.0  # open
        deadline = time.monotonic() + 30
        while _metric(text := await _scrape(gw), gauge) == 2.0:
            assert time.monotonic() < deadline, "still open long after breaker_reset_s"
            await asyncio.sleep(0.1)
        assert _metric(text, gauge) == 1.0  # half-open: the next call is a trial
        assert _metric(text, "lienthong_store_up") == 1.0


async def test_a_store_that_does_not_answer_fails_probes_quickly(make_gateway: Any) -> None:
    """An unreachable PostgreSQL made each scrape and the first readiness probe wait the pool's
    connect timeout (10 s): longer than Prometheus' scrape timeout. The store here hangs (a
    stand-in for the network): both answer within the probe timeout, and say so."""
    async with make_gateway() as gw:
        store = gw.runtime.store
        never = asyncio.Event()

        async def hang(work: Any) -> Any:
            await never.wait()
            return await real(work)  # released at the end: whatever waited carries on

        real, store.read = store.read, hang
        try:
            text = await _scrape(gw)
            assert _metric(text, "lienthong_store_up") == 0.0
            async with await gw.get("/readyz", who="operator") as r:
                assert r.status == 503
                problem = await r.json()
            assert problem["checks"]["store"] == "failing: no answer within 2 s", problem
        finally:
            store.read = real
            never.set()
        assert _metric(await _scrape(gw), "lienthong_store_up") == 1.0


async def test_readiness_says_so_when_every_claim_of_the_outbox_fails(make_gateway: Any) -> None:
    """The outbox check said "ok" whenever a worker existed: one whose every claim failed (an
    out-of-range setting did that) delivered nothing while the gateway reported ready."""
    import sqlite3

    async with make_gateway() as gw:
        db = gw.runtime.store.path

        def rename(a: str, b: str) -> None:
            with sqlite3.connect(db, timeout=10) as raw:
                raw.execute(f"ALTER TABLE {a} RENAME TO {b}")

        await asyncio.to_thread(rename, "outbox_jobs", "outbox_jobs_away")
        try:
            deadline = time.monotonic() + 30
            while True:
                async with await gw.get("/readyz", who="operator") as r:
                    body = await r.json()
                if r.status == 503:
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.05)
            assert body["checks"]["outbox"].startswith("failing: claiming jobs fails"), body
        finally:
            await asyncio.to_thread(rename, "outbox_jobs_away", "outbox_jobs")
        deadline = time.monotonic() + 30
        while True:  # and ready again once claims work
            async with gw.http.get(gw.url + "/readyz") as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def test_the_audit_logs_size_is_a_metric(make_gateway: Any) -> None:
    """lienthong_audit_events_total was declared and never counted: 0 after dozens of events.
    The log's size is now read at each scrape, as the outbox's depth is."""
    async with make_gateway() as gw:
        status, _ = await _post(gw, "/v1/lookups/citizen", citizen_query())
        assert status == 200
        size = await gw.runtime.store.read(lambda tx: tx.one("audit.head"))
        assert size is not None
        text = await _scrape(gw)
        assert _metric(text, "lienthong_audit_entries") == size["seq"] + 1 >= 1
        assert "lienthong_audit_events_total" not in text


async def test_a_stopped_gateways_log_is_covered_by_a_checkpoint(
    make_gateway: Any, tmp_path: Any
) -> None:
    """The demo stopped with entries 463..515 covered by no checkpoint: an auditor's copy of a
    stopped gateway's store verified only up to the last periodic one. The tail is now signed
    when the gateway stops."""
    from gateway.store import SQLiteStore

    async with make_gateway(
        audit={"checkpoint_every": 100_000, "checkpoint_interval_s": 3600}
    ) as gw:
        for _ in range(3):
            status, _ = await _post(gw, "/v1/lookups/citizen", citizen_query())
            assert status == 200
    async with SQLiteStore(tmp_path / "gateway.db", readonly=True) as store:
        head = await store.read(lambda tx: tx.one("audit.head"))
        latest = await store.read(lambda tx: tx.one("checkpoints.latest"))
    assert head is not None and latest is not None
    assert latest["size"] == head["seq"] + 1


async def test_probe_answers_are_not_stored_by_caches(make_gateway: Any) -> None:
    """Found by probing: /readyz tells an operator why a check fails (paths, database hosts), with
    no Cache-Control, so a shared cache or a proxy in front could hand that answer to anyone; and
    a kept /healthz, /readyz or /metrics answer is a stale one. None may be stored, ready or not."""
    async with make_gateway() as gw:
        for path, who in (("/healthz", "motcua"), ("/metrics", "motcua"), ("/readyz", "operator"),
                          ("/readyz", "motcua")):  # fmt: skip
            async with await gw.get(path, who=who) as r:
                assert (r.status, r.headers.get("Cache-Control")) == (200, "no-store"), path
        store = gw.runtime.store
        never = asyncio.Event()

        async def hang(work: Any) -> Any:
            await never.wait()
            return await real(work)

        real, store.read = store.read, hang
        try:
            async with await gw.get("/readyz", who="operator") as r:
                assert (r.status, r.headers.get("Cache-Control")) == (503, "no-store")
                assert "no answer within" in (await r.json())["checks"]["store"]
        finally:
            store.read = real
            never.set()
