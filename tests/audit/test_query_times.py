"""Times in audit filters: written in the log's own spelling (UTC, microseconds), so that text
comparison in SQL is time comparison."""

from __future__ import annotations

import pytest

from gateway.audit.query import FilterError, normalize_time


@pytest.mark.parametrize(
    ("given", "means"),
    [
        # A date alone is that day in Vietnam: it was midnight UTC, 07:00 there, and a day's
        # window took the first 7 hours of the next day in place of its own.
        ("2026-12-06", "2026-12-05T17:00:00.000000+00:00"),
        (" 2026-12-06 ", "2026-12-05T17:00:00.000000+00:00"),
        ("2026-12-06Z", "2026-12-06T00:00:00.000000+00:00"),
        # fromisoformat reads this as 07:00 without a zone: it was refused as lacking one
        ("2026-12-06+07:00", "2026-12-05T17:00:00.000000+00:00"),
        ("2026-12-06T10:00:00Z", "2026-12-06T10:00:00.000000+00:00"),
        (" 2026-12-06T10:00:00+07:00 ", "2026-12-06T03:00:00.000000+00:00"),
    ],
)
def test_times_and_dates_with_their_zones(given: str, means: str) -> None:
    assert normalize_time(given) == means


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("2026-12-06T10:00:00", "needs a time zone"),  # a local time: the window would shift
        ("2026-13-01", "not an ISO 8601 time"),
        ("2026-12-06+25:00", "not an ISO 8601 time"),
        ("yesterday", "not an ISO 8601 time"),
    ],
)
def test_what_is_not_a_time_with_a_zone_is_refused(given: str, says: str) -> None:
    with pytest.raises(FilterError, match=says):
        normalize_time(given)
