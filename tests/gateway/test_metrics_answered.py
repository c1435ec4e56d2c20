"""Metrics.answered: one series per (method, route, status), and methods outside HTTP's usual
ones counted together (aiohttp's C parser refuses unknown methods; its pure-Python parser, the
fallback where the extension is missing, takes any token)."""

from __future__ import annotations

from gateway.metrics import Metrics


def _lines(m: Metrics, prefix: str) -> list[str]:
    return [line for line in m.render().decode().splitlines() if line.startswith(prefix)]


def test_requests_are_counted_per_method_route_and_status() -> None:
    m = Metrics()
    for seconds in (0.002, 0.003):
        m.answered("POST", "/v1/lookups/citizen", 200, seconds)
    m.answered("POST", "/v1/lookups/citizen", 422, 0.001)
    requests = _lines(m, "lienthong_http_requests_total")
    assert (
        'lienthong_http_requests_total{method="POST",route="/v1/lookups/citizen",status="200"} 2.0'
        in requests
    )
    assert (
        'lienthong_http_requests_total{method="POST",route="/v1/lookups/citizen",status="422"} 1.0'
        in requests
    )
    assert len(requests) == 2
    latency = _lines(m, "lienthong_http_request_duration_seconds_count")
    assert latency == [
        'lienthong_http_request_duration_seconds_count{route="/v1/lookups/citizen"} 3.0'
    ]
    assert (
        'lienthong_http_request_duration_seconds_sum{route="/v1/lookups/citizen"} 0.006'
        in _lines(m, "lienthong_http_request_duration_seconds_sum")
    )


def test_unusual_methods_share_one_series() -> None:
    m = Metrics()
    for i in range(50):
        m.answered(f"FOO{i}", "unmatched", 405, 0.001)
    m.answered("get", "unmatched", 405, 0.001)  # methods are case-sensitive: not GET
    m.answered("GET", "/healthz", 200, 0.001)
    assert _lines(m, "lienthong_http_requests_total") == [
        'lienthong_http_requests_total{method="other",route="unmatched",status="405"} 51.0',
        'lienthong_http_requests_total{method="GET",route="/healthz",status="200"} 1.0',
    ]
