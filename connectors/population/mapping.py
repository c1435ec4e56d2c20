"""Gateway data ↔ the population registry's fields (C06 request, QCVN 109:2017 citizen data).

Gateway side: ISO dates, ``"male"/"female"/"undetermined"``, NFC names with diacritics, 3-digit
province codes (as in the personal id). Registry side: ``yyyyMMdd`` dates, ``GioiTinh`` 1/2/3,
names upper case without diacritics in requests, ``{Ho, ChuDem, Ten}`` in citizen data, 2-digit
``MaTinhThanh`` (the 3-digit code without its leading ``0``).

Every ``*_request`` function raises :class:`ValueError` (with the offending field) for parameters
it cannot map; the connector turns that into a ``PermanentError``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from connectors.api import PermanentError
from connectors.identifiers import check_personal_id, province_from_registry
from connectors.text import fold, format_date, nfc, parse_date, parse_datetime

__all__ = [
    "FIELD_NAMES",
    "INTEGRATION_CODES",
    "REGISTRATION_REFUSALS",
    "SEX_CODES",
    "authorization",
    "citizen_from_registry",
    "deregister_request",
    "lookup_request",
    "lookup_result",
    "province_from_registry",
    "province_to_registry",
    "register_request",
    "registration_result",
]

# Integration codes: 037 is the national platform's citizen lookup; the others are ours.
INTEGRATION_CODES = {
    "citizen.lookup": "037",
    "residence.register": "DKTT",
    "residence.deregister": "XDKTT",
}
SEX_CODES = {"male": "1", "female": "2", "undetermined": "3"}
_SEXES = {v: k for k, v in SEX_CODES.items()}
MARITAL_CODES = {"single": "1", "married": "2", "divorced": "3", "widowed": "4"}
# Registry field (in DanhSachSaiLech) → gateway field.
FIELD_NAMES = {
    "SoDinhDanh": "personal_id",
    "HoVaTen": "full_name",
    "NgayThangNamSinh": "birth_date",
}
DEREGISTRATION_REASONS = {"death": "01", "moved_abroad": "02", "other": "99"}


def province_to_registry(code: str) -> str:
    """``"040"`` → ``"40"`` (the registry's 2-digit form). Raises ValueError otherwise."""
    if len(code) == 3 and code.isdigit() and code[0] == "0":
        return code[1:]
    if len(code) == 2 and code.isdigit():
        return code
    raise ValueError(f"province_code {code!r} must be 3 digits starting with 0")


def _require(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise ValueError(f"{name} is required")
    return value


def _header(
    operation: str,
    request_id: str,
    *,
    service_code: str,
    officer_id: str,
    agency_id: str,
    account: str,
) -> dict[str, Any]:
    if not officer_id:
        # The registry asks who asks (the officer's personal id): never sent empty.
        raise ValueError("officer_id (MaCanBo) is required: the officer asking, by personal id")
    header = {
        "MaYeuCau": request_id,
        "MaDVC": service_code,
        "MaTichHop": INTEGRATION_CODES[operation],
        "MaCanBo": officer_id,
        "MaDonVi": agency_id,
    }
    if account:
        header["TaiKhoan"] = account
    return header


def _person(
    params: Mapping[str, Any], *, with_birth: bool = True, year_alone: bool = False
) -> dict[str, Any]:
    """``year_alone``: a ``birth_date`` of the year alone (``YYYY``) is sent as ``Nam``, as
    service 037 takes it for records that hold only the year."""
    pid = str(_require(params, "personal_id"))
    birth, year = None, None
    if with_birth:
        text = str(_require(params, "birth_date"))
        if year_alone and len(text) == 4 and text.isascii() and text.isdigit():
            year = int(text)
        else:
            try:
                birth = parse_date(text)
            except ValueError as exc:
                raise ValueError(f"birth_date: {exc}") from None
    try:
        check_personal_id(pid, birth_date=birth, birth_year=year)
    except ValueError as exc:
        raise ValueError(f"personal_id: {exc}") from None
    fields: dict[str, Any] = {
        "SoDinhDanh": pid,
        "HoVaTen": fold(str(_require(params, "full_name"))),
    }
    if birth is not None:
        fields["NgayThangNamSinh"] = {"NgayThangNam": format_date(birth, "yyyyMMdd")}
    elif year is not None:
        fields["NgayThangNamSinh"] = {"Nam": str(year)}
    return fields


def lookup_request(params: Mapping[str, Any], request_id: str, **header: str) -> dict[str, Any]:
    """``citizen.lookup`` params → ``TraCuuThongTinCongDan`` fields (``birth_date`` a date, or a
    year alone)."""
    return {**_header("citizen.lookup", request_id, **header), **_person(params, year_alone=True)}


def register_request(params: Mapping[str, Any], request_id: str, **header: str) -> dict[str, Any]:
    """``residence.register`` params → ``DangKyThuongTru`` fields."""
    address = _require(params, "address")
    if not isinstance(address, Mapping):
        raise ValueError("address must be an object")
    fields = {
        **_header("residence.register", request_id, **header),
        **_person(params),
        "DiaChiThuongTru": {
            "MaTinhThanh": province_to_registry(str(_require(address, "province_code"))),
            "MaQuanHuyen": str(_require(address, "district_code")),
            "MaPhuongXa": str(_require(address, "ward_code")),
            "ChiTiet": nfc(str(address.get("detail") or "")) or None,
        },
    }
    if params.get("household_head_id"):
        fields["SoDinhDanhChuHo"] = str(params["household_head_id"])
        fields["QuanHeChuHo"] = str(params.get("relation") or "CH03")
    # The name as registered, diacritics and all (HoVaTen has none): the registry's record of a
    # newborn it does not hold yet is made from it (the WSDL's project element).
    fields["HoVaTenKhaiSinh"] = nfc(str(params["full_name"]))
    return fields


def deregister_request(params: Mapping[str, Any], request_id: str, **header: str) -> dict[str, Any]:
    """``residence.deregister`` params → ``XoaDangKyThuongTru`` fields."""
    reason = str(params.get("reason") or "death")
    if reason not in DEREGISTRATION_REASONS:
        raise ValueError(f"reason must be one of {sorted(DEREGISTRATION_REASONS)}, not {reason!r}")
    fields = {
        **_header("residence.deregister", request_id, **header),
        **_person(params, with_birth=False),
        "LyDoXoa": DEREGISTRATION_REASONS[reason],
    }
    if reason == "death":
        fields["SoTrichLucKhaiTu"] = str(_require(params, "death_record_number"))
    return fields


def _name(value: Mapping[str, Any] | None) -> str | None:
    if not value:
        return None
    parts = (value.get("Ho"), value.get("ChuDem"), value.get("Ten"))
    return nfc(" ".join(p for p in parts if p)) or None


def _address(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    return {
        "province_code": province_from_registry(value.get("MaTinhThanh") or ""),
        "district_code": value.get("MaQuanHuyen"),
        "ward_code": value.get("MaPhuongXa"),
        "detail": nfc(value.get("ChiTiet") or ""),
    }


def _birth(value: Mapping[str, Any] | None) -> str | None:
    if not value:
        return None
    if value.get("NgayThangNam"):
        return parse_date(value["NgayThangNam"], "yyyyMMdd").isoformat()
    return str(value["Nam"]) if value.get("Nam") else None


def _relative(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    return {"full_name": _name(value.get("HoVaTen")), "personal_id": value.get("SoDinhDanh")}


def citizen_from_registry(cd: Mapping[str, Any]) -> dict[str, Any]:
    """One ``CongDan`` (as zeep's plain dicts) → the gateway's ``citizen`` object.

    Raises ValueError on a date the registry should not have sent.
    """
    return {
        "personal_id": cd.get("SoDinhDanh"),
        "old_id": cd.get("SoCMND"),
        "full_name": _name(cd.get("HoVaTen")),
        "sex": _SEXES.get(cd.get("GioiTinh") or "", "undetermined"),
        "birth_date": _birth(cd.get("NgayThangNamSinh")),
        "ethnicity": cd.get("DanToc"),
        "nationality": cd.get("QuocTich"),
        "birth_registration_place": _address(cd.get("NoiDangKyKhaiSinh")),
        "permanent_address": _address(cd.get("ThuongTru")),
        "current_address": _address(cd.get("NoiOHienTai")),
        "father": _relative(cd.get("Cha")),
        "mother": _relative(cd.get("Me")),
        "household_book": cd.get("SoSoHoKhau"),
        # Set when the registry holds the citizen dead (the WSDL's project element).
        "death_record_number": cd.get("SoTrichLucKhaiTu"),
    }


def _mismatched(reply: Mapping[str, Any]) -> list[str]:
    """The gateway's names of the fields a reply's DanhSachSaiLech lists."""
    names = (reply.get("DanhSachSaiLech") or {}).get("TruongSaiLech") or []
    return [FIELD_NAMES.get(n, n) for n in names]


def lookup_result(reply: Mapping[str, Any], asked: str) -> dict[str, Any]:
    """``TraCuuThongTinCongDanResponse`` to the citizen ``asked`` (a personal id) →
    ``{match, mismatches, citizen}``.

    Raises ValueError for a result code outside the contract, or a record about anyone but the
    citizen asked (the connector treats both as a malformed reply).
    """
    code = str(reply.get("MaKetQua"))
    collection = reply.get("CongdanCollection") or {}
    people = collection.get("CongDan") or []
    for person in people:
        # "Matches" is said of the record in the answer: one about another citizen would verify
        # someone nobody asked about (the flows register births and deaths on this answer).
        if person.get("SoDinhDanh") != asked:
            raise ValueError(f"malformed reply: a record about another citizen (MaKetQua {code})")
    if code == "0":
        if not people:
            raise ValueError("MaKetQua 0 without CongDan")
        return {"match": True, "mismatches": [], "citizen": citizen_from_registry(people[0])}
    if code == "1":
        return {"match": False, "mismatches": _mismatched(reply), "citizen": None}
    if code == "2":
        return {"match": False, "mismatches": ["personal_id"], "citizen": None}
    raise ValueError(f"unknown MaKetQua {code!r}")


# MaKetQua of a registration or de-registration that the registry refused (the WSDL's result codes):
# the same request will be refused again, so it is permanent, and the registry's MoTa says why.
REGISTRATION_REFUSALS = {
    "1": "data does not match the registry",
    "2": "no citizen with this SoDinhDanh",
}


def registration_result(reply: Mapping[str, Any], date_field: str) -> dict[str, Any]:
    """``DangKyThuongTruResponse`` / ``XoaDangKyThuongTruResponse`` → ``{registration_number,
    registered_at, household_book?}``.

    Raises:
        PermanentError: MaKetQua 1 or 2 (``code`` = MaKetQua, the message carries the fields
            DanhSachSaiLech names, as the gateway calls them, and MoTa).
        ValueError: any other code, or a 0 without its number (a reply outside the contract).
    """
    code = str(reply.get("MaKetQua"))
    if code in REGISTRATION_REFUSALS:
        fields = ", ".join(_mismatched(reply))
        what = REGISTRATION_REFUSALS[code] + (f": {fields}" if fields else "")
        why = str(reply.get("MoTa") or "").strip()
        raise PermanentError(
            "population",
            f"refused (MaKetQua {code}, {what})" + (f": {why}" if why else ""),
            code=code,
        )
    number = reply.get("SoHoSo")
    if code != "0" or not number:
        raise ValueError(
            f"registration reply without a number (MaKetQua {reply.get('MaKetQua')!r})"
        )
    when = reply.get(date_field)
    data: dict[str, Any] = {
        "registration_number": number,
        "registered_at": parse_datetime(when).isoformat() if when else None,
    }
    if reply.get("SoSoHoKhau"):
        data["household_book"] = reply["SoSoHoKhau"]
    return data


def authorization(url: str, username: str, timestamp: str, secret: str) -> str:
    """``Basic base64(user:sha256hex(url + user + timestamp + secret))``, the platform's scheme."""
    digest = hashlib.sha256(f"{url}{username}{timestamp}{secret}".encode()).hexdigest()
    return "Basic " + base64.b64encode(f"{username}:{digest}".encode()).decode("ascii")
