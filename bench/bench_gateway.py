"""Citizen-lookup throughput and latency three ways, side by side in one run (issue #2):

1. **direct** — the connector's own SOAP request (built once per citizen by the real
   ``SoapClient``/``mapping`` code, fresh platform auth headers per request) to the population
   sandbox;
2. **proxy** — the same request through a bare pass-through aiohttp proxy: the gateway's extra
   HTTP hop, doing no work;
3. **gateway** — ``POST /v1/lookups/citizen`` JSON → translate → SOAP → audit append in SQLite →
   JSON.

Sandbox, proxy, gateway and the TSA its signed audit checkpoints need each run in their own
process (``bench/_servers.py``); the load generator is this process (aiohttp, keep-alive). Per
round and per target: a closed-loop saturation run with ``Profile.workers`` concurrent
workers, then an open-loop run at half the gateway's median saturation rate (the same offered rate for all three)
for p50/p90/p99, measured from each request's *scheduled* send time so a stalled generator cannot
hide queueing. Rounds rotate the order of the targets; the table shows medians over rounds and
ratios taken within a round.

Every answer is checked (HTTP 200 and a match for the citizen asked about); errors are counted
and printed, and excluded from the latencies. Times are printed, never asserted.

Each closed-loop run also reads, from ``/proc``, the CPU time every process spent on it, per
request: the extra hop (proxy or gateway), the sandbox and the generator, and how busy the machine
was. A ratio of throughputs says little on its own on a small machine: one target may be bound by
its own process (a GIL), another by the machine all of them share. The CPU lines say which.

Then, where the machine has two CPUs or more, the open-loop runs again with **the hop on CPUs of its
own**: the proxy's or the gateway's process on the first half of the CPUs, the sandbox, the TSA and
the generator on the rest (``sched_setaffinity``, every thread; all of them back on every CPU
after). On two shared CPUs the gateway's event loop, woken for a request, often waits for a CPU
that the sandbox or the generator holds: a tail made by where the test's own processes run, which
a gateway does not meet where its registries and clients are other machines. Both layouts are
printed, each with its verdicts; the proxy gets the same layout as the gateway.

Each open-loop run of the gateway also reads the gateway's own access-log lines for the requests
it answered: how long each took inside the gateway, and how much of that it waited for the
registry (``registry_ms``), so that a tail is seen as the gateway's or its wait's.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from bench._servers import Server, cpu_seconds, server_process

SEED = 0
CITIZENS = 4000  # the sandbox's population; requests cycle through all of them
TOKEN = "bench-lookup-token"
TARGET_THROUGHPUT_RATIO = 0.70
TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
NAMES = ("direct", "proxy", "gateway")
OFFICER_ID = "040088101111"  # the officer (MaCanBo) both the direct path and the gateway name
SERVICE_CODE = "2.002156"  # the public service (MaDVC) both paths name: [registries.population]


@dataclass(frozen=True)
class Profile:
    rounds: int
    closed_s: float
    open_s: float
    workers: int
    warmup: int


FULL = Profile(rounds=5, closed_s=4.0, open_s=4.0, workers=32, warmup=300)
QUICK = Profile(rounds=1, closed_s=0.4, open_s=0.4, workers=4, warmup=10)


@dataclass(frozen=True)
class Query:
    personal_id: str
    soap: bytes  # the TraCuuThongTinCongDan envelope
    json: bytes  # the gateway's CitizenLookup body


@dataclass
class Target:
    name: str
    url: str
    headers: Callable[[], dict[str, str]]  # per request (fresh auth timestamps)
    body: Callable[[Query], bytes]
    check: Callable[[Query, int, bytes], str | None]  # None when the answer is right
    processes: dict[str, int]  # role (hop, sandbox) → pid of the processes serving this target
    log: Path | None = None  # the gateway's log: its own access-log line for each request


@dataclass
class Sample:
    ok: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    late: list[float] = field(default_factory=list)  # open loop: send time − scheduled time
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # closed loop: role → CPU seconds used
    busy: float = float("nan")  # closed loop: CPUs busy on average (all processes of the machine)
    # open loop, gateway: from its access log, (duration_ms, registry_ms) of each lookup answered
    inside: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


def _machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


class _CpuMeter:
    """CPU time used by the given processes, by this one (the generator), and by the machine,
    between :meth:`start` and :meth:`stop`."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes

    def _read(self) -> tuple[dict[str, float | None], tuple[float, float] | None]:
        used: dict[str, float | None] = {r: cpu_seconds(pid) for r, pid in self.processes.items()}
        used["generator"] = time.process_time()
        return used, _machine_busy()

    def start(self) -> None:
        self._before = self._read()

    def stop(self, sample: Sample) -> None:
        (used0, machine0), (used1, machine1) = self._before, self._read()
        for role, end in used1.items():
            begin = used0[role]
            if begin is not None and end is not None:
                sample.cpu[role] = end - begin
        if machine0 is not None and machine1 is not None and machine1[1] > machine0[1]:
            share = (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])
            sample.busy = share * (os.cpu_count() or 1)


def _split_cpus() -> tuple[set[int], set[int]] | None:
    """The CPUs for the hop and those for everything else, or None on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def _pin(pid: int, cpus: set[int]) -> None:
    """Run every thread of process ``pid`` on ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):
            pass  # a thread that ended meanwhile


def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# --- requests and checks ---------------------------------------------------------------------


async def _queries(sandbox: str) -> tuple[list[Query], Callable[[], dict[str, str]], str]:
    """Every citizen's SOAP envelope, built by the connector's own code, and its JSON twin."""
    from connectors.population import mapping
    from connectors.population.client import WSDL, auth_headers
    from connectors.population.sandbox import sandbox_endpoint
    from connectors.soap import SoapClient
    from connectors.testdata import Population

    endpoint = sandbox_endpoint(sandbox)
    people = await asyncio.to_thread(Population(SEED).citizens, CITIZENS)
    queries = []
    async with SoapClient("population", endpoint, WSDL) as soap:
        binding = soap.client.service._binding
        action = binding.get("TraCuuThongTinCongDan").soapaction or ""
        # The header fields the gateway sends (its connector's defaults, the configured officer).
        header = {
            "service_code": SERVICE_CODE,
            "officer_id": OFFICER_ID,
            "agency_id": "000.00.00.H41",
            "account": endpoint.username,
        }
        for i, c in enumerate(people):
            params = {
                "personal_id": c.personal_id,
                "full_name": c.full_name,
                "birth_date": c.birth_date.isoformat(),
            }
            fields = mapping.lookup_request(params, f"bench-{i:06d}", **header)
            queries.append(
                Query(
                    personal_id=c.personal_id,
                    soap=soap.build("TraCuuThongTinCongDan", fields),
                    json=msgspec.json.encode(params),
                )
            )
    static = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}

    def soap_headers() -> dict[str, str]:
        # The sandbox checks a timestamped digest over its own URL; the proxy forwards without
        # Host, so the sandbox sees its own address either way.
        return {**static, **auth_headers(endpoint, endpoint.url)}

    return queries, soap_headers, endpoint.url


def _check_soap(q: Query, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:80]!r}"
    if b"<MaKetQua>0</MaKetQua>" not in body:
        return f"no match: {body[:120]!r}"
    if f"<dc:SoDinhDanh>{q.personal_id}</dc:SoDinhDanh>".encode() not in body:
        return "answer names another citizen"
    return None


_decode = msgspec.json.Decoder()


def _check_gateway(q: Query, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:120]!r}"
    doc = _decode.decode(body)
    if doc.get("match") is not True:
        return f"match={doc.get('match')!r} mismatches={doc.get('mismatches')}"
    if (doc.get("citizen") or {}).get("personal_id") != q.personal_id:
        return "answer names another citizen"
    return None


# --- the load generator ----------------------------------------------------------------------


class Load:
    def __init__(self, target: Target, queries: list[Query], session: aiohttp.ClientSession):
        self.target, self.queries, self.session = target, queries, session
        self._next = itertools.count()

    async def one(self, sample: Sample, started: float) -> None:
        q = self.queries[next(self._next) % len(self.queries)]
        t = self.target
        try:
            async with self.session.post(t.url, data=t.body(q), headers=t.headers()) as r:
                body = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            sample.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
            return
        done = time.perf_counter()
        wrong = t.check(q, status, body)
        if wrong is not None:
            sample.errors[wrong] += 1
            return
        sample.ok += 1
        sample.latencies.append(done - started)

    async def closed(self, workers: int, duration: float) -> Sample:
        sample = Sample()
        meter = _CpuMeter(self.target.processes)
        meter.start()
        start = time.perf_counter()
        stop_at = start + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                await self.one(sample, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(workers)))
        sample.elapsed = time.perf_counter() - start
        meter.stop(sample)
        return sample

    async def open(self, rate: float, duration: float) -> Sample:
        sample = Sample()
        log = self.target.log
        logged = log.stat().st_size if log is not None else 0
        count = max(1, int(rate * duration))
        start = time.perf_counter() + 0.005
        tasks = []
        for k in range(count):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sample.late.append(time.perf_counter() - due)
            tasks.append(asyncio.create_task(self.one(sample, due)))
        await asyncio.gather(*tasks)
        sample.elapsed = time.perf_counter() - start
        if log is not None:  # each line is written before its answer is sent: all are there
            sample.inside = await asyncio.to_thread(_access_log, log, logged)
        return sample


def _access_log(log: Path, offset: int) -> list[tuple[float, float]]:
    """(duration_ms, registry_ms) of each lookup the gateway logged after ``offset``."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    found = []
    for line in lines:
        if b'"registry_ms"' in line:
            entry = _decode.decode(line)
            found.append((entry["duration_ms"], entry["registry_ms"]))
    return found


# --- servers ---------------------------------------------------------------------------------


def _gateway_config(tmp: Path, pki: Path, sandbox_soap: str, tsa: Server) -> Path:
    # Only population is exercised; the other registries get an address nothing listens on
    # (the app needs a URL for each when the sandboxes are not embedded; nothing calls them), and
    # dummy credentials, which a url requires.
    others = "\n".join(
        f'[registries.{name}]\nurl = "http://127.0.0.1:9/{name}"\n'
        'username = "unused"\npassword = "unused"\nsecret = "unused"\napi_key = "unused"\n'
        'officer_name = "unused"\nofficer_id = "040088101111"\n'
        + (f'signer_fingerprint = "{"0" * 64}"\n' if name == "civil_status" else "")
        for name in ("civil_status", "insurance", "business", "portal")
    )
    text = f"""
[gateway]
listen = "127.0.0.1:0"

[store]
url = "sqlite:///{tmp / "gateway.db"}"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "{TOKEN}"
rights = ["lookups.citizen"]

[registries.population]
url = "{sandbox_soap}"
username = "lienthong"
secret = "sandbox-secret"
api_key = "sandbox-api-key"
officer_id = "{OFFICER_ID}"
service_code = "{SERVICE_CODE}"

{others}
[signing]
key = "{pki / "gateway.key.pem"}"
cert = "{pki / "gateway.cert.pem"}"
trust = ["{pki / "root.pem"}"]

[audit]
tsa_url = "{tsa.url}"
citizen_id_key = "{os.urandom(32).hex()}"

[sandbox]
embedded = false
"""
    path = tmp / "lienthong.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the bench -------------------------------------------------------------------------------


async def _run(profile: Profile) -> None:
    from signing.testing import TestPKI, free_port

    with tempfile.TemporaryDirectory(prefix="lienthong-bench-gw-") as name:
        tmp = Path(name)
        pki_dir = tmp / "pki"
        # Its CRLs and OCSP are served by the TSA's process (bench/_servers.py), on a free port.
        base_url = f"http://127.0.0.1:{free_port()}"
        await asyncio.to_thread(TestPKI.create, pki_dir, base_url=base_url)
        async with AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(
                server_process(
                    "sandbox",
                    "population",
                    "--seed",
                    str(SEED),
                    "--citizens",
                    str(CITIZENS),
                    log=tmp / "sandbox.log",
                )
            )
            queries, soap_headers, soap_url = await _queries(sandbox.url)
            proxy = await stack.enter_async_context(
                server_process("proxy", sandbox.url, log=tmp / "proxy.log")
            )
            tsa = await stack.enter_async_context(
                server_process("tsa", str(pki_dir), log=tmp / "tsa.log")
            )
            config = _gateway_config(tmp, pki_dir, soap_url, tsa)
            gateway = await stack.enter_async_context(
                server_process("gateway", str(config), log=tmp / "gateway.log")
            )
            path = soap_url[len(sandbox.url) :]
            json_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            soap = {"sandbox": sandbox.pid}
            targets = [
                Target("direct", soap_url, soap_headers, lambda q: q.soap, _check_soap, soap),
                Target(
                    "proxy",
                    proxy.url + path,
                    soap_headers,
                    lambda q: q.soap,
                    _check_soap,
                    {"hop": proxy.pid, **soap},
                ),
                Target(
                    "gateway",
                    gateway.url + "/v1/lookups/citizen",
                    lambda: json_headers,
                    lambda q: q.json,
                    _check_gateway,
                    {"hop": gateway.pid, **soap},
                    log=tmp / "gateway.log",
                ),
            ]
            loads: dict[str, Load] = {}
            for t in targets:
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                        timeout=aiohttp.ClientTimeout(total=30),
                    )
                )
                loads[t.name] = Load(t, queries, session)
            await _measure(profile, loads, [tsa.pid])


async def _measure(profile: Profile, loads: dict[str, Load], others: list[int]) -> None:
    """Run the phases; ``others``: the pids of the servers no target names (the TSA)."""
    # The generator's own heap (4,000 prepared queries, zeep's model) is frozen out of the
    # collector, as the gateway freezes its own: a full collection here would stall the load.
    gc.freeze()
    warm: dict[str, Sample] = {}
    for name, load in loads.items():  # first calls load zeep, open pools, warm SQLite
        warm[name] = Sample()
        await asyncio.gather(*(load.one(warm[name], 0.0) for _ in range(profile.warmup)))
    order = list(NAMES)

    async def each_round(run: Callable[[Load], Awaitable[Sample]]) -> dict[str, list[Sample]]:
        samples: dict[str, list[Sample]] = {n: [] for n in NAMES}
        for r in range(profile.rounds):
            for name in order[r % 3 :] + order[: r % 3]:
                samples[name].append(await run(loads[name]))
        return samples

    closed = await each_round(lambda load: load.closed(profile.workers, profile.closed_s))
    saturation = statistics.median(s.rate for s in closed["gateway"])
    rate = max(1.0, saturation / 2)
    opened = await each_round(lambda load: load.open(rate, profile.open_s))
    isolated: dict[str, list[Sample]] | None = None
    split = _split_cpus()
    if split is not None:
        hop_cpus, rest_cpus = split
        pids = {os.getpid(), *others} | {
            pid for load in loads.values() for pid in load.target.processes.values()
        }
        hops = {
            load.target.processes["hop"]
            for load in loads.values()
            if "hop" in load.target.processes
        }
        try:
            for pid in pids:
                _pin(pid, hop_cpus if pid in hops else rest_cpus)
            isolated = await each_round(lambda load: load.open(rate, profile.open_s))
        finally:
            for pid in pids:
                _pin(pid, hop_cpus | rest_cpus)
    _report(profile, rate, warm, closed, opened, isolated, split)


def _report(
    profile: Profile,
    rate: float,
    warm: dict[str, Sample],
    closed: dict[str, list[Sample]],
    opened: dict[str, list[Sample]],
    isolated: dict[str, list[Sample]] | None,
    split: tuple[set[int], set[int]] | None,
) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def ms(name: str, p: float, samples: dict[str, list[Sample]] = opened) -> float:
        return med([_pct(s.latencies, p) * 1000 for s in samples[name]])

    print(
        f"bench_gateway: citizen lookup (population, {CITIZENS} citizens cycled), "
        f"{profile.rounds} round(s): closed loop {profile.closed_s:g} s × {profile.workers} "
        f"workers, open loop {profile.open_s:g} s at {rate:,.0f} req/s (½ gateway saturation); "
        f"medians over rounds; {os.cpu_count()} CPUs shared by generator and servers"
    )
    print(f"{'':34}" + "".join(f"{n:>12}" for n in NAMES))
    rows: list[tuple[str, Callable[[str], float], str]] = [
        ("throughput, closed loop (req/s)", lambda n: med([s.rate for s in closed[n]]), ",.0f"),
        (
            "latency p50 @ saturation (ms)",
            lambda n: med([_pct(s.latencies, 50) * 1e3 for s in closed[n]]),
            ".2f",
        ),
        (f"p50 @ {rate:,.0f} req/s (ms)", lambda n: ms(n, 50), ".2f"),
        (f"p90 @ {rate:,.0f} req/s (ms)", lambda n: ms(n, 90), ".2f"),
        (f"p99 @ {rate:,.0f} req/s (ms)", lambda n: ms(n, 99), ".2f"),
        (
            "generator late p99 (ms)",
            lambda n: med([_pct(s.late, 99) * 1e3 for s in opened[n]]),
            ".2f",
        ),
    ]
    if isolated is not None:
        alone = isolated

        def alone_ms(p: float) -> Callable[[str], float]:
            return lambda n: ms(n, p, alone)

        rows += [(f"p{p} @ {rate:,.0f}, hop alone (ms)", alone_ms(p), ".2f") for p in (50, 90, 99)]

    def per_request(role: str) -> Callable[[str], float]:
        # CPU ms per answered request in the closed loop; NaN where the role has no process.
        def value(n: str) -> float:
            used = [s.cpu[role] / s.ok * 1e3 for s in closed[n] if role in s.cpu and s.ok]
            return med(used) if used else float("nan")

        return value

    rows += [
        ("CPU ms/request, closed: hop", per_request("hop"), ".3f"),
        ("CPU ms/request, closed: sandbox", per_request("sandbox"), ".3f"),
        ("CPU ms/request, closed: generator", per_request("generator"), ".3f"),
        (
            f"CPUs busy, closed (of {os.cpu_count()})",
            lambda n: med([s.busy for s in closed[n]]),
            ".2f",
        ),
    ]
    for label, value, fmt in rows:
        print(f"{label:34}" + "".join(f"{value(n):>12{fmt}}" for n in NAMES))
    errors: dict[str, Counter[str]] = {n: Counter() for n in NAMES}
    total: dict[str, int] = dict.fromkeys(NAMES, 0)
    for n in NAMES:
        for s in [warm[n], *closed[n], *opened[n], *(isolated or {}).get(n, [])]:
            errors[n].update(s.errors)
            total[n] += s.ok + sum(s.errors.values())
    print(
        f"{'errors / requests':34}"
        + "".join(f"{f'{sum(errors[n].values())}/{total[n]}':>12}" for n in NAMES)
    )
    ratio = med(
        [
            g.rate / p.rate if p.rate else 0.0
            for g, p in zip(closed["gateway"], closed["proxy"], strict=True)
        ]
    )

    def added(samples: dict[str, list[Sample]], p: float) -> float:
        """The gateway's p-th percentile less the proxy's, within each round; their median."""
        return med(
            [
                (_pct(g.latencies, p) - _pct(x.latencies, p)) * 1e3
                for g, x in zip(samples["gateway"], samples["proxy"], strict=True)
            ]
        )

    hop50 = med(
        [
            (_pct(p.latencies, 50) - _pct(d.latencies, 50)) * 1e3
            for p, d in zip(opened["proxy"], opened["direct"], strict=True)
        ]
    )

    def verdict(ok: bool, margin: str) -> str:
        return f"{'met' if ok else 'NOT met'} ({margin})"

    print(
        f"gateway/proxy throughput     {ratio:6.2f}   target ≥ {TARGET_THROUGHPUT_RATIO:.2f}: "
        + verdict(ratio >= TARGET_THROUGHPUT_RATIO, f"{ratio - TARGET_THROUGHPUT_RATIO:+.2f}")
    )
    layouts = [("", opened)]
    if isolated is not None and split is not None:
        layouts.append((f", hop alone on CPU {','.join(map(str, sorted(split[0])))}", isolated))
    for where, samples in layouts:
        for p, target in ((50, TARGET_ADDED_P50_MS), (99, TARGET_ADDED_P99_MS)):
            extra = added(samples, p)
            print(
                f"gateway − proxy p{p}{where} (ms) {extra:6.2f}   target ≤ {target:.0f} ms: "
                + verdict(extra <= target, f"{target - extra:+.2f} ms spare")
            )
    print(f"proxy − direct p50 (ms)      {hop50:6.2f}   (the bare extra hop)")
    inside = [s.inside for s in opened["gateway"] if s.inside]
    if inside:
        # The gateway's own view of the same requests, from its access log: how much of each
        # answer was the wait for the registry (its SOAP round trip, as the loop saw it) and how
        # much the rest (JSON in and out, checks, mapping, the audit commit).
        def p50_p99(of: Callable[[tuple[float, float]], float]) -> str:
            return "/".join(
                f"{med([_pct([of(x) for x in run], p) for run in inside]):.2f}" for p in (50, 99)
            )

        print(
            "gateway's access log (p50/p99 ms): answered "
            + p50_p99(lambda x: x[0])
            + ", waiting for the registry "
            + p50_p99(lambda x: x[1])
            + ", the rest "
            + p50_p99(lambda x: x[0] - x[1])
        )
    hop_cpu = per_request("hop")
    print(
        f"gateway/proxy CPU per request {hop_cpu('gateway') / hop_cpu('proxy'):5.2f}×  "
        "(the hop's own process; the throughput ratio follows it only where both runs are "
        "bound by that process, not by the CPUs all processes share)"
    )
    for n in NAMES:
        for message, count in errors[n].most_common(5):
            print(f"  {n} error ×{count}: {message}")


def main(quick: bool = False) -> None:
    asyncio.run(_run(QUICK if quick else FULL))


if __name__ == "__main__":
    main()
