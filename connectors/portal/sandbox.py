"""Sandbox of the national public-service portal (envelope from the spec; reply format and path
are the project's own design, see mapping.py).

Validates every field of ``DongBoHoSoMC`` and ``CapNhatTienDoHoSoMC`` records, keeps the latest
state of each dossier plus its progress history, and shows them at
``GET /_sandbox/dossiers/{MaHoSo}`` → ``{dossier, progress: [...], syncs}`` (404 if unknown).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from connectors.api import Endpoint
from connectors.faults import FaultPlan
from connectors.identifiers import (
    InvalidIdentifier,
    check_agency_id,
    check_dossier_code,
    check_procedure_code,
)
from connectors.sandboxes import Outcome, idempotent_write, new_sandbox_app
from connectors.text import parse_datetime

__all__ = ["PASSWORD", "USERNAME", "create_app", "endpoint"]

USERNAME = "lienthong"
PASSWORD = "sandbox-dvcqg"

_DOSSIER_TEXT = ("MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "ChuHoSo",
                 "LoaiDoiTuong", "MaDoiTuong", "Email", "SoDienThoai", "TrichYeuHoSo",
                 "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo", "NgayTra", "HinhThuc",
                 "NgayKetThucXuLy", "DonViXuLy")  # fmt: skip
_DOSSIER_LISTS = ("TaiLieuNop", "DanhSachLePhi", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua")
_DOSSIER_NONEMPTY = ("MaHoSo", "MaTTHC", "TenTTHC", "ChuHoSo", "LoaiDoiTuong", "NgayTiepNhan",
                     "TrangThaiHoSo", "HinhThuc", "DonViXuLy")  # fmt: skip
_DOSSIER_DATES = ("NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy")
_PROGRESS_TEXT = ("MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy",
                  "NoiDungXuLy", "TrangThai", "NgayBatDau", "NgayKetThucTheoQuyDinh")  # fmt: skip
_PROGRESS_NONEMPTY = ("MaHoSo", "NguoiXuLy", "ThoiDiemXuLy", "NoiDungXuLy", "TrangThai")
_PROGRESS_DATES = ("ThoiDiemXuLy", "NgayBatDau", "NgayKetThucTheoQuyDinh")
_STATUSES = {str(n) for n in range(1, 11)}
_OPERATIONS = {"DongBoHoSoMC": "dossier.sync", "CapNhatTienDoHoSoMC": "dossier.progress"}


def _check_fields(
    record: Any, text: tuple[str, ...], nonempty: tuple[str, ...], dates: tuple[str, ...]
) -> list[str]:
    if not isinstance(record, dict):
        return ["a record must be an object"]
    errors = [f"{k}: thiếu trường / missing" for k in text if k not in record]
    errors += [f"{k}: phải là chuỗi / must be a string" for k in text
               if k in record and not isinstance(record[k], str)]  # fmt: skip
    errors += [f"{k}: không được để trống / must not be empty" for k in nonempty
               if isinstance(record.get(k), str) and not record[k]]  # fmt: skip
    for key in dates:
        value = record.get(key)
        if isinstance(value, str) and value:
            try:
                parse_datetime(value)
            except ValueError:
                errors.append(f"{key}: ngày không hợp lệ (yyyyMMddHHmmss) / bad date {value!r}")
    return errors


def _check_code(check: Any, record: dict[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        return []
    try:
        check(value)
    except InvalidIdentifier as exc:
        return [f"{key}: {exc.reason}"]
    return []


def _dossier_errors(record: Any) -> list[str]:
    errors = _check_fields(record, _DOSSIER_TEXT, _DOSSIER_NONEMPTY, _DOSSIER_DATES)
    if not isinstance(record, dict):
        return errors
    errors += [f"{k}: phải là danh sách / must be a list" for k in _DOSSIER_LISTS
               if not isinstance(record.get(k), list)]  # fmt: skip
    errors += _check_code(check_dossier_code, record, "MaHoSo")
    errors += _check_code(check_procedure_code, record, "MaTTHC")
    errors += _check_code(check_agency_id, record, "DonViXuLy")
    if record.get("TrangThaiHoSo") not in _STATUSES:
        errors.append(
            f"TrangThaiHoSo: mã không hợp lệ / unknown status {record.get('TrangThaiHoSo')!r}"
        )
    if record.get("LoaiDoiTuong") not in ("1", "2"):
        errors.append("LoaiDoiTuong: phải là 1 hoặc 2 / must be 1 or 2")
    if record.get("HinhThuc") not in ("0", "1", "2"):
        errors.append("HinhThuc: phải là 0, 1 hoặc 2 / must be 0, 1 or 2")
    if record.get("TrangThaiHoSo") == "10" and not record.get("NgayTra"):
        errors.append("NgayTra: bắt buộc khi đã trả kết quả / required when status is 10")
    return errors


def _progress_errors(record: Any, dossiers: dict[str, Any]) -> list[str]:
    errors = _check_fields(record, _PROGRESS_TEXT, _PROGRESS_NONEMPTY, _PROGRESS_DATES)
    if not isinstance(record, dict):
        return errors
    if record.get("TrangThai") not in _STATUSES:
        errors.append(f"TrangThai: mã không hợp lệ / unknown status {record.get('TrangThai')!r}")
    if isinstance(record.get("MaHoSo"), str) and record["MaHoSo"] not in dossiers:
        errors.append(f"MaHoSo: hồ sơ chưa được đồng bộ / dossier {record['MaHoSo']} not synced")
    return errors


def _authorised(header: str | None, username: str, password: str) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return (user, secret) == (username, password)


def _rejected(errors: list[str]) -> tuple[int, Any, Outcome]:
    return 400, {"error_code": "-1", "message": "Dữ liệu không hợp lệ / invalid data",
                 "errors": errors}, "rejected"  # fmt: skip


def create_app(
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    username: str = USERNAME,
    password: str = PASSWORD,
) -> web.Application:
    """The portal sandbox application. ``seed`` only names transactions (no seeded data)."""
    dossiers: dict[str, dict[str, Any]] = {}
    counter = iter(range(1, 1 << 62))

    def transaction() -> str:
        return f"GD{seed:03d}{next(counter):09d}"

    def perform(envelope: Any) -> tuple[int, Any, Outcome]:
        if not isinstance(envelope, dict):
            return _rejected(["the body must be a JSON object"])
        service, data = envelope.get("service"), envelope.get("data")
        if not isinstance(data, list) or not data:
            return _rejected(["data: phải là danh sách không rỗng / must be a non-empty list"])
        if service == "DongBoHoSoMC":
            if not isinstance(envelope.get("isUpdating"), bool):
                return _rejected(["isUpdating: phải là true/false / must be a boolean"])
            errors = [f"data[{i}].{e}" for i, r in enumerate(data) for e in _dossier_errors(r)]
            if errors:
                return _rejected(errors)
            for record in data:
                state = dossiers.setdefault(record["MaHoSo"], {"progress": [], "syncs": 0})
                state["dossier"] = record
                state["syncs"] += 1
        elif service == "CapNhatTienDoHoSoMC":
            errors = [
                f"data[{i}].{e}" for i, r in enumerate(data) for e in _progress_errors(r, dossiers)
            ]
            if errors:
                return _rejected(errors)
            for record in data:
                dossiers[record["MaHoSo"]]["progress"].append(record)
        else:
            return _rejected([f"service: không hỗ trợ / unknown service {service!r}"])
        payload = {"error_code": "0", "message": "Thành công", "MaGiaoDich": transaction()}
        return 200, payload, "written"

    async def receive(request: web.Request) -> web.Response:
        if not _authorised(request.headers.get("Authorization"), username, password):
            return web.json_response(
                {"error_code": "401", "message": "Sai thông tin xác thực / wrong credentials"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="dvcqg"'},
            )
        body = await request.read()
        try:
            envelope = json.loads(body)
        except ValueError:
            return web.json_response(_rejected(["the body is not JSON"])[1], status=400)
        service = envelope.get("service") if isinstance(envelope, dict) else None
        # Stats count writes by the gateway's operation names, the same in every sandbox.
        operation = _OPERATIONS.get(str(service), str(service))
        return await idempotent_write(request, operation, body, lambda: perform(envelope))

    async def show(request: web.Request) -> web.Response:
        state = dossiers.get(request.match_info["code"])
        if state is None:
            return web.json_response({"error": "unknown dossier"}, status=404)
        return web.json_response(state)

    return new_sandbox_app(
        faults=faults,
        routes=[
            web.post("/api/dichvucong", receive),
            web.get("/_sandbox/dossiers/{code}", show),
        ],
    )


def endpoint(url: str) -> Endpoint:
    """An Endpoint for this sandbox at ``url`` with its built-in credentials."""
    return Endpoint(url=url, username=USERNAME, password=PASSWORD)
