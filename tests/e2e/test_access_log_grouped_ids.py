"""The access log masks a personal id typed into a path in groups, as it masks one unbroken.

Found by probing: ``GET /v1/dossiers/094%20182%20054%20845`` was logged ``GET /v1/dossiers/094 182
054 845 404``: only a run of 9 or more digits with nothing between them became ``…``.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from tests.e2e.conftest import Gateway


async def test_a_personal_id_in_groups_is_not_logged(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lienthong.http")
    dossier = "000.00.00.H41-261207-0001"  # a dossier code is logged as it is
    paths = ("094 182 054 845", "CCCD-094-182-054-845", "094.182.054.845", dossier)
    for path in paths:
        async with await gateway.get("/v1/dossiers/" + quote(path)) as r:
            assert r.status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "lienthong.http"]
    assert lines == [
        "GET /v1/dossiers/… 404",
        "GET /v1/dossiers/CCCD-… 404",
        "GET /v1/dossiers/… 404",
        f"GET /v1/dossiers/{dossier} 404",
    ]


async def test_an_amount_of_money_in_a_path_is_logged_and_a_personal_id_is_not(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A path is masked by the rule the audit log's free text is (withhold_numbers): an amount
    before a currency word is kept, a personal id before one is not."""
    caplog.set_level(logging.INFO, logger="lienthong.http")
    paths = ("100.000.000 đồng", "1.500.000.000VNĐ", "079.198.105.555 đồng", "123 456 789 đồng ý")
    for path in paths:
        async with await gateway.get("/v1/dossiers/" + quote(path)) as r:
            assert r.status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "lienthong.http"]
    assert lines == [
        "GET /v1/dossiers/100.000.000 đồng 404",
        "GET /v1/dossiers/1.500.000.000VNĐ 404",
        "GET /v1/dossiers/… đồng 404",
        "GET /v1/dossiers/… đồng ý 404",
    ]
