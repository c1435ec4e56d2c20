"""``[outbox] give_up_after_s`` reaches the running gateway's outbox worker (its behaviour is
tested in tests/outbox/test_outbox_give_up.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def test_the_running_worker_gives_up_after_the_configured_time(
    make_gateway: Callable[..., Any],
) -> None:
    async with make_gateway(outbox={"give_up_after_s": 7200}) as gw:
        assert gw.runtime.worker is not None
        assert gw.runtime.worker.give_up_after == 7200
    async with make_gateway() as gw:  # the default: three days
        assert gw.runtime.worker is not None
        assert gw.runtime.worker.give_up_after == 259_200
