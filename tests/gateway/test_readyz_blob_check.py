"""ops.blobs_check around a blob folder whose stat does not answer (a hung network mount).

A unit test of the code around BlobStore.trouble: the stat is replaced by one that waits.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.api import ops
from gateway.exchange.blobs import BlobStore


class HungFolder(BlobStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.asked = 0

    def trouble(self, min_free_bytes: int) -> str | None:
        self.asked += 1
        self.release.wait(10)
        return super().trouble(min_free_bytes)


async def test_a_stat_that_does_not_answer_fails_the_check_and_is_not_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "PROBE_TIMEOUT_S", 0.05)
    blobs = HungFolder(tmp_path / "b")
    extras: dict[str, Any] = {}
    try:
        for _ in range(3):  # three polls while the mount hangs
            assert await ops.blobs_check(extras, blobs) == "failing: no answer within 0.05 s"
        assert blobs.asked == 1  # one thread waits on the mount, not one per poll
    finally:
        blobs.release.set()
    await asyncio.wait_for(asyncio.shield(extras["ops.blob-check"]), 10)
    assert await ops.blobs_check(extras, blobs) == "ok"  # the mount answers again
    assert blobs.asked == 2
