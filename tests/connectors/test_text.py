import re
import unicodedata
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.text import (
    VIETNAM,
    decode_legacy,
    decode_tcvn3,
    decode_vni,
    fold,
    format_date,
    format_datetime,
    nfc,
    parse_date,
    parse_datetime,
)


def test_nfc_composes_and_trims() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn  Thị Lan ")
    assert nfd != "Nguyễn Thị Lan"
    assert nfc(nfd) == "Nguyễn Thị Lan"


@pytest.mark.parametrize(
    ("text", "tidy"),
    [
        ("Nguyễn Thị Lan", "Nguyễn Thị Lan"),  # already tidy: returned as it is
        (" Lan", "Lan"),
        ("Lan\n", "Lan"),
        ("Thị\tLan", "Thị Lan"),
        ("Thị\u00a0Lan", "Thị Lan"),
        ("Thị   Lan", "Thị Lan"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_nfc_tidies_whitespace(text: str, tidy: str) -> None:
    assert nfc(text) == tidy


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(), max_size=30))
def test_nfc_is_nfc_with_every_unicode_whitespace_run_collapsed(text: str) -> None:
    # The rule as a regex states it (\s is every Unicode whitespace, U+00A0 and U+3000 too),
    # of the text without its invisible format characters (Cf: a zero-width space, a BOM …).
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf")
    expected = re.sub(r"\s+", " ", unicodedata.normalize("NFC", visible)).strip()
    assert nfc(text) == expected


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        ("Nguyễn Thị Lan", "NGUYEN THI LAN"),
        ("Đặng Quốc Bảo", "DANG QUOC BAO"),
        ("đỗ  minh   tuấn", "DO MINH TUAN"),
        (unicodedata.normalize("NFD", "Huỳnh Ngọc Ánh"), "HUYNH NGOC ANH"),
        ("Trương Thị Ưng", "TRUONG THI UNG"),
    ],
)
def test_fold(name: str, folded: str) -> None:
    assert fold(name) == folded


@pytest.mark.parametrize(
    ("legacy", "unicode"),
    [
        # bytes as stored by ABC-era software, and the same bytes read as Latin-1 ("NguyÔn")
        (b"Nguy\xd4n Th\xde Lan", "Nguyễn Thị Lan"),
        ("NguyÔn ThÞ Lan", "Nguyễn Thị Lan"),
        ("§µo ViÖt H\xadng", "Đào Việt Hưng"),
        ("Tr\xadêng §¹i häc", "Trường Đại học"),
        ("NghÖ An", "Nghệ An"),
    ],
)
def test_decode_tcvn3(legacy: bytes | str, unicode: str) -> None:
    assert decode_tcvn3(legacy) == unicode


@pytest.mark.parametrize(
    ("legacy", "unicode"),
    [
        (b"Nguye\xe3n Th\xf2 Lan", "Nguyễn Thị Lan"),
        ("Nguyeãn Thò Lan", "Nguyễn Thị Lan"),
        ("NGUYEÃN THÒ LAN", "NGUYỄN THỊ LAN"),
        ("Ñaø Naüng", "Đà Nẵng"),
        ("Tröông Vieät Hoaøng", "Trương Việt Hoàng"),
        ("Hoà Chí Minh", "Hồ Chí Minh"),
        ("Ngheä An", "Nghệ An"),
        ("Huyønh Ngoïc AÙnh", "Huỳnh Ngọc Ánh"),
        ("Ñaëng", "Đặng"),
    ],
)
def test_decode_vni(legacy: bytes | str, unicode: str) -> None:
    result = decode_vni(legacy)
    assert result == unicode
    assert unicodedata.is_normalized("NFC", result)


def test_decode_legacy_by_name() -> None:
    assert decode_legacy("NguyÔn", "TCVN3") == "Nguyễn"
    assert decode_legacy("Nguyeãn", "VNI-Windows") == "Nguyễn"
    assert decode_legacy("Nguyễn".encode(), "utf-8") == "Nguyễn"
    with pytest.raises(ValueError, match="unknown encoding"):
        decode_legacy(b"x", "no-such-codec")


def test_plain_ascii_is_untouched() -> None:
    assert decode_tcvn3("Lan 123") == decode_vni("Lan 123") == "Lan 123"


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("yyyyMMdd", "19900512"),
        ("dd/MM/yyyy", "12/05/1990"),
        ("yyyy/MM/dd", "1990/05/12"),
        ("yyyy-MM-dd", "1990-05-12"),
    ],
)
def test_dates_round_trip(pattern: str, text: str) -> None:
    assert format_date("1990-05-12", pattern) == text
    assert format_date(date(1990, 5, 12), pattern) == text
    assert parse_date(text, pattern) == date(1990, 5, 12)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("yyyyMMdd", "1990512"),
        ("yyyyMMdd", "19901312"),
        ("dd/MM/yyyy", "1/5/1990"),
        ("yyyy/MM/dd", "1990-05-12"),
        ("yyyyMMdd", ""),
        ("yyyyMMdd", "19900230"),  # the right shape, a day February does not have
        ("yyyy-MM-dd", "1990-05-12T00"),
        ("yyyyMMdd", "١٩٩٠٠٥١٢"),  # Arabic-Indic digits: registries write ASCII
    ],
)
def test_bad_dates_refused(pattern: str, text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text, pattern)


def test_unknown_pattern() -> None:
    with pytest.raises(ValueError, match="unknown date pattern"):
        format_date("1990-05-12", "MM-dd-yy")


def test_compact_datetimes_are_vietnam_time() -> None:
    utc = datetime(2026, 11, 22, 2, 15, 0, tzinfo=UTC)
    assert format_datetime(utc) == "20261122091500"
    assert format_datetime("2026-11-22T09:15:00+07:00") == "20261122091500"
    parsed = parse_datetime("20261122091500")
    assert parsed == utc
    assert parsed.utcoffset() == timedelta(hours=7)
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2026, 11, 22, 9, 15))  # noqa: DTZ001 - the case under test
    with pytest.raises(ValueError):
        parse_datetime("2026112209150")
    with pytest.raises(ValueError):
        parse_datetime("20261122250000")  # hour 25
    assert parse_datetime("20261122", "yyyyMMdd") == datetime(2026, 11, 22, tzinfo=VIETNAM)
