"""Gateway dossier ↔ the portal's ``DongBoHoSoMC`` / ``CapNhatTienDoHoSoMC`` records.

From the spec (field names as on the wire): the ``{service, isUpdating, data: [...]}`` envelope,
the dossier and progress fields, ``TrangThaiHoSo`` codes 1-10 and ``yyyyMMddHHmmss`` dates.

THE PROJECT'S OWN DESIGN (no public reference found): the path ``POST /api/dichvucong``, HTTP
Basic authentication, the reply ``{error_code: "0", message, MaGiaoDich}`` (HTTP 400 with
``error_code "-1"`` and ``errors: [...]`` for a rejected record), ``LoaiDoiTuong`` 1 citizen /
2 organisation and ``HinhThuc`` 0 at the counter / 1 online / 2 by post.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.identifiers import (
    InvalidIdentifier,
    check_agency_id,
    check_dossier_code,
    check_procedure_code,
)
from connectors.text import format_datetime, nfc

__all__ = ["CHANNELS", "STATUS_CODES", "progress_record", "sync_envelope"]

# Gateway status → TrangThaiHoSo (.notes/operations.md; identifiers.md for the code list).
STATUS_CODES: dict[str, str] = {
    "received": "1",
    "accepted": "2",
    "rejected": "3",
    "in_progress": "4",
    "supplement_requested": "5",
    "fees_due": "6",
    "withdrawn": "7",
    # needs_attention: the flow stopped for an operator; the portal's nearest state is "stopped".
    "needs_attention": "8",
    "failed": "8",
    "processed": "9",
    "completed": "10",
}
CHANNELS: dict[str, str] = {"counter": "0", "online": "1", "post": "2"}


def _required(params: Mapping[str, Any], key: str) -> Any:
    value = params.get(key)
    if value in (None, ""):
        raise ValueError(f"{key} is required")
    return value


def _when(value: Any, key: str) -> str:
    if value in (None, ""):
        return ""
    try:
        return format_datetime(str(value))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _status(value: Any) -> str:
    try:
        return STATUS_CODES[str(value)]
    except KeyError:
        raise ValueError(
            f"unknown status {value!r}; expected one of {', '.join(STATUS_CODES)}"
        ) from None


def _checked(check: Any, value: Any, key: str) -> str:
    try:
        result: str = check(str(value))
    except InvalidIdentifier as exc:
        raise ValueError(f"{key}: {exc}") from None
    return result


def _documents(items: Any) -> list[dict[str, Any]]:
    return [dict(item) for item in (items or [])]


def sync_envelope(params: Mapping[str, Any]) -> dict[str, Any]:
    """``dossier.sync`` params → the ``DongBoHoSoMC`` request. Raises ValueError on bad params."""
    code = _checked(check_dossier_code, _required(params, "code"), "code")
    applicant = _required(params, "applicant")
    if not isinstance(applicant, Mapping):
        raise ValueError("applicant must be an object")
    status = str(_required(params, "status"))
    finished = _when(params.get("finished_at"), "finished_at")
    field = params.get("field") or {}
    procedure_name = nfc(str(_required(params, "procedure_name")))
    full_name = nfc(str(_required(applicant, "full_name")))
    organisation = bool(applicant.get("tax_code"))
    record = {
        "MaHoSo": code,
        "MaTTHC": _checked(check_procedure_code, _required(params, "procedure"), "procedure"),
        "TenTTHC": procedure_name,
        "MaLinhVuc": str(field.get("code", "")),
        "TenLinhVuc": nfc(str(field.get("name", ""))),
        "ChuHoSo": full_name,
        "LoaiDoiTuong": "2" if organisation else "1",
        "MaDoiTuong": str(applicant.get("tax_code") or applicant.get("personal_id") or ""),
        "Email": str(applicant.get("email") or ""),
        "SoDienThoai": str(applicant.get("phone") or ""),
        "TrichYeuHoSo": nfc(str(params.get("summary") or f"{procedure_name} - {full_name}")),
        "NgayTiepNhan": _when(_required(params, "received_at"), "received_at"),
        "NgayHenTra": _when(params.get("due_at"), "due_at"),
        "TrangThaiHoSo": _status(status),
        # NgayTra is when the result was handed back: only a completed dossier has one.
        "NgayTra": finished if status == "completed" else "",
        "HinhThuc": CHANNELS.get(str(params.get("channel", "online")), "1"),
        "NgayKetThucXuLy": finished,
        "DonViXuLy": _checked(check_agency_id, _required(params, "agency"), "agency"),
        "TaiLieuNop": _documents(params.get("documents")),
        "DanhSachLePhi": _documents(params.get("fees")),
        "DanhSachHoSoBoSung": _documents(params.get("supplements")),
        "DanhSachGiayToKetQua": _documents(params.get("results")),
    }
    # The first sync of a dossier is the one at acceptance; later syncs update it.
    updating = bool(params.get("updating", status not in ("received", "accepted")))
    return {"service": "DongBoHoSoMC", "isUpdating": updating, "data": [record]}


def progress_record(params: Mapping[str, Any]) -> dict[str, Any]:
    """``dossier.progress`` params → the ``CapNhatTienDoHoSoMC`` request.

    Raises ValueError on bad params."""
    handler = params.get("handler") or {}
    if isinstance(handler, str):
        handler = {"full_name": handler}
    at = _when(_required(params, "at"), "at")
    record = {
        "MaHoSo": _checked(check_dossier_code, _required(params, "code"), "code"),
        "NguoiXuLy": nfc(str(handler.get("full_name") or "Hệ thống liên thông")),
        "ChucDanh": nfc(str(handler.get("title") or "")),
        "ThoiDiemXuLy": at,
        "PhongBanXuLy": nfc(str(handler.get("department") or _required(params, "step"))),
        "NoiDungXuLy": nfc(str(_required(params, "content"))),
        "TrangThai": _status(_required(params, "status")),
        "NgayBatDau": _when(params.get("started_at"), "started_at") or at,
        "NgayKetThucTheoQuyDinh": _when(params.get("due_at"), "due_at"),
    }
    return {"service": "CapNhatTienDoHoSoMC", "data": [record]}
