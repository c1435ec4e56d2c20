"""The business connector against its sandbox, over real sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from connectors.api import Endpoint, PermanentError, TransientError
from connectors.business.client import BusinessConnector
from connectors.business.mapping import STATUSES
from connectors.business.sandbox import API_KEY, create_app, endpoint, generate_enterprises
from connectors.identifiers import PROVINCES, check_tax_code
from connectors.sandboxes import serve_app

SEED = 7


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_app(create_app(seed=SEED, count=500)) as base:
        yield base


async def stats(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/_sandbox/stats") as r:
        data: dict[str, Any] = await r.json()
        return data


async def codes(base: str, status: str) -> list[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/_sandbox/enterprises", params={"status": status}) as r,
    ):
        listed: list[str] = (await r.json())["codes"]
        return listed


def test_generation_is_deterministic_and_valid() -> None:
    first, again = generate_enterprises(3, 400), generate_enterprises(3, 400)
    assert first == again
    assert generate_enterprises(4, 400) != first
    for code in first:
        assert check_tax_code(code) == code
    assert {r["tinhTrang"]["ma"] for r in generate_enterprises(0).values()} == set(STATUSES)
    assert any("-" in code for code in generate_enterprises(0))


def test_branches_live_within_their_enterprise() -> None:
    """A branch was drawn on its own: active branches of dissolved enterprises, branches opened
    before their enterprise. Now opened on or after it, and active only while it is."""

    def day(text: str) -> tuple[str, ...]:
        return tuple(reversed(text.split("/")))

    found = generate_enterprises(0)
    branches = [(code, code.split("-")[0]) for code in found if "-" in code]
    assert len(branches) > 100
    for branch, parent in branches:
        b, p = found[branch], found[parent]
        if p["tinhTrang"]["ma"] != "HOAT_DONG":
            assert b["tinhTrang"] == p["tinhTrang"], branch
        assert day(b["ngayCap"]) >= day(p["ngayCap"]), branch
    assert any(found[p]["tinhTrang"]["ma"] == "DA_GIAI_THE" for _, p in branches)


async def test_lookup_maps_every_field(url: str) -> None:
    expected = generate_enterprises(SEED, 500)
    code = next(iter(expected))
    wire = expected[code]
    async with BusinessConnector(endpoint(url)) as connector:
        result = await connector.call("enterprise.lookup", {"tax_code": code}, request_id="r-1")
    record = result.data
    assert result.reference == code
    assert record["tax_code"] == code
    assert record["name"] == wire["tenDoanhNghiep"]
    assert record["name_en"] == wire["tenTiengAnh"]
    assert record["short_name"] == wire["tenVietTat"]
    assert record["legal_form"]["code"] == wire["loaiHinh"]["ma"]
    day, month, year = wire["ngayCap"].split("/")
    assert record["registered_on"] == f"{year}-{month}-{day}"
    # 3 digits, as citizen records give it: the registry's 2-digit code with its leading 0
    assert record["head_office"]["province_code"] == "0" + wire["diaChiTruSo"]["maTinhThanh"]
    assert record["head_office"]["province_code"] in PROVINCES
    assert record["head_office"]["ward_code"] == wire["diaChiTruSo"]["maPhuongXa"]
    masked = record["legal_representative"]["personal_id_masked"]
    assert len(masked) == 12 and masked[3:9] == "******"
    assert record["charter_capital"] == wire["vonDieuLe"]
    assert record["main_business_line"]["code"] == wire["nganhNgheChinh"]["maNganh"]


@pytest.mark.parametrize("wire_status", sorted(STATUSES))
async def test_every_status(url: str, wire_status: str) -> None:
    found = await codes(url, wire_status)
    assert found, f"the sandbox holds no enterprise in status {wire_status}"
    async with BusinessConnector(endpoint(url)) as connector:
        result = await connector.call("enterprise.lookup", {"tax_code": found[0]})
    assert result.data["status"] == STATUSES[wire_status][0]
    assert result.data["status_code"] == wire_status
    assert result.data["status_label"] == STATUSES[wire_status][1]


async def test_branch_code(url: str) -> None:
    branch = next(c for c in generate_enterprises(SEED, 500) if "-" in c)
    async with BusinessConnector(endpoint(url)) as connector:
        result = await connector.call("enterprise.lookup", {"tax_code": branch})
    assert result.data["legal_form"]["code"] == "CN"
    assert result.data["name"].startswith("CHI NHÁNH ")


@pytest.mark.parametrize("bad", ["0100233480", "12345", "0100000000", "0314409058-000", ""])
async def test_invalid_tax_code_refused_before_any_request(url: str, bad: str) -> None:
    async with BusinessConnector(endpoint(url)) as connector:
        with pytest.raises(PermanentError) as caught:
            await connector.call("enterprise.lookup", {"tax_code": bad})
    assert caught.value.code == "invalid-tax-code"
    assert (await stats(url))["requests"] == 0


async def test_missing_tax_code(url: str) -> None:
    async with BusinessConnector(endpoint(url)) as connector:
        with pytest.raises(PermanentError, match="tax_code is required"):
            await connector.call("enterprise.lookup", {})
    assert (await stats(url))["requests"] == 0


async def test_unknown_enterprise_is_not_found(url: str) -> None:
    # The spec's valid vector: a well-formed code the seeded sandbox does not hold.
    assert "0100233488" not in generate_enterprises(SEED, 500)
    async with BusinessConnector(endpoint(url)) as connector:
        with pytest.raises(PermanentError) as caught:
            await connector.call("enterprise.lookup", {"tax_code": "0100233488"})
    assert caught.value.code == "not-found"
    assert (await stats(url))["requests"] == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body><h1>404 Not Found</h1>nginx</body></html>", "text/html"),
        (b"", "text/plain"),
        (b'{"maLoi": "KHONG_CO_DUONG_DAN", "thongBao": "no such path"}', "application/json"),
        (b'["KHONG_TIM_THAY"]', "application/json"),
    ],
    ids=["nginx", "empty", "other-code", "not-an-object"],
)
async def test_a_404_without_the_registrys_not_found_is_a_registry_fault(
    body: bytes, content_type: str
) -> None:
    """Found by probing: any 404 (a web server's page, from a wrong url or base path) was "no
    enterprise with tax code …", and counted as the registry answering."""
    from aiohttp import web

    async def nowhere(request: web.Request) -> web.Response:
        return web.Response(status=404, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/{path:.*}", nowhere)
    async with serve_app(app) as base, BusinessConnector(endpoint(base)) as connector:
        with pytest.raises(TransientError, match="not-found answer") as caught:
            await connector.call("enterprise.lookup", {"tax_code": "0100233488"})
    assert caught.value.code == "http-404" and not caught.value.answered


async def test_wrong_api_key(url: str) -> None:
    code = next(iter(generate_enterprises(SEED, 500)))
    async with BusinessConnector(Endpoint(url=url, api_key="not-" + API_KEY)) as connector:
        with pytest.raises(PermanentError) as caught:
            await connector.call("enterprise.lookup", {"tax_code": code})
    assert caught.value.code == "http-401"


async def test_unknown_operation(url: str) -> None:
    async with BusinessConnector(endpoint(url)) as connector:
        with pytest.raises(PermanentError, match="unknown operation"):
            await connector.call("enterprise.delete", {"tax_code": "0100233488"})


async def test_closed_registry_is_transient() -> None:
    async with serve_app(create_app(count=10)) as base:
        pass  # the port is free again now: nothing listens there
    async with BusinessConnector(endpoint(base)) as connector:
        with pytest.raises(TransientError, match="connection failed"):
            await connector.call("enterprise.lookup", {"tax_code": "0100233488"})


def _registry_answering(wire: dict[str, Any]) -> Any:
    """A registry that answers ``wire`` (as the sandbox holds it, changed) to every lookup."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(wire)

    app = web.Application()
    app.router.add_get("/{path:.*}", answer)
    return serve_app(app)


async def test_an_unknown_status_is_answered_with_the_registrys_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by probing: a status outside the five the gateway knows (the day the registry adds
    one) made every lookup of that enterprise a "malformed reply", retried as a fault."""
    tax_code, wire = next(iter(generate_enterprises(SEED, 50).items()))
    label = "Không hoạt động tại địa chỉ đã đăng ký"
    wire = {**wire, "tinhTrang": {"ma": "KHONG_HOAT_DONG_TAI_DIA_CHI", "ten": label}}
    caplog.set_level(logging.WARNING)
    async with _registry_answering(wire) as base, BusinessConnector(endpoint(base)) as connector:
        for _ in range(3):
            result = await connector.call("enterprise.lookup", {"tax_code": tax_code})
            assert result.data["status"] == "unknown"
            assert result.data["status_code"] == "KHONG_HOAT_DONG_TAI_DIA_CHI"
            assert result.data["status_label"] == label
            assert result.data["name"] == wire["tenDoanhNghiep"]
    warnings = [r for r in caplog.records if "KHONG_HOAT_DONG_TAI_DIA_CHI" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]  # once, not at every lookup


@pytest.mark.parametrize(
    "status",
    [
        None,  # no tinhTrang at all
        {"ten": "Đang hoạt động"},
        {"ma": "HOAT_DONG"},
        {"ma": 1, "ten": "Đang hoạt động"},
        {"ma": "", "ten": "Đang hoạt động"},
        {"ma": "  ", "ten": "Đang hoạt động"},
        "HOAT_DONG",
    ],
    ids=["missing", "no-code", "no-text", "code-not-text", "empty-code", "blank-code", "bare"],
)
async def test_a_malformed_status_is_still_a_malformed_reply(status: Any) -> None:
    tax_code, wire = next(iter(generate_enterprises(SEED, 50).items()))
    wire = {k: v for k, v in wire.items() if k != "tinhTrang"}
    if status is not None:
        wire["tinhTrang"] = status
    async with _registry_answering(wire) as base, BusinessConnector(endpoint(base)) as connector:
        with pytest.raises(TransientError, match="malformed reply"):
            await connector.call("enterprise.lookup", {"tax_code": tax_code})
