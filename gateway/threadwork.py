"""Work handed to a thread cannot be stopped: an awaiting handler cancelled (its client went
away: ``serve`` cancels handlers) must not let go of what the thread still holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["to_its_end"]

T = TypeVar("T")


async def to_its_end(work: Awaitable[T]) -> T:
    """Await ``work``; if the caller is cancelled meanwhile, wait for ``work`` to end all the
    same before the cancellation goes on, so that a lock or a slot the caller holds is released
    only once the thread is done with what it guards."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved (shielded, it cannot itself be cancelled): no warning
        raise
