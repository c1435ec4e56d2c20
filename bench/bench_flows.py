"""Decree 63 flows per second on the embedded default (issue #4), without and with faults.

One gateway per run, in this process, on a real socket: SQLite store, the five registry sandboxes
embedded, the test PKI (its CRLs and OCSP served on loopback). A run submits ``N`` birth and death
dossiers (``gateway.samples.sample_dossiers``) over HTTP, 32 at a time, and ends when every one
has reached a final status; flows/s is completed dossiers over that whole time (submission
included). Registry calls/s counts every call the flow steps made (the gateway's
``lienthong_registry_calls`` metric, all outcomes). Runs alternate between the two columns —
no faults, and 20% transient faults at every sandbox the flows use — with a fresh store and fresh
sandboxes each time; the table shows medians.

Correctness is printed, not assumed: dossiers that did not complete, and per sandbox the distinct
writes it counted (``/_sandbox/stats``) against the registrations the gateway recorded as done and
as failed (steps and portal syncs in the store). Where nothing failed, writes − done is the number
of duplicate registrations and must be 0. Times are never asserted.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SEED = 0
TOKEN = "bench-flows-token"
FINAL = {"completed", "needs_attention", "failed"}
FLOW_REGISTRIES = ("population", "civil_status", "insurance", "portal")
# 20% of requests meet a transient fault: refused outright, connection reset before processing,
# or processed and then the reply lost (the case only idempotency keys make safe).
FAULTS = {"error_rate": 0.10, "reset_rate": 0.05, "lost_reply_rate": 0.05}
COLUMNS = ("no faults", "20% faults")


@dataclass(frozen=True)
class Profile:
    dossiers: int
    rounds: int
    timeout_s: float


FULL = Profile(dossiers=300, rounds=3, timeout_s=600.0)
QUICK = Profile(dossiers=6, rounds=1, timeout_s=120.0)


@dataclass
class Run:
    elapsed: float = 0.0
    submit_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # submissions not answered 202
    calls: Counter[str] = field(default_factory=Counter)  # outcome → registry calls
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # writes, done, failed
    replays: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return self.statuses.get("completed", 0)


def _settings(tmp: Path, pki: Path, faulty: bool) -> Any:
    from gateway.settings import settings_from_mapping

    retry = {"max_attempts": 10, "base_delay_s": 0.05, "max_delay_s": 1.0, "jitter": 0.2}
    config: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp / 'gateway.db'}"},
        "subsystems": [
            {
                "id": "VN:GOV:000.00.00.H41:motcua",
                "token": TOKEN,
                "rights": ["dossiers.submit", "lookups.citizen"],
            }
        ],
        "registries": {
            name: {"timeout_s": 5.0, "retry": retry}
            for name in ("population", "civil_status", "insurance", "business", "portal")
        },
        "outbox": {"workers": 32, "poll_s": 0.05, "breaker_failures": 25, "breaker_reset_s": 0.5},
        "sandbox": {
            "embedded": True,
            "seed": SEED,
            "pki": str(pki),
            "faults": {name: {**FAULTS, "seed": SEED + i} for i, name in enumerate(FLOW_REGISTRIES)}
            if faulty
            else {},
        },
    }
    return settings_from_mapping(config, base_dir=tmp, environ={})


async def _one_run(pki_dir: Path, profile: Profile, faulty: bool) -> Run:
    from gateway.app import RUNTIME
    from gateway.cli import build_app
    from gateway.samples import sample_dossiers

    run = Run()
    dossiers = list(sample_dossiers(profile.dossiers, seed=SEED))
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-flows-") as name:
        tmp = Path(name)
        app = build_app(_settings(tmp, pki_dir, faulty))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()  # starts the store, the sandboxes, the connectors and the worker
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            runtime = app[RUNTIME]
            async with aiohttp.ClientSession() as http:
                started = time.perf_counter()
                await _submit(http, base, dossiers, run)
                run.submit_s = time.perf_counter() - started
                await _wait(runtime, len(dossiers) - sum(run.rejected.values()), profile, run)
                run.elapsed = time.perf_counter() - started
                await _drain(runtime, profile)
                stats = await _sandbox_stats(http, runtime.registry_urls)
            for metric in runtime.metrics.registry_calls.collect():
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        run.calls[s.labels["outcome"]] += int(s.value)
        finally:
            await runner.cleanup()
        _duplicates(tmp / "gateway.db", stats, run)
    return run


async def _submit(
    http: aiohttp.ClientSession, base: str, dossiers: list[dict[str, Any]], run: Run
) -> None:
    gate = asyncio.Semaphore(32)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one(doc: dict[str, Any]) -> None:
        async with gate, http.post(base + "/v1/dossiers", json=doc, headers=headers) as r:
            if r.status != 202:
                run.rejected[f"HTTP {r.status}: {(await r.text())[:100]}"] += 1

    await asyncio.gather(*(one(d) for d in dossiers))


async def _counts(runtime: Any) -> Counter[str]:
    rows = await runtime.store.read(lambda tx: tx.all("dossiers.count_by_status"))
    return Counter({row["status"]: row["n"] for row in rows})


async def _wait(runtime: Any, expected: int, profile: Profile, run: Run) -> None:
    """Until every accepted dossier has a final status (bounded: a stuck flow ends the run)."""
    deadline = time.perf_counter() + profile.timeout_s
    while True:
        counts = await _counts(runtime)
        if sum(counts[s] for s in FINAL) >= expected or time.perf_counter() > deadline:
            run.statuses = counts
            return
        await asyncio.sleep(0.02)


async def _drain(runtime: Any, profile: Profile) -> None:
    """Let the last portal syncs finish, so the duplicate count compares finished work."""
    deadline = time.perf_counter() + min(30.0, profile.timeout_s)
    while time.perf_counter() < deadline:
        rows = await runtime.store.read(lambda tx: tx.all("outbox.counts"))
        busy = sum(r["n"] for r in rows if r["state"] in ("pending", "running"))
        if not busy:
            return
        await asyncio.sleep(0.05)


async def _sandbox_stats(
    http: aiohttp.ClientSession, urls: dict[str, str]
) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for name, url in urls.items():
        root = "/".join(url.split("/", 3)[:3])
        async with http.get(root + "/_sandbox/stats") as r:
            stats[name] = await r.json()
        async with http.get(root + "/_sandbox/faults") as r:
            stats[name]["faults"] = await r.json()
    return stats


def _duplicates(db: Path, stats: dict[str, dict[str, Any]], run: Run) -> None:
    """Per sandbox: distinct writes it counted, registrations the gateway finished, and steps or
    syncs that ended failed (a write whose answer was refused or lost counts as a write but not
    as done — so writes − done is a duplicate count only where nothing failed)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        steps = Counter()
        for registry, status, n in con.execute(
            "SELECT registry, status, count(*) FROM dossier_steps"
            " WHERE operation != 'citizen.lookup' GROUP BY registry, status"
        ):
            steps[registry, status] += n
        for state, n in con.execute(
            "SELECT state, count(*) FROM outbox_jobs WHERE kind = 'portal.sync' GROUP BY state"
        ):
            steps["portal", {"dead": "failed"}.get(state, state)] += n
    finally:
        con.close()
    for name, s in stats.items():
        writes = sum(int(n) for n in (s.get("writes") or {}).values())
        done, failed = steps[name, "done"], steps[name, "failed"]
        if writes or done or failed:
            run.writes[name] = (writes, done, failed)
        run.replays[name] = int(s.get("replays", 0))
        injected = (s.get("faults") or {}).get("injected") or {}
        run.injected[name] = sum(int(v) for v in injected.values())


async def _run(profile: Profile) -> None:
    from signing.testing import new_pki

    # As tests/e2e does: the PKI's CRL/OCSP URLs are not served, so revocation is soft-fail.
    pki = await asyncio.to_thread(new_pki)
    runs: dict[str, list[Run]] = {c: [] for c in COLUMNS}
    for _ in range(profile.rounds):
        for column in COLUMNS:
            runs[column].append(await _one_run(pki.directory, profile, column != COLUMNS[0]))
    _report(profile, runs)


def _report(profile: Profile, runs: dict[str, list[Run]]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"bench_flows: {profile.dossiers} dossiers (births and deaths) per run, "
        f"{profile.rounds} run(s) per column, embedded SQLite store and sandboxes, "
        f"32 outbox workers; faults: {', '.join(f'{k} {v:g}' for k, v in FAULTS.items())} "
        f"at {', '.join(FLOW_REGISTRIES)}; medians"
    )
    print(f"{'':36}" + "".join(f"{c:>14}" for c in COLUMNS))
    rows: list[tuple[str, Any]] = [
        ("flows/s (completed / total time)", lambda r: r.completed / r.elapsed),
        ("registry calls/s (all outcomes)", lambda r: sum(r.calls.values()) / r.elapsed),
        ("time to all final (s)", lambda r: r.elapsed),
        ("of which submitting (s)", lambda r: r.submit_s),
        ("registry calls per dossier", lambda r: sum(r.calls.values()) / profile.dossiers),
        ("failed registry calls", lambda r: sum(n for o, n in r.calls.items() if o != "ok")),
        ("faults injected", lambda r: sum(r.injected.values())),
    ]
    for label, value in rows:
        print(
            f"{label:36}" + "".join(f"{med([value(r) for r in runs[c]]):>14,.2f}" for c in COLUMNS)
        )
    print(
        f"{'not completed / dossiers (max)':36}"
        + "".join(
            f"{max(profile.dossiers - r.completed for r in runs[c])}/{profile.dossiers}".rjust(14)
            for c in COLUMNS
        )
    )
    names = sorted({n for c in COLUMNS for r in runs[c] for n in r.writes})
    for name in names:
        # The worst run of the column: writes the sandbox counted / done / failed in the gateway.
        cells = []
        for c in COLUMNS:
            worst = max((r.writes.get(name, (0, 0, 0)) for r in runs[c]), key=lambda w: w[0] - w[1])
            cells.append("{}/{}/{}".format(*worst).rjust(14))
        print(f"{f'{name}: writes/done/failed':36}" + "".join(cells))
    print(
        f"{'safe redeliveries (replays, total)':36}"
        + "".join(f"{sum(sum(r.replays.values()) for r in runs[c]):>14}" for c in COLUMNS)
    )
    for c in COLUMNS:
        for r in runs[c]:
            bad = {s: n for s, n in r.statuses.items() if s != "completed"}
            if bad or r.rejected:
                print(f"  {c}: not completed {bad}; rejected {dict(r.rejected)}")
    for c in COLUMNS:
        dup = [sum(max(0, w - d) for w, d, f in r.writes.values() if not f) for r in runs[c]]
        unclear = sum(max(0, w - d) for r in runs[c] for w, d, f in r.writes.values() if f)
        note = (
            f"; {unclear} more writes than done where steps failed (dup. or lost)"
            if unclear
            else ""
        )
        print(f"duplicate registrations, {c}: {max(dup)} (must be 0){note}")


def main(quick: bool = False) -> None:
    asyncio.run(_run(QUICK if quick else FULL))


if __name__ == "__main__":
    main()
