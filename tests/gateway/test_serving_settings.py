"""The process settings a serving gateway tunes (gateway.app._tuned_for_serving) are in force while
it serves and undone after: tests, and `make demo`, run many applications in one process."""

from __future__ import annotations

import gc
import sys

from gateway.app import _tuned_for_serving


def test_serving_tunes_the_collector_and_the_gil_then_restores_them() -> None:
    before = (gc.get_threshold(), sys.getswitchinterval())
    with _tuned_for_serving():
        assert gc.get_threshold() == (20_000, 20, 20)
        assert sys.getswitchinterval() == 0.0005
        assert gc.get_freeze_count() > 0  # the start-up heap is out of the collector's way
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
