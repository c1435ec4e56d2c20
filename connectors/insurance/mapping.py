"""BHXH (Vietnam Social Security) wire contract ↔ the gateway's data.

From the spec: the token exchange, the card check ``KQNhanLichSuKCB2024`` (fields and every
``maKetQua``). THE PROJECT'S OWN DESIGN, in the same style, for what has no public contract:
``CapTheTreEm`` (health-insurance card for a child under 6) and ``TroCapMaiTang`` (funeral
allowance), with the extra result codes 206 (invalid data) and 207 (not eligible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec

from connectors.text import nfc, parse_date

__all__ = [
    "CARD_CODES",
    "FUNERAL_DATA_FAULTS",
    "FUNERAL_VERDICTS",
    "WRITE_CODES",
    "CardCode",
    "WireCard",
    "WireFuneral",
    "WireNewbornCard",
    "WireToken",
    "card_check_body",
    "card_check_data",
    "dates_of",
    "funeral_body",
    "newborn_body",
    "wire_birth_date",
]


@dataclass(frozen=True)
class CardCode:
    status: str
    english: str
    vietnamese: str
    transient: bool = False  # the registry failed, not the card: worth asking again

    @property
    def message(self) -> str:
        return f"{self.english} / {self.vietnamese}"


# Every maKetQua of KQNhanLichSuKCB2024 (spec/registries.md §3).
CARD_CODES: dict[str, CardCode] = {
    "000": CardCode("valid", "card valid", "Thẻ còn giá trị sử dụng"),
    "001": CardCode("held-by-defence-fund", "card managed by the Ministry of Defence's fund",
                    "Thẻ do BHXH Bộ Quốc phòng quản lý"),
    "002": CardCode("held-by-public-security-fund",
                    "card managed by the Ministry of Public Security's fund",
                    "Thẻ do BHXH Bộ Công an quản lý"),
    "003": CardCode("new-card-issued", "a new card was issued; the old one has expired",
                    "Thẻ cũ hết giá trị sử dụng, đã được cấp thẻ mới"),
    "004": CardCode("new-card-issued", "a new card was issued; the old one is still valid",
                    "Thẻ cũ còn giá trị sử dụng, đã được cấp thẻ mới"),
    "010": CardCode("expired", "card expired", "Thẻ hết giá trị sử dụng"),
    "050": CardCode("no-card", "no card found", "Không thấy thông tin thẻ"),
    "051": CardCode("wrong-card-number", "wrong card number", "Mã thẻ không đúng"),
    "052": CardCode("wrong-province", "wrong province code in the card number (characters 4-5)",
                    "Mã tỉnh cấp thẻ (ký tự thứ 4, 5) không đúng"),
    "053": CardCode("wrong-benefit-level", "wrong benefit level (character 3)",
                    "Mã quyền lợi (ký tự thứ 3) không đúng"),
    "060": CardCode("wrong-name", "wrong name", "Họ tên không đúng"),
    "061": CardCode("name-first-letter-only", "only the first letter of the name matches",
                    "Họ tên không đúng (chỉ đúng ký tự đầu)"),
    "070": CardCode("wrong-birth-date", "wrong date of birth", "Ngày sinh không đúng"),
    "080": CardCode("wrong-sex", "wrong sex", "Giới tính không đúng"),
    "090": CardCode("wrong-clinic", "wrong registered clinic", "Nơi đăng ký KCB ban đầu không đúng"),
    "100": CardCode("registry-error", "registry data error", "Lỗi dữ liệu", transient=True),
    "101": CardCode("registry-error", "registry server error", "Lỗi máy chủ", transient=True),
    "110": CardCode("revoked", "card revoked", "Thẻ đã thu hồi"),
    "120": CardCode("reduced", "card reduced (reported as ended)", "Thẻ đã báo giảm"),
    "121": CardCode("reduced", "card reduced: moved to another province",
                    "Thẻ đã báo giảm, giảm do chuyển ngoại tỉnh"),
    "122": CardCode("reduced", "card reduced: moved within the province",
                    "Thẻ đã báo giảm, giảm do chuyển nội tỉnh"),
    "123": CardCode("reduced", "card reduced: re-registered with the same employer",
                    "Thẻ đã báo giảm, giảm do tăng lại cùng đơn vị"),
    "124": CardCode("reduced", "card reduced: stopped contributing",
                    "Thẻ đã báo giảm, giảm do ngừng tham gia"),
    "130": CardCode("child-without-card", "child under 6 without a card",
                    "Trẻ em không xuất trình thẻ"),
    "205": CardCode("missing-field", "a required field is missing", "Thiếu trường thông tin bắt buộc"),
}  # fmt: skip

# Result codes of the project's own write services (CapTheTreEm, TroCapMaiTang).
WRITE_CODES: dict[str, CardCode] = {
    "000": CardCode("done", "done", "Thành công"),
    "100": CARD_CODES["100"],
    "101": CARD_CODES["101"],
    "205": CARD_CODES["205"],
    "206": CardCode("invalid-data", "invalid data", "Dữ liệu không hợp lệ"),
    "207": CardCode("not-eligible", "not eligible", "Không đủ điều kiện hưởng"),
}

# Why TroCapMaiTang answered 207 (maLyDo, the project's own design, as the service is): BHXH
# uses the one code both for its verdict on the deceased's eligibility, which no correction of
# the request changes (the flow ends, the allowance refused), and for data of the request it
# cannot pay on (the beneficiary is the deceased), which an operator corrects. Only the reasons
# named here are verdicts; any other 207, or one without a reason, is taken for a correctable one.
FUNERAL_VERDICTS: dict[str, str] = {
    "CHUA_THAM_GIA": "the deceased never contributed to social insurance nor drew a pension",
}
FUNERAL_DATA_FAULTS: dict[str, str] = {
    "NGUOI_HUONG": "the beneficiary cannot be the deceased",
}

_SEX_TO_WIRE = {"male": "Nam", "female": "Nữ"}
_SEX_FROM_WIRE = {"Nam": "male", "Nữ": "female", "1": "male", "2": "female"}


class _Key(msgspec.Struct):
    access_token: str
    id_token: str
    expires_in: float | None = None


class WireToken(msgspec.Struct):
    maKetQua: str
    APIKey: _Key | None = None


class WireCard(msgspec.Struct):
    """A card-check reply; only ``maKetQua`` is always there (the rest is absent on failures)."""

    maKetQua: str
    ghiChu: str | None = None
    maThe: str | None = None
    hoTen: str | None = None
    ngaySinh: str | None = None
    gioiTinh: str | None = None
    diaChi: str | None = None
    maDKBD: str | None = None
    cqBHXH: str | None = None
    gtTheTu: str | None = None
    gtTheDen: str | None = None
    maKV: str | None = None


class WireNewbornCard(msgspec.Struct):
    maKetQua: str
    ghiChu: str | None = None
    maThe: str | None = None
    maSoBHXH: str | None = None
    gtTheTu: str | None = None
    gtTheDen: str | None = None


class WireFuneral(msgspec.Struct):
    maKetQua: str
    ghiChu: str | None = None
    maLyDo: str | None = None  # why a 207: FUNERAL_VERDICTS, FUNERAL_DATA_FAULTS
    maHoSo: str | None = None
    soTien: int | None = None


def _text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} is required")
    return nfc(value)


def _iso(params: Mapping[str, Any], key: str) -> date:
    try:
        return date.fromisoformat(_text(params, key))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def wire_birth_date(value: str) -> str:
    """ISO ``YYYY-MM-DD`` → ``dd/MM/yyyy``; a bare year (``YYYY``) is sent as it is."""
    if len(value) == 4 and value.isdigit():
        return value
    return date.fromisoformat(value).strftime("%d/%m/%Y")


def _from_wire_date(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) == 4 and value.isdigit():
        return value
    return parse_date(value, "dd/MM/yyyy").isoformat()


def card_check_body(
    params: Mapping[str, Any], officer_name: str, officer_id: str
) -> dict[str, str]:
    """``card.check`` params → the KQNhanLichSuKCB2024 body. Raises ValueError on bad params."""
    card = _text(params, "card_number").replace(" ", "").upper()
    try:
        birth = wire_birth_date(_text(params, "birth_date"))
    except ValueError as exc:
        raise ValueError(f"birth_date: {exc}") from None
    return {
        "maThe": card,
        "hoTen": _text(params, "full_name"),
        "ngaySinh": birth,
        "hoTenCb": officer_name,
        "cccdCb": officer_id,
    }


def card_check_data(wire: WireCard) -> dict[str, Any]:
    """The ``card.check`` result. Raises KeyError for an unknown code, ValueError for bad dates."""
    meaning = CARD_CODES[wire.maKetQua]
    return {
        "status": meaning.status,
        "code": wire.maKetQua,
        "message": meaning.message,
        "note": nfc(wire.ghiChu) if wire.ghiChu else None,
        "card_number": wire.maThe or None,
        "full_name": nfc(wire.hoTen) if wire.hoTen else None,
        "birth_date": _from_wire_date(wire.ngaySinh),
        "sex": _SEX_FROM_WIRE.get(nfc(wire.gioiTinh), "undetermined") if wire.gioiTinh else None,
        "address": nfc(wire.diaChi) if wire.diaChi else None,
        "clinic": wire.maDKBD or None,
        "agency": nfc(wire.cqBHXH) if wire.cqBHXH else None,
        "valid_from": _from_wire_date(wire.gtTheTu),
        "valid_to": _from_wire_date(wire.gtTheDen),
        "area": wire.maKV or None,
    }


def newborn_body(params: Mapping[str, Any]) -> dict[str, str]:
    """``card.issue_newborn`` params → the CapTheTreEm body. Raises ValueError on bad params."""
    sex = _text(params, "sex")
    province = _text(params, "province_code")
    if not province.isdigit() or len(province) not in (2, 3):
        raise ValueError(f"province_code must be 2 or 3 digits, not {province!r}")
    return {
        "soDinhDanh": _text(params, "personal_id"),
        "hoTen": _text(params, "full_name"),
        "ngaySinh": _iso(params, "birth_date").strftime("%d/%m/%Y"),
        "gioiTinh": _SEX_TO_WIRE.get(sex, "Không xác định"),
        # The card carries the 2-digit statistics code; personal ids carry "0" + that code.
        "maTinh": province[-2:],
    }


def funeral_body(params: Mapping[str, Any]) -> dict[str, Any]:
    """``funeral.pay`` params → the TroCapMaiTang body. Raises ValueError on bad params."""
    beneficiary = params.get("beneficiary")
    if not isinstance(beneficiary, Mapping):
        raise ValueError("beneficiary is required")
    return {
        "soDinhDanh": _text(params, "personal_id"),
        "hoTen": _text(params, "full_name"),
        "ngayChet": _iso(params, "death_date").strftime("%d/%m/%Y"),
        "soTrichLucKhaiTu": _text(params, "death_record_number"),
        "nguoiHuong": {
            "hoTen": _text(beneficiary, "full_name"),
            "soDinhDanh": _text(beneficiary, "personal_id"),
        },
    }


def dates_of(wire: WireNewbornCard) -> tuple[str | None, str | None]:
    return _from_wire_date(wire.gtTheTu), _from_wire_date(wire.gtTheDen)
