"""Smoke tests: each bench's ``main(quick=True)`` runs end to end and prints its table.

No timing is asserted (the machine is shared); only that the bench ran, measured without errors
and said what it measured.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow


def test_bench_gateway_quick(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_gateway

    cpus = os.sched_getaffinity(0)
    bench_gateway.main(quick=True)
    out = capsys.readouterr().out
    assert "throughput, closed loop (req/s)" in out
    # The open loop again with the hop on CPUs of its own, then every process back on all CPUs.
    assert os.sched_getaffinity(0) == cpus
    if len(cpus) > 1:
        alone = next(
            line for line in out.splitlines() if line.startswith("p99 @") and "alone" in line
        )
        assert all(float(cell) > 0 for cell in alone.split()[-3:]), alone
        assert "gateway − proxy p99, hop alone on CPU" in out
    assert "gateway/proxy throughput" in out
    errors = next(line for line in out.splitlines() if line.startswith("errors / requests"))
    assert all(cell.startswith("0/") for cell in errors.split()[-3:]), out
    # The hop's CPU per request, read from /proc: none for direct, some for proxy and gateway.
    hop = next(line for line in out.splitlines() if line.startswith("CPU ms/request, closed: hop"))
    direct, proxy, gateway = hop.split()[-3:]
    assert direct == "nan" and float(proxy) > 0 and float(gateway) > 0, hop
    # The gateway's own times, from its access log: a lookup waits for the registry, and that
    # wait is part of its answer's time.
    inside = next(line for line in out.splitlines() if line.startswith("gateway's access log"))
    answered, registry, rest = (float(p.split()[-1].split("/")[0]) for p in inside.split(", "))
    assert 0 < registry <= answered and rest > 0, inside


def test_bench_flows_quick(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_flows

    bench_flows.main(quick=True)
    out = capsys.readouterr().out
    assert "flows/s (completed / total time)" in out
    assert "duplicate registrations, no faults" in out
