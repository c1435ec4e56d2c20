"""The portal connector against its sandbox, over real sockets."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from connectors.api import Endpoint, PermanentError, TransientError
from connectors.faults import FaultPlan
from connectors.portal.client import PortalConnector
from connectors.portal.mapping import STATUS_CODES, sync_envelope
from connectors.portal.sandbox import PASSWORD, USERNAME, create_app, endpoint
from connectors.sandboxes import serve_app

CODE = "000.00.00.H41-261122-0001"
DOSSIER: dict[str, Any] = {
    "code": CODE,
    "procedure": "1.001193",
    "procedure_name": "Đăng ký khai sinh",
    "applicant": {
        "full_name": "Nguyễn Thị Lan",
        "personal_id": "040190012345",
        "phone": "0912345678",
    },
    "status": "accepted",
    "received_at": "2026-11-22T09:15:00+07:00",
    "due_at": "2026-11-25T17:00:00+07:00",
    "agency": "000.00.00.H41",
}
PROGRESS: dict[str, Any] = {
    "code": CODE,
    "status": "in_progress",
    "step": "birth.register",
    "content": "Đã gửi đăng ký khai sinh tới hệ thống hộ tịch",
    "at": "2026-11-22T02:20:05+00:00",
    "handler": {
        "full_name": "Trần Văn Minh",
        "title": "Công chức tư pháp - hộ tịch",
        "department": "UBND xã",
    },
}


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_app(create_app(seed=1)) as base:
        yield base


async def admin(base: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + path) as reply:
        return reply.status, await reply.json()


async def test_sync_then_progress(url: str) -> None:
    async with PortalConnector(endpoint(url)) as portal:
        synced = await portal.call("dossier.sync", DOSSIER, idempotency_key="sync-1")
        progressed = await portal.call("dossier.progress", PROGRESS, idempotency_key="prog-1")
    assert synced.reference and progressed.reference and synced.reference != progressed.reference
    assert synced.data == {"code": CODE, "transaction": synced.reference}
    status, state = await admin(url, f"/_sandbox/dossiers/{CODE}")
    assert status == 200
    dossier = state["dossier"]
    assert dossier["MaHoSo"] == CODE
    assert dossier["MaTTHC"] == "1.001193"
    assert dossier["TenTTHC"] == "Đăng ký khai sinh"
    assert dossier["ChuHoSo"] == "Nguyễn Thị Lan"
    assert (dossier["LoaiDoiTuong"], dossier["MaDoiTuong"]) == ("1", "040190012345")
    assert dossier["SoDienThoai"] == "0912345678"
    assert dossier["NgayTiepNhan"] == "20261122091500"
    assert dossier["NgayHenTra"] == "20261125170000"
    assert dossier["TrangThaiHoSo"] == "2"
    assert dossier["NgayTra"] == "" and dossier["NgayKetThucXuLy"] == ""
    assert dossier["DonViXuLy"] == "000.00.00.H41"
    assert dossier["TaiLieuNop"] == [] and dossier["DanhSachGiayToKetQua"] == []
    [step] = state["progress"]
    # 02:20:05 UTC is 09:20:05 in Vietnam: the portal's compact form is local time.
    assert step["ThoiDiemXuLy"] == "20261122092005"
    assert step["NgayBatDau"] == "20261122092005"
    assert step["NguoiXuLy"] == "Trần Văn Minh"
    assert step["ChucDanh"] == "Công chức tư pháp - hộ tịch"
    assert step["PhongBanXuLy"] == "UBND xã"
    assert step["TrangThai"] == "4"
    _, stats = await admin(url, "/_sandbox/stats")
    assert stats == {"requests": 2, "writes": {"dossier.sync": 1, "dossier.progress": 1},
                     "replays": 0}  # fmt: skip


async def test_latest_state_wins_and_completion_sets_return_date(url: str) -> None:
    done = {**DOSSIER, "status": "completed", "finished_at": "2026-11-23T10:00:00+07:00"}
    async with PortalConnector(endpoint(url)) as portal:
        await portal.call("dossier.sync", DOSSIER, idempotency_key="a")
        await portal.call("dossier.sync", done, idempotency_key="b")
    _, state = await admin(url, f"/_sandbox/dossiers/{CODE}")
    assert state["syncs"] == 2
    assert state["dossier"]["TrangThaiHoSo"] == "10"
    assert state["dossier"]["NgayTra"] == "20261123100000"
    assert state["dossier"]["NgayKetThucXuLy"] == "20261123100000"


@pytest.mark.parametrize("status", sorted(STATUS_CODES))
def test_every_status_maps(status: str) -> None:
    envelope = sync_envelope({**DOSSIER, "status": status})
    assert envelope["data"][0]["TrangThaiHoSo"] == STATUS_CODES[status]
    assert envelope["isUpdating"] is (status not in ("received", "accepted"))


def test_contract_statuses() -> None:
    # .notes/operations.md: accepted 2, in_progress 4, failed 8, completed 10.
    assert [STATUS_CODES[s] for s in ("accepted", "in_progress", "failed", "completed")] == [
        "2", "4", "8", "10"]  # fmt: skip


async def test_same_key_is_one_write(url: str) -> None:
    async with PortalConnector(endpoint(url)) as portal:
        first = await portal.call("dossier.sync", DOSSIER, idempotency_key="k")
        again = await portal.call("dossier.sync", DOSSIER, idempotency_key="k")
    assert first.reference == again.reference
    _, stats = await admin(url, "/_sandbox/stats")
    assert stats["writes"] == {"dossier.sync": 1} and stats["replays"] == 1
    _, state = await admin(url, f"/_sandbox/dossiers/{CODE}")
    assert state["syncs"] == 1


async def test_same_key_other_body_is_refused(url: str) -> None:
    async with PortalConnector(endpoint(url)) as portal:
        await portal.call("dossier.sync", DOSSIER, idempotency_key="k")
        with pytest.raises(PermanentError) as caught:
            await portal.call("dossier.sync", {**DOSSIER, "status": "in_progress"},
                              idempotency_key="k")  # fmt: skip
    assert caught.value.code == "http-409"


async def test_lost_reply_retried_under_same_key_writes_once() -> None:
    plan = FaultPlan(lost_reply_rate=1.0)
    async with serve_app(create_app(faults=plan)) as url, PortalConnector(endpoint(url)) as portal:
        with pytest.raises(TransientError):
            await portal.call("dossier.sync", DOSSIER, idempotency_key="lost")
        async with aiohttp.ClientSession() as session:
            await session.put(f"{url}/_sandbox/faults", json={})
        result = await portal.call("dossier.sync", DOSSIER, idempotency_key="lost")
        _, stats = await admin(url, "/_sandbox/stats")
        _, state = await admin(url, f"/_sandbox/dossiers/{CODE}")
    assert result.reference
    assert stats["writes"] == {"dossier.sync": 1} and stats["replays"] == 1
    assert state["syncs"] == 1


async def test_progress_of_unsynced_dossier_is_rejected(url: str) -> None:
    async with PortalConnector(endpoint(url)) as portal:
        with pytest.raises(PermanentError, match="not synced") as caught:
            await portal.call("dossier.progress", PROGRESS, idempotency_key="p")
    assert caught.value.code == "rejected"
    _, stats = await admin(url, "/_sandbox/stats")
    assert stats["writes"] == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code": "H41-1"}, "code"),
        ({"procedure": "1-001193"}, "procedure"),
        ({"agency": "H41"}, "agency"),
        ({"status": "lost"}, "unknown status"),
        ({"received_at": "2026-11-22T09:15:00"}, "naive"),
        ({"received_at": None}, "received_at is required"),
        ({"applicant": "Nguyễn Thị Lan"}, "applicant must be an object"),
    ],
)
async def test_bad_params_refused_before_sending(
    url: str, change: dict[str, Any], message: str
) -> None:
    async with PortalConnector(endpoint(url)) as portal:
        with pytest.raises(PermanentError, match=message) as caught:
            await portal.call("dossier.sync", {**DOSSIER, **change}, idempotency_key="x")
    assert caught.value.code == "invalid-params"
    _, stats = await admin(url, "/_sandbox/stats")
    assert stats["requests"] == 0


async def test_wrong_credentials(url: str) -> None:
    wrong = Endpoint(url=url, username=USERNAME, password=PASSWORD + "x")
    async with PortalConnector(wrong) as portal:
        with pytest.raises(PermanentError) as caught:
            await portal.call("dossier.sync", DOSSIER, idempotency_key="x")
    assert caught.value.code == "http-401"


async def post(url: str, body: Any, auth: bool = True) -> tuple[int, Any]:
    headers = {"Authorization": aiohttp.encode_basic_auth(USERNAME, PASSWORD)} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/dichvucong", json=body, headers=headers) as reply,
    ):
        return reply.status, await reply.json()


def envelope(**changes: Any) -> dict[str, Any]:
    body = sync_envelope(DOSSIER)
    body = copy.deepcopy(body)
    body["data"][0].update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"NgayTiepNhan": "2026-11-22"}, "data[0].NgayTiepNhan"),
        ({"NgayHenTra": "20261399000000"}, "data[0].NgayHenTra"),
        ({"TrangThaiHoSo": "11"}, "data[0].TrangThaiHoSo"),
        ({"TrangThaiHoSo": 2}, "must be a string"),
        ({"ChuHoSo": ""}, "data[0].ChuHoSo"),
        ({"MaHoSo": "HS-1"}, "data[0].MaHoSo"),
        ({"DonViXuLy": "UBND"}, "data[0].DonViXuLy"),
        ({"TaiLieuNop": None}, "data[0].TaiLieuNop"),
        ({"LoaiDoiTuong": "3"}, "data[0].LoaiDoiTuong"),
        ({"TrangThaiHoSo": "10", "NgayTra": ""}, "data[0].NgayTra"),
    ],
)
async def test_sandbox_validates_fields(url: str, changes: dict[str, Any], error: str) -> None:
    status, reply = await post(url, envelope(**changes))
    assert status == 400 and reply["error_code"] == "-1"
    assert any(error in e for e in reply["errors"]), reply["errors"]


async def test_sandbox_validates_missing_field_and_envelope(url: str) -> None:
    body = envelope()
    del body["data"][0]["Email"]
    status, reply = await post(url, body)
    assert status == 400 and any("Email" in e for e in reply["errors"])
    status, reply = await post(url, {**envelope(), "service": "XoaHoSo"})
    assert status == 400 and "unknown service" in reply["errors"][0]
    status, reply = await post(url, {**envelope(), "isUpdating": "yes"})
    assert status == 400 and "isUpdating" in reply["errors"][0]
    status, reply = await post(url, {"service": "DongBoHoSoMC", "isUpdating": False, "data": []})
    assert status == 400
    status, _ = await post(url, envelope(), auth=False)
    assert status == 401
    _, stats = await admin(url, "/_sandbox/stats")
    assert stats["writes"] == {}
    assert (await admin(url, f"/_sandbox/dossiers/{CODE}"))[0] == 404
