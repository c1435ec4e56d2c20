"""/readyz and the document blob folder ([documents] blob_dir).

Before: with the folder gone, or a file where its temp area should be, every POST /v1/documents
answered 503 store-unavailable, yet /readyz said ready (store, outbox, audit: ok), and a load
balancer kept sending documents to this gateway.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.api.documents import HUB_KEY


async def _readyz(gw: Any, who: str | None) -> tuple[int, dict[str, Any]]:
    if who is None:  # a load balancer: no credentials
        async with gw.http.get(gw.url + "/readyz") as r:
            return r.status, await r.json(content_type=None)
    async with await gw.get("/readyz", who=who) as r:
        return r.status, await r.json(content_type=None)


def _lose_the_folder(blobs: Path) -> Path:
    shutil.rmtree(blobs)  # an unmounted volume, a folder removed by hand
    return blobs


def _a_file_for_its_temp_area(blobs: Path) -> Path:
    # Where every intake is staged cannot take a file (root writes through mode bits).
    shutil.rmtree(blobs / "tmp")
    (blobs / "tmp").write_bytes(b"")
    return blobs / "tmp"


def _a_file_for_the_folder(blobs: Path) -> Path:
    shutil.rmtree(blobs)
    blobs.write_bytes(b"")
    return blobs


def _restore(blobs: Path) -> None:
    if blobs.is_file():
        blobs.unlink()
    if (blobs / "tmp").is_file():
        (blobs / "tmp").unlink()
    (blobs / "tmp").mkdir(parents=True, exist_ok=True)  # the volume mounted again


@pytest.mark.parametrize(
    "break_folder", [_lose_the_folder, _a_file_for_its_temp_area, _a_file_for_the_folder]
)
async def test_a_blob_folder_that_cannot_be_written_makes_the_gateway_not_ready(
    make_gateway: Any, tmp_path: Path, break_folder: Callable[[Path], Path]
) -> None:
    blobs = tmp_path / "blobs"
    async with make_gateway(documents={"blob_dir": str(blobs)}) as gw:
        assert gw.runtime.extras.get(HUB_KEY) is not None  # documents are taken
        status, told = await _readyz(gw, "operator")
        assert (status, told["checks"].get("blobs")) == (200, "ok"), told

        broken = break_folder(blobs)
        status, problem = await _readyz(gw, "operator")
        assert status == 503, problem  # POST /v1/documents answers 503: take us out
        assert problem["checks"]["blobs"].startswith("failing: "), problem
        assert str(broken) in problem["checks"]["blobs"], problem  # the admin right: which, why
        assert str(broken) in problem["detail"]
        status, anonymous = await _readyz(gw, None)
        assert (status, anonymous["checks"]["blobs"]) == (503, "failing"), anonymous
        assert str(tmp_path) not in str(anonymous)  # anyone else: which check, not the path

        _restore(blobs)
        status, told = await _readyz(gw, "operator")
        assert (status, told["checks"]["blobs"]) == (200, "ok"), told


async def test_without_the_hub_there_is_no_blob_check(make_gateway: Any) -> None:
    async with make_gateway() as gw:
        gw.runtime.extras.pop(HUB_KEY, None)  # no signing key set up: documents are refused
        status, told = await _readyz(gw, "operator")
        assert status == 200 and "blobs" not in told["checks"], told
