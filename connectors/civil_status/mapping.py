"""Gateway data ↔ the civil-status register's fields (spec §2: ``nks…`` child, ``me…`` /
``cha…`` parents, ``nyc…`` declarant; ``nkt…`` the deceased, our own prefix).

Each ``*_request`` raises :class:`ValueError` naming the field it cannot map; each ``*_result``
raises ValueError for a reply outside the contract.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import date
from typing import Any

from connectors.identifiers import PROVINCES, check_personal_id
from connectors.text import format_date, nfc, parse_date, parse_datetime

__all__ = [
    "DOCUMENT_TYPES",
    "REGISTRATION_TYPES",
    "SEX_CODES",
    "birth_request",
    "birth_result",
    "death_request",
    "death_result",
]

SEX_CODES = {"male": "1", "female": "2", "undetermined": "3"}
REGISTRATION_TYPES = {
    "unknown": "0",
    "on_time": "1",
    "re_registration": "2",
    "abroad": "3",
    "late": "4",
}
RESIDENCE_TYPES = {"none": "0", "permanent": "1", "temporary": "2"}
DOCUMENT_TYPES = {
    "old_id_card": "1",
    "passport": "2",
    "residence_card": "3",
    "citizen_id_card": "4",
    "other": "8",
}
# A birth is registered "on time" within 60 days of it (Law on Civil Status 2014, art. 15), a death
# within 15 days (art. 33); registered after that, it is late (loaiDangKy 4).
ON_TIME_DAYS = 60
DEATH_ON_TIME_DAYS = 15
_DATE = "dd/MM/yyyy"


def _require(params: Mapping[str, Any], name: str, where: str = "") -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise ValueError(f"{where}{name} is required")
    return value


def _section(
    params: Mapping[str, Any], name: str, *, optional: bool = False
) -> Mapping[str, Any] | None:
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object")
    return value


def _date(value: Any, field: str) -> date:
    try:
        return parse_date(str(value))
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _declared(params: Mapping[str, Any], today: date, event: date) -> date:
    """The day the birth or death was declared (``declared_on``: the dossier's filing date),
    else today. Lateness is judged against it, not against the day of the call: a retry after
    midnight must send the request its key was first used for, and the law counts the days to
    the declaration, not to the register's processing."""
    if params.get("declared_on") is None:
        return today
    declared = min(_date(params["declared_on"], "declared_on"), today)  # a client's clock ahead
    if declared < event:
        raise ValueError(f"declared_on {declared} is before the event it declares ({event})")
    return declared


def _pid(value: Any, field: str, birth: date | None = None) -> str:
    try:
        return check_personal_id(str(value), birth_date=birth).value
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _province(params: Mapping[str, Any], default: str) -> str:
    place = params.get("place")
    code = place.get("province_code") if isinstance(place, Mapping) else None
    code = str(code or default)
    if code not in PROVINCES:
        raise ValueError(f"place.province_code: unknown province code {code!r}")
    return code


def _place_name(params: Mapping[str, Any]) -> str | None:
    place = params.get("place")
    if isinstance(place, Mapping):
        return nfc(str(place.get("name") or "")) or None
    return nfc(str(place)) if place else None


# The declarant's relation to the person registered, as the register writes it (Vietnamese);
# the gateway's API names the usual ones in English, and any other text goes as it is.
RELATION_WORDS = {
    "mother": "Mẹ",
    "father": "Cha",
    "child": "Con",
    "spouse": "Vợ/Chồng",
    "sibling": "Anh/Chị/Em",
    "grandparent": "Ông/Bà",
    "grandchild": "Cháu",
    "relative": "Người thân",
    "guardian": "Người giám hộ",
}


def _declarant(d: Mapping[str, Any]) -> dict[str, Any]:
    relation = nfc(str(_require(d, "relation", "declarant.")))
    return {
        "nycHoTen": nfc(str(_require(d, "full_name", "declarant."))),
        "nycQuanHe": RELATION_WORDS.get(relation.strip().lower(), relation),
        "nycLoaiGiayToTuyThan": DOCUMENT_TYPES["citizen_id_card"],
        "nycSoGiayToTuyThan": _pid(
            _require(d, "personal_id", "declarant."), "declarant.personal_id"
        ),
    }


def _parent(prefix: str, p: Mapping[str, Any], label: str) -> dict[str, Any]:
    birth = _date(p["birth_date"], f"{label}.birth_date") if p.get("birth_date") else None
    fields: dict[str, Any] = {
        f"{prefix}HoTen": nfc(str(_require(p, "full_name", f"{label}."))),
        f"{prefix}SoDinhDanh": _pid(
            _require(p, "personal_id", f"{label}."), f"{label}.personal_id", birth
        ),
        f"{prefix}QuocTich": str(p.get("nationality") or "VN"),
        f"{prefix}DanToc": str(p.get("ethnicity") or "01"),
    }
    if birth is not None:
        fields[f"{prefix}NgaySinh"] = format_date(birth, _DATE)
    return fields


def birth_request(
    params: Mapping[str, Any], request_id: str, *, agency_id: str, province_code: str, today: date
) -> dict[str, Any]:
    """``birth.register`` params → ``DangKyKhaiSinh`` fields."""
    child = _section(params, "child")
    assert child is not None
    born = _date(_require(child, "birth_date", "child."), "child.birth_date")
    if born > today:
        raise ValueError(f"child.birth_date {born} is in the future")
    sex = str(_require(child, "sex", "child."))
    if sex not in SEX_CODES:
        raise ValueError(f"child.sex must be one of {sorted(SEX_CODES)}, not {sex!r}")
    late = (_declared(params, today, born) - born).days > ON_TIME_DAYS
    mother = _section(params, "mother")
    father = _section(params, "father", optional=True)
    declarant = _section(params, "declarant")
    assert mother is not None and declarant is not None
    fields: dict[str, Any] = {
        "maYeuCau": request_id,
        "maDonVi": agency_id,
        "maTinhDangKy": _province(params, province_code),
        "noiDangKy": _place_name(params),
        "loaiDangKy": REGISTRATION_TYPES["late" if late else "on_time"],
        "nksHoTen": nfc(str(_require(child, "full_name", "child."))),
        "nksGioiTinh": SEX_CODES[sex],
        "nksNgaySinh": format_date(born, _DATE),
        "nksNoiSinh": nfc(str(_require(child, "birth_place", "child."))),
        "nksDanToc": str(child.get("ethnicity") or "01"),
        "nksQuocTich": str(child.get("nationality") or "VN"),
        **_parent("me", mother, "mother"),
        **(_parent("cha", father, "father") if father else {}),
        **_declarant(declarant),
    }
    return fields


def death_request(
    params: Mapping[str, Any], request_id: str, *, agency_id: str, province_code: str, today: date
) -> dict[str, Any]:
    """``death.register`` params → ``DangKyKhaiTu`` fields."""
    deceased = _section(params, "deceased")
    declarant = _section(params, "declarant")
    assert deceased is not None and declarant is not None
    died = _date(_require(deceased, "death_date", "deceased."), "deceased.death_date")
    if died > today:
        raise ValueError(f"deceased.death_date {died} is in the future")
    late = (_declared(params, today, died) - died).days > DEATH_ON_TIME_DAYS
    return {
        "maYeuCau": request_id,
        "maDonVi": agency_id,
        "maTinhDangKy": _province(params, province_code),
        "noiDangKy": _place_name(params),
        "loaiDangKy": REGISTRATION_TYPES["late" if late else "on_time"],
        "nktHoTen": nfc(str(_require(deceased, "full_name", "deceased."))),
        "nktSoDinhDanh": _pid(
            _require(deceased, "personal_id", "deceased."), "deceased.personal_id"
        ),
        "nktNgayChet": format_date(died, _DATE),
        "nktNoiChet": nfc(str(_require(deceased, "death_place", "deceased."))),
        "nktNguyenNhan": nfc(str(deceased.get("cause") or "")) or None,
        **_declarant(declarant),
    }


def _registered_at(reply: Mapping[str, Any]) -> str:
    return parse_datetime(str(_require(reply, "ngayDangKy"))).isoformat()


def birth_result(
    reply: Mapping[str, Any], asked: Mapping[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """``DangKyKhaiSinhResponse`` to the ``DangKyKhaiSinh`` fields ``asked`` → (gateway data
    without the certificate, certificate PDF)."""
    if str(reply.get("maKetQua")) != "0":
        raise ValueError(f"unexpected maKetQua {reply.get('maKetQua')!r}")
    pid = _child_id(_require(reply, "nksSoDinhDanh"), asked)
    pdf = reply.get("giayKhaiSinh")
    if isinstance(pdf, str):  # zeep leaves base64Binary decoded; be lenient with text
        try:
            pdf = base64.b64decode(pdf, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"giayKhaiSinh is not base64: {exc}") from None
    if not isinstance(pdf, bytes) or not pdf.startswith(b"%PDF-"):
        raise ValueError("giayKhaiSinh is not a PDF")
    data = {
        "personal_id": pid,
        "registration_number": str(_require(reply, "so")),
        "book": reply.get("quyenSo"),
        "page": reply.get("trangSo"),
        "registered_at": _registered_at(reply),
    }
    return data, pdf


def _child_id(value: Any, asked: Mapping[str, Any]) -> str:
    """The personal id the register issued, if it can be the child's: its digits say the
    province that registered the birth, the century and sex, and the year of birth. One that
    cannot was filed as the child's, and the birth, which cannot be undone, marked done: the
    flow then died at the residence, where no correction helps."""
    born = parse_date(str(asked["nksNgaySinh"]), _DATE)
    pid = check_personal_id(str(value), birth_date=born)  # ValueError names the year
    sex = {v: k for k, v in SEX_CODES.items()}[str(asked["nksGioiTinh"])]
    if pid.province_code != asked["maTinhDangKy"]:
        raise ValueError(
            f"nksSoDinhDanh {pid.value} is of province {pid.province_code}; the birth was "
            f"registered in {asked['maTinhDangKy']}"
        )
    if sex != "undetermined" and pid.sex != sex:  # the id's rule knows two sexes
        raise ValueError(f"nksSoDinhDanh {pid.value} is a {pid.sex}'s; the child is {sex}")
    return pid.value


def death_result(reply: Mapping[str, Any]) -> dict[str, Any]:
    """``DangKyKhaiTuResponse`` → ``{death_record_number, registered_at, book, page}``."""
    if str(reply.get("maKetQua")) != "0":
        raise ValueError(f"unexpected maKetQua {reply.get('maKetQua')!r}")
    return {
        "death_record_number": str(_require(reply, "so")),
        "registered_at": _registered_at(reply),
        "book": reply.get("quyenSo"),
        "page": reply.get("trangSo"),
    }
