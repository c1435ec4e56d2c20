"""The business-registration wire contract and its translation to the gateway's record.

THE PROJECT'S OWN DESIGN (no public contract was found; see spec/registries.md §4):

``GET /api/doanhnghiep/{maSoDoanhNghiep}`` with header ``ApiKey: <key>`` →
200 ``{maSoDoanhNghiep, tenDoanhNghiep, tenTiengAnh, tenVietTat, loaiHinh {ma, ten},
tinhTrang {ma, ten}, ngayCap (dd/MM/yyyy), diaChiTruSo {soNhaDuong, maPhuongXa, tenPhuongXa,
maQuanHuyen, tenQuanHuyen, maTinhThanh, tenTinhThanh}, nguoiDaiDien {hoTen, chucDanh,
soGiayToMaHoa}, vonDieuLe (VND, integer), nganhNgheChinh {maNganh (VSIC), tenNganh}}``;
404 ``{maLoi: "KHONG_TIM_THAY", thongBao}``; 400 ``{maLoi: "MA_SO_KHONG_HOP_LE", thongBao}``;
401 ``{maLoi: "XAC_THUC", thongBao}``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from connectors.identifiers import mask_personal_id, province_from_registry
from connectors.text import nfc, parse_date

__all__ = [
    "LEGAL_FORMS",
    "STATUSES",
    "UNKNOWN_STATUS",
    "WireEnterprise",
    "to_record",
]

# tinhTrang.ma → gateway status, and the registry's Vietnamese label for it.
STATUSES: dict[str, tuple[str, str]] = {
    "HOAT_DONG": ("active", "Đang hoạt động"),
    "TAM_NGUNG": ("suspended", "Tạm ngừng kinh doanh có thời hạn"),
    "DANG_GIAI_THE": ("dissolving", "Đang làm thủ tục giải thể"),
    "DA_GIAI_THE": ("dissolved", "Đã giải thể"),
    "PHA_SAN": ("bankrupt", "Đã phá sản"),
}

# The status of an enterprise whose tinhTrang.ma is none of STATUSES': a code the registry added
# after this contract was written. The record still carries the code and the registry's words.
UNKNOWN_STATUS = "unknown"

# loaiHinh.ma → (Vietnamese name, English name): the legal forms of the Law on Enterprises 2020.
LEGAL_FORMS: dict[str, tuple[str, str]] = {
    "TNHH1TV": ("Công ty trách nhiệm hữu hạn một thành viên", "single-member limited liability"),
    "TNHH2TV": (
        "Công ty trách nhiệm hữu hạn hai thành viên trở lên",
        "multi-member limited liability",
    ),
    "CTCP": ("Công ty cổ phần", "joint-stock company"),
    "DNTN": ("Doanh nghiệp tư nhân", "private enterprise"),
    "CTHD": ("Công ty hợp danh", "partnership"),
    "CN": ("Chi nhánh", "branch"),
}


class _Code(msgspec.Struct):
    ma: str
    ten: str


class _Address(msgspec.Struct):
    soNhaDuong: str
    maPhuongXa: str
    tenPhuongXa: str
    maQuanHuyen: str
    tenQuanHuyen: str
    maTinhThanh: str
    tenTinhThanh: str


class _Representative(msgspec.Struct):
    hoTen: str
    chucDanh: str
    soGiayToMaHoa: str


class _Line(msgspec.Struct):
    maNganh: str
    tenNganh: str


class WireEnterprise(msgspec.Struct):
    """One enterprise as the registry sends it (decoding is strict: a missing field is garbage)."""

    maSoDoanhNghiep: str
    tenDoanhNghiep: str
    tenTiengAnh: str
    tenVietTat: str
    loaiHinh: _Code
    tinhTrang: _Code
    ngayCap: str
    diaChiTruSo: _Address
    nguoiDaiDien: _Representative
    vonDieuLe: int
    nganhNgheChinh: _Line


def to_record(wire: WireEnterprise) -> dict[str, Any]:
    """The gateway's enterprise record. Raises ValueError on an empty status code or a bad date.

    A status code outside :data:`STATUSES` is :data:`UNKNOWN_STATUS`, never an error: the
    enterprise is still the registry's answer, and its code is in ``status_code``.
    """
    code = wire.tinhTrang.ma
    if not code.strip():
        raise ValueError("tinhTrang.ma is empty")
    status = STATUSES[code][0] if code in STATUSES else UNKNOWN_STATUS
    address = wire.diaChiTruSo
    return {
        "tax_code": wire.maSoDoanhNghiep,
        "name": nfc(wire.tenDoanhNghiep),
        "name_en": nfc(wire.tenTiengAnh),
        "short_name": nfc(wire.tenVietTat),
        "legal_form": {"code": wire.loaiHinh.ma, "name": nfc(wire.loaiHinh.ten)},
        "status": status,
        "status_code": code,
        "status_label": nfc(wire.tinhTrang.ten),
        "registered_on": parse_date(wire.ngayCap, "dd/MM/yyyy").isoformat(),
        "head_office": {
            "detail": nfc(address.soNhaDuong),
            "ward_code": address.maPhuongXa,
            "ward_name": nfc(address.tenPhuongXa),
            "district_code": address.maQuanHuyen,
            "district_name": nfc(address.tenQuanHuyen),
            # The registry's 2-digit code ("08"); the gateway answers 3 digits ("008"), as
            # its citizen records and personal ids do, or null (none, or no province's).
            "province_code": province_from_registry(address.maTinhThanh),
            "province_name": nfc(address.tenTinhThanh),
        },
        "legal_representative": {
            "full_name": nfc(wire.nguoiDaiDien.hoTen),
            "title": nfc(wire.nguoiDaiDien.chucDanh),
            # Masked here whatever the registry sent: an enterprise lookup's right is not a
            # citizen lookup's, and a full id under this name reads as harmless.
            "personal_id_masked": mask_personal_id(wire.nguoiDaiDien.soGiayToMaHoa),
        },
        "charter_capital": wire.vonDieuLe,
        "main_business_line": {
            "code": wire.nganhNgheChinh.maNganh,
            "name": nfc(wire.nganhNgheChinh.tenNganh),
        },
    }
