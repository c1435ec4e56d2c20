"""The [outbox] times have floors: below them the outbox cannot work, and a gateway must not start.

A lease shorter than a store write plus a renewal ran out while its job was still running, so the
job was taken over and run again and again, never done and never dead (lease_s = 0.001: 39 sends
of one callback in 30 s); a poll of a picosecond spins a CPU; a circuit reset of a nanosecond
never holds a failing registry off. Each is refused at start, in one line naming the key.
"""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, settings_from_mapping

FLOORS = {"lease_s": 1.0, "poll_s": 0.01, "breaker_reset_s": 0.1}


@pytest.mark.parametrize(("key", "floor"), FLOORS.items())
@pytest.mark.parametrize("fraction", [1e-12, 0.5, 0.999])
def test_a_time_below_its_floor_is_refused_naming_the_key(
    key: str, floor: float, fraction: float
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_mapping({"outbox": {key: floor * fraction}}, environ={})
    message = str(caught.value)
    assert message.startswith(f"outbox.{key}: must be at least {floor:g} s")
    assert "\n" not in message


@pytest.mark.parametrize(("key", "floor"), FLOORS.items())
def test_a_time_at_its_floor_loads(key: str, floor: float) -> None:
    settings = settings_from_mapping({"outbox": {key: floor}}, environ={})
    assert getattr(settings.outbox, key) == floor
