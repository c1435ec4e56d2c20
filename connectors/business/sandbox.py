"""Sandbox of the National Business Registration (the project's own contract, see mapping.py).

Holds ``count`` seeded enterprises (default 3000) in every legal form and status, some with
branches (``NNNNNNNNNN-NNN``). :func:`generate_enterprises` is public so tests can know what the
sandbox holds without asking it. Administrative codes of the head office are synthetic beyond
the province (the district and ward tables are not part of this project).

Admin routes: ``GET /_sandbox/enterprises?status=HOAT_DONG&limit=N`` lists tax codes.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from connectors.api import Endpoint
from connectors.business.mapping import LEGAL_FORMS, STATUSES
from connectors.faults import FaultPlan
from connectors.identifiers import PROVINCES, InvalidIdentifier, check_tax_code, make_tax_code
from connectors.sandboxes import new_sandbox_app
from connectors.text import parse_date

__all__ = ["API_KEY", "create_app", "endpoint", "generate_enterprises"]

API_KEY = "sandbox-dkkd-key"

_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
             "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý")  # fmt: skip
_MIDDLE = ("Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang", "Thu", "Xuân")
_GIVEN = ("An", "Bình", "Cường", "Dũng", "Hà", "Hải", "Hạnh", "Hùng", "Lan", "Linh", "Long",
          "Mai", "Nam", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Yến")  # fmt: skip
# Brand words: Vietnamese, their diacritic-free English rendering, and a short form.
_BRANDS = (("Hòa Phát", "Hoa Phat"), ("Sao Mai", "Sao Mai"), ("Trường Sơn", "Truong Son"),
           ("Phú Gia", "Phu Gia"), ("Thành Công", "Thanh Cong"), ("Hưng Thịnh", "Hung Thinh"),
           ("Việt Tiến", "Viet Tien"), ("Đại Dương", "Dai Duong"), ("Bình Minh", "Binh Minh"),
           ("Ánh Dương", "Anh Duong"), ("Hồng Hà", "Hong Ha"), ("Tân Phát", "Tan Phat"),
           ("Kim Long", "Kim Long"), ("Phương Nam", "Phuong Nam"), ("Đông Á", "Dong A"),
           ("Nam Việt", "Nam Viet"), ("Sông Hồng", "Song Hong"),
           ("Lạc Hồng", "Lac Hong"))  # fmt: skip
# VSIC 2018 lines: (code, Vietnamese name, English trade word for the company name).
_LINES = (
    ("4690", "Bán buôn tổng hợp", "Trading", "Thương mại"),
    ("6201", "Lập trình máy vi tính", "Software", "Công nghệ phần mềm"),
    ("4933", "Vận tải hàng hóa bằng đường bộ", "Logistics", "Vận tải"),
    ("1410", "May trang phục (trừ trang phục từ da lông thú)", "Garment", "May mặc"),
    ("5610", "Nhà hàng và các dịch vụ ăn uống phục vụ lưu động",
     "Food Services", "Dịch vụ ăn uống"),
    ("6810",
     "Kinh doanh bất động sản, quyền sử dụng đất thuộc chủ sở hữu, chủ sử dụng hoặc đi thuê",
     "Real Estate", "Bất động sản"),
    ("0118", "Trồng rau, đậu các loại và trồng hoa", "Agriculture", "Nông nghiệp"),
    ("8559", "Giáo dục khác chưa được phân vào đâu", "Education", "Giáo dục"),
    ("4620", "Bán buôn nông, lâm sản nguyên liệu (trừ gỗ, tre, nứa) và động vật sống",
     "Agricultural Trading", "Nông sản"),
)  # fmt: skip
_FORM_WORDS = {
    "TNHH1TV": ("CÔNG TY TNHH MỘT THÀNH VIÊN", "ONE MEMBER COMPANY LIMITED", "CÔNG TY TNHH"),
    "TNHH2TV": ("CÔNG TY TNHH", "COMPANY LIMITED", "CÔNG TY TNHH"),
    "CTCP": ("CÔNG TY CỔ PHẦN", "JOINT STOCK COMPANY", "CTCP"),
    "DNTN": ("DOANH NGHIỆP TƯ NHÂN", "PRIVATE ENTERPRISE", "DNTN"),
    "CTHD": ("CÔNG TY HỢP DANH", "PARTNERSHIP", "CTHD"),
}
_TITLES = {"CTCP": "Tổng giám đốc", "DNTN": "Chủ doanh nghiệp", "CTHD": "Thành viên hợp danh"}
# Most enterprises are active; the rest in every other status so each appears in a few thousand.
_STATUS_WEIGHTS = {"HOAT_DONG": 80, "TAM_NGUNG": 6, "DANG_GIAI_THE": 5, "DA_GIAI_THE": 6,
                   "PHA_SAN": 3}  # fmt: skip
_STREETS = ("Lê Lợi", "Trần Hưng Đạo", "Nguyễn Huệ", "Hai Bà Trưng", "Lý Thường Kiệt",
            "Quang Trung", "Điện Biên Phủ", "Phan Đình Phùng")  # fmt: skip


def _mask(personal_id: str) -> str:
    # The registry shows only the province prefix and the last three digits of a person's id.
    return personal_id[:3] + "*" * 6 + personal_id[-3:]


def _enterprise(rng: random.Random, tax_code: str) -> dict[str, Any]:
    form = rng.choice(tuple(_FORM_WORDS))
    status = rng.choices(tuple(_STATUS_WEIGHTS), weights=tuple(_STATUS_WEIGHTS.values()))[0]
    brand_vi, brand_en = rng.choice(_BRANDS)
    code, line_name, trade_en, trade_vi = rng.choice(_LINES)
    vi_form, en_form, short_form = _FORM_WORDS[form]
    province = rng.choice(tuple(PROVINCES))
    district = f"{rng.randrange(1, 999):03d}"
    ward = f"{rng.randrange(1, 32000):05d}"
    rep_id = f"{rng.choice(tuple(PROVINCES))}{rng.choice('0123')}{rng.randrange(60, 100):02d}"
    rep_id += f"{rng.randrange(1_000_000):06d}"
    registered = date(1995, 1, 1) + timedelta(days=rng.randrange(30 * 365))
    return {
        "maSoDoanhNghiep": tax_code,
        "tenDoanhNghiep": f"{vi_form} {trade_vi.upper()} {brand_vi.upper()}",
        "tenTiengAnh": f"{brand_en.upper()} {trade_en.upper()} {en_form}",
        "tenVietTat": f"{short_form} {brand_en.upper()}",
        "loaiHinh": {"ma": form, "ten": LEGAL_FORMS[form][0]},
        "tinhTrang": {"ma": status, "ten": STATUSES[status][1]},
        "ngayCap": registered.strftime("%d/%m/%Y"),
        "diaChiTruSo": {
            "soNhaDuong": f"Số {rng.randrange(1, 400)} đường {rng.choice(_STREETS)}",
            "maPhuongXa": ward,
            "tenPhuongXa": f"Phường {int(ward) % 30 + 1}",
            "maQuanHuyen": district,
            "tenQuanHuyen": f"Quận {int(district) % 12 + 1}",
            "maTinhThanh": province[1:],  # the 2-digit statistics code
            "tenTinhThanh": PROVINCES[province],
        },
        "nguoiDaiDien": {
            "hoTen": f"{rng.choice(_SURNAMES)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}",
            "chucDanh": _TITLES.get(form, "Giám đốc"),
            "soGiayToMaHoa": _mask(rep_id),
        },
        "vonDieuLe": rng.randrange(1, 2000) * 100_000_000,
        "nganhNgheChinh": {"maNganh": code, "tenNganh": line_name},
    }


def generate_enterprises(seed: int = 0, count: int = 3000) -> dict[str, dict[str, Any]]:
    """The sandbox's enterprises for ``seed``: tax code → wire record. Deterministic."""
    rng = random.Random(f"business:{seed}")
    found: dict[str, dict[str, Any]] = {}
    while len(found) < count:
        tax_code = make_tax_code(f"0{rng.randrange(1, 9)}{rng.randrange(10_000_000):07d}")
        if tax_code is None or tax_code in found:
            continue
        try:
            check_tax_code(tax_code)
        except InvalidIdentifier:
            continue
        found[tax_code] = parent = _enterprise(rng, tax_code)
        if rng.random() < 0.05:
            # A branch: the parent's code with a 3-digit suffix, the parent's names prefixed.
            branch = f"{tax_code}-{rng.randrange(1, 20):03d}"
            record = _enterprise(rng, branch)
            record["tenDoanhNghiep"] = f"CHI NHÁNH {parent['tenDoanhNghiep']}"
            record["tenTiengAnh"] = f"BRANCH OF {parent['tenTiengAnh']}"
            record["tenVietTat"] = parent["tenVietTat"]
            record["loaiHinh"] = {"ma": "CN", "ten": LEGAL_FORMS["CN"][0]}
            # A branch lives within its enterprise: opened on or after it, and not active when
            # the enterprise is not (suspended, dissolving, dissolved or bankrupt with it).
            if parent["tinhTrang"]["ma"] != "HOAT_DONG":
                record["tinhTrang"] = dict(parent["tinhTrang"])
            if parse_date(record["ngayCap"], "dd/MM/yyyy") < parse_date(
                parent["ngayCap"], "dd/MM/yyyy"
            ):
                record["ngayCap"] = parent["ngayCap"]
            found[branch] = record
    return found


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"maLoi": code, "thongBao": message}, status=status)


def create_app(
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    api_key: str = API_KEY,
    count: int = 3000,
) -> web.Application:
    """The business-registration sandbox application."""
    enterprises = generate_enterprises(seed, count)

    async def lookup(request: web.Request) -> web.Response:
        if request.headers.get("ApiKey") != api_key:
            return _error(401, "XAC_THUC", "Sai khóa truy cập (ApiKey) / wrong API key")
        tax_code = request.match_info["maSoDoanhNghiep"]
        try:
            check_tax_code(tax_code)
        except InvalidIdentifier as exc:
            return _error(400, "MA_SO_KHONG_HOP_LE", f"Mã số không hợp lệ / {exc.reason}")
        record = enterprises.get(tax_code)
        if record is None:
            return _error(404, "KHONG_TIM_THAY", "Không tìm thấy doanh nghiệp / not found")
        return web.json_response(record)

    async def listing(request: web.Request) -> web.Response:
        status = request.query.get("status")
        limit_text = request.query.get("limit", "100")
        if not limit_text.isascii() or not limit_text.isdigit():
            return _error(400, "THAM_SO_KHONG_HOP_LE", f"limit must be a count, not {limit_text!r}")
        limit = int(limit_text)
        codes = [c for c, r in enterprises.items() if status in (None, r["tinhTrang"]["ma"])]
        return web.json_response({"count": len(codes), "codes": codes[:limit]})

    return new_sandbox_app(
        faults=faults,
        routes=[
            web.get("/api/doanhnghiep/{maSoDoanhNghiep}", lookup),
            web.get("/_sandbox/enterprises", listing),
        ],
    )


def endpoint(url: str) -> Endpoint:
    """An Endpoint for this sandbox at ``url`` with its built-in API key."""
    return Endpoint(url=url, api_key=API_KEY)
