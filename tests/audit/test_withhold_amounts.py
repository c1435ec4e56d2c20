"""What free text keeps of a sum of money: an amount written the Vietnamese way is no personal id.

Found by probing: "100.000.000 đồng", "1.500.000.000 VNĐ", "2.000.000.000đ" were withheld as a
personal id in groups is, so a registry's or an operator's words about a funeral allowance or a
fee lost their meaning ("trợ cấp mai táng [number withheld] đồng"). No personal id may come
through instead: a CCCD starts with 0, and a 9-digit CMND in groups of three is kept only where
the word after it is money and nothing else ("đồng ý", "đồng bộ", "Đồng Tháp" are not).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit import WITHHELD, AuditEvent, append, decode_entry, withhold_numbers
from gateway.store import SQLiteStore

NFD_DONG = "\u0111o\u0302\u0300ng"  # "đồng" as an NFD source sends it


@pytest.mark.parametrize(
    "text",
    [
        "trợ cấp mai táng 100.000.000 đồng",
        "lệ phí 1.500.000.000 VNĐ",
        "tạm ứng 2.000.000.000đ",
        "tổng 12.345.678.900 VND cho 3 hồ sơ",
        "bồi thường 100 000 000 đồng",
        "BỒI THƯỜNG 250.000.000 ĐỒNG",
        "phí 1.500.000.000 vnđ, đã nộp",
        "phí 250.000.000\u00a0₫",
        "phí 1\u202f500\u202f000\u202f000\u00a0₫",
        "(100.000.000 đồng)",
        "mức 100.000.000 đồng.",
        "mức 100.000.000 đồng, hạn 2026-12-07",
        f"mức 100.000.000 {NFD_DONG}",
        "mức 100.000.000 VND cho gia đình",  # VND, VNĐ and ₫ begin no other word
        "mức 1.500.000.000 đồng cho gia đình",  # 10 digits: no personal id is written so
        "mức 1.500.000.000 đồng, 200.000.000 VNĐ và 300 000 000 đ",
    ],
)
def test_an_amount_of_money_is_kept(text: str) -> None:
    assert withhold_numbers(text) == text


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # A CCCD starts with its province code, 001 to 096: never an amount, however written.
        ("CCCD 079.198.105.555 đồng", f"CCCD {WITHHELD} đồng"),
        ("CCCD 079 198 105 555 VNĐ", f"CCCD {WITHHELD} VNĐ"),
        ("079198105555 đồng", f"{WITHHELD} đồng"),
        ("CCCD-079-198-105-555 đồng", f"CCCD-{WITHHELD} đồng"),
        ("CCCD 0791 9810 5555 đ", f"CCCD {WITHHELD} đ"),
        # A leading group of one digit is part of the number: a phone number stays withheld.
        ("gọi 0 912 345 678 VND", f"gọi {WITHHELD} VND"),
        ("mã 12345.100.000.000 đồng", f"mã 12345.{WITHHELD} đồng"),
        # A 9-digit CMND: unbroken, not in threes, or without a currency word after it.
        ("CMND 123456789 đồng", f"CMND {WITHHELD} đồng"),
        ("CMND 123 456 789 (old)", f"CMND {WITHHELD} (old)"),
        ("CMND 123.456.789", f"CMND {WITHHELD}"),
        ("CMND 123.456.789  đồng", f"CMND {WITHHELD}  đồng"),  # two spaces: not one phrase
        ("CMND 123.456.789 đồnghồ", f"CMND {WITHHELD} đồnghồ"),
        # …nor with a word that only starts like one: "đã", "đ/c" (address), a place, a verb.
        ("CMND 123 456 789 đã hết hạn", f"CMND {WITHHELD} đã hết hạn"),
        ("CMND 123 456 789 đ/c 12 Lê Lợi", f"CMND {WITHHELD} đ/c 12 Lê Lợi"),
        ("CMND 123 456 789 đ. Lê Lợi", f"CMND {WITHHELD} đ. Lê Lợi"),
        ("CMND 341 234 567 Đồng Tháp", f"CMND {WITHHELD} Đồng Tháp"),
        ("CMND 123 456 789 đồng ý", f"CMND {WITHHELD} đồng ý"),
        ("CMND 123.456.789 đồng bộ lỗi", f"CMND {WITHHELD} đồng bộ lỗi"),
        (f"CMND 123 456 789 {NFD_DONG} sở hữu", f"CMND {WITHHELD} {NFD_DONG} sở hữu"),
        # …which costs a 9-digit amount whose sentence goes on after "đồng": privacy wins.
        ("100.000.000 đồng cho gia đình", f"{WITHHELD} đồng cho gia đình"),
        # A 10-digit social-insurance code, however it is grouped as people write it.
        ("BHXH 7912345678 đồng", f"BHXH {WITHHELD} đồng"),
        ("BHXH 79 1234 5678 VND", f"BHXH {WITHHELD} VND"),
        ("BHXH 791 234 5678 đồng", f"BHXH {WITHHELD} đồng"),
        # A health-insurance card's digits.
        ("thẻ HS4010120878811 đồng", f"thẻ HS{WITHHELD} đồng"),
    ],
)
def test_a_personal_id_before_a_currency_word_is_withheld(text: str, kept: str) -> None:
    assert withhold_numbers(text) == kept


async def test_an_events_detail_keeps_its_amounts_and_no_personal_id(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "a.db") as store:
        detail = (
            "operator: trợ cấp mai táng 100.000.000 đồng, lệ phí 1.500.000.000 VNĐ "
            "for CCCD 079.198.105.555 đồng, CMND 123 456 789 đồng ý"
        )
        await store.transact(
            lambda tx: append(tx, AuditEvent(action="dossier.corrected", detail=detail))
        )
        [row] = await store.read(lambda tx: tx.all("audit.range", start=0, stop=1))
    assert decode_entry(bytes(row["entry"]))["detail"] == (
        "operator: trợ cấp mai táng 100.000.000 đồng, lệ phí 1.500.000.000 VNĐ "
        f"for CCCD {WITHHELD} đồng, CMND {WITHHELD} đồng ý"
    )
