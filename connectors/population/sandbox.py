"""An emulator of the population registry: the same SOAP contract (schemas/wsdl/population.wsdl),
citizens from :mod:`connectors.testdata`, the platform's header authentication, idempotent writes
and fault injection.

Routes: ``POST /soap`` (also ``/``) the service; ``GET /soap?wsdl`` the WSDL with this sandbox's
address; ``GET /_sandbox/stats``; ``GET|PUT /_sandbox/faults``; ``GET /_sandbox/citizens/{i}``
(a citizen of the test data, as the gateway would see it — for demos and tests).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from lxml import etree

import schemas
from connectors.api import Endpoint
from connectors.faults import FAULTS_KEY, FaultPlan, FaultState, fault_middleware, fault_routes
from connectors.identifiers import PROVINCES, InvalidIdentifier, check_personal_id
from connectors.population import mapping
from connectors.sandboxes import counting
from connectors.soap import (
    SandboxLedger,
    SoapFault,
    child_text,
    envelope_bytes,
    fault_bytes,
    fingerprint,
    parse_request,
)
from connectors.testdata import WELL_KNOWN, Address, Citizen, Parent, Population
from connectors.text import VIETNAM, fold, format_datetime, nfc, parse_date

__all__ = [
    "API_KEY",
    "CLIENT_ID",
    "REGISTRY_KEY",
    "SECRET",
    "SOAP_PATH",
    "USERNAME",
    "PopulationRegistry",
    "create_app",
    "sandbox_endpoint",
]

BCA = "http://dancuquocgia.bca"
DC = "http://www.mic.gov.vn/dancu/1.0"
SOAP_PATH = "/soap"
USERNAME, SECRET, API_KEY, CLIENT_ID = (
    "lienthong",
    "sandbox-secret",
    "sandbox-api-key",
    "VN:GOV:000.00.00.H41:lienthong",
)
_WSDL_LOCATION = "http://localhost/soap"


def sandbox_endpoint(base_url: str, *, timeout: float = 10.0) -> Endpoint:
    """An :class:`Endpoint` with the sandbox's default credentials, for ``base_url``
    (``http://127.0.0.1:8081``)."""
    return Endpoint(
        url=base_url.rstrip("/") + SOAP_PATH,
        username=USERNAME,
        secret=SECRET,
        api_key=API_KEY,
        client_id=CLIENT_ID,
        timeout=timeout,
    )


@dataclass
class _Record:
    """A citizen as the registry holds it: the test data plus what writes changed."""

    pid: str
    full_name: str
    birth: str  # yyyyMMdd
    citizen: Citizen | None  # None for people first seen in a registration (newborns)
    sex: str = "undetermined"
    relatives: dict[str, Parent] = field(default_factory=dict)  # by tag: Cha, Me, VoChong
    permanent: Address | None = None
    household_book: str | None = None
    household_head: str | None = None
    relation: str | None = None
    deregistered: str | None = None  # the de-registration number
    deceased: str | None = None  # the death record it was de-registered for (SoTrichLucKhaiTu)
    extra: dict[str, Any] = field(default_factory=dict)


class PopulationRegistry:
    """The sandbox's state: citizens by personal id, the idempotency ledger, the counters."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size
        self.people: dict[str, _Record] = {}
        self.ledger = SandboxLedger()
        self._numbers = itertools.count(1)

    def load(self) -> None:
        """Generate the citizens (CPU work: called in a thread at start-up)."""
        for c in Population(self.seed).citizens(self.size):
            self.people[c.personal_id] = _Record(
                pid=c.personal_id,
                full_name=c.full_name,
                birth=c.birth_date.strftime("%Y%m%d"),
                citizen=c,
                sex=c.sex,
                relatives={
                    tag: p
                    for tag, p in (("Cha", c.father), ("Me", c.mother), ("VoChong", c.spouse))
                    if p is not None
                },
                permanent=c.permanent_address,
                household_book=c.household_book,
                household_head=c.household_head_id,
                relation=c.relation_to_head,
            )

    def number(self, prefix: str, province: str) -> str:
        return f"{prefix}.{province}.{datetime.now(VIETNAM).year}.{next(self._numbers):06d}"


REGISTRY_KEY = web.AppKey("population_registry", PopulationRegistry)
_AUTH_KEY = web.AppKey("population_auth", dict)


def _el(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        node.text = text
    return node


def _name(parent: etree._Element, name: str, full_name: str) -> None:
    parts = full_name.split()
    node = _el(parent, DC, name)
    _el(node, DC, "Ho", parts[0] if parts else "")
    if len(parts) > 2:
        _el(node, DC, "ChuDem", " ".join(parts[1:-1]))
    _el(node, DC, "Ten", parts[-1] if len(parts) > 1 else "")


def _address(parent: etree._Element, name: str, a: Address | None) -> None:
    if a is None:
        return
    node = _el(parent, DC, name)
    _el(node, DC, "MaTinhThanh", mapping.province_to_registry(a.province_code))
    _el(node, DC, "MaQuanHuyen", a.district_code)
    _el(node, DC, "MaPhuongXa", a.ward_code)
    _el(node, DC, "ChiTiet", a.detail)
    _el(node, DC, "QuocGia", a.country)


def _congdan(parent: etree._Element, r: _Record) -> None:
    cd = _el(parent, DC, "CongDan")
    c = r.citizen
    _el(cd, DC, "SoDinhDanh", r.pid)
    if c is not None and c.old_id:
        _el(cd, DC, "SoCMND", c.old_id)
    _name(cd, "HoVaTen", r.full_name)
    _el(cd, DC, "GioiTinh", mapping.SEX_CODES[r.sex])
    if c is not None:
        _el(cd, DC, "DanToc", c.ethnicity)
        _el(cd, DC, "TonGiao", c.religion)
        _el(cd, DC, "TinhTrangHonNhan", mapping.MARITAL_CODES[c.marital_status])
        if c.blood_type:
            _el(cd, DC, "NhomMau", c.blood_type)
    birth = _el(cd, DC, "NgayThangNamSinh")
    _el(birth, DC, "Nam", r.birth[:4])
    _el(birth, DC, "NgayThangNam", r.birth)
    if c is not None:
        _address(cd, "NoiDangKyKhaiSinh", c.birth_registration_place)
        _address(cd, "QueQuan", c.hometown)
    _address(cd, "ThuongTru", None if r.deregistered else r.permanent)  # none since then
    _address(cd, "NoiOHienTai", c.current_address if c is not None else r.permanent)
    _el(cd, DC, "QuocTich", c.nationality if c is not None else "VN")
    for tag in ("Cha", "Me", "VoChong"):  # the WSDL's order
        p = r.relatives.get(tag)
        if p is None:
            continue
        node = _el(cd, DC, tag)
        _name(node, "HoVaTen", p.full_name)
        _el(node, DC, "QuocTich", p.nationality)
        _el(node, DC, "SoDinhDanh", p.personal_id)
        if p.old_id:
            _el(node, DC, "SoCMND", p.old_id)
    if r.household_head:
        node = _el(cd, DC, "ChuHo")
        _el(node, DC, "SoDinhDanh", r.household_head)
        _el(node, DC, "QuanHe", r.relation or "CH01")
    if r.household_book:
        _el(cd, DC, "SoSoHoKhau", r.household_book)
    if r.deceased:  # the death this registry recorded (the residence de-registered for it)
        _el(cd, DC, "SoTrichLucKhaiTu", r.deceased)


def _required(op: etree._Element, *path: str) -> str:
    value = child_text(op, *path)
    if value is None:
        raise SoapFault("Client", "THIEU_TRUONG", f"{'/'.join(path)} is required")
    return value


def _response(name: str, request_id: str) -> etree._Element:
    node = etree.Element(f"{{{BCA}}}{name}", nsmap={None: BCA, "dc": DC})
    _el(node, BCA, "MaYeuCau", request_id)
    return node


def _mismatches(op: etree._Element, r: _Record) -> list[str]:
    wrong = []
    if fold(_required(op, "HoVaTen")) != fold(r.full_name):
        wrong.append("HoVaTen")
    day, year = (
        child_text(op, "NgayThangNamSinh", "NgayThangNam"),
        child_text(op, "NgayThangNamSinh", "Nam"),
    )
    if (day is not None and day != r.birth) or (day is None and year != r.birth[:4]):
        wrong.append("NgayThangNamSinh")
    return wrong


def _unknown(reply: etree._Element) -> bytes:
    """The WSDL's MaKetQua 2: no citizen with this SoDinhDanh."""
    _el(reply, BCA, "MaKetQua", "2")
    _el(reply, BCA, "MoTa", "Không tìm thấy công dân")
    return envelope_bytes(reply)


def _not_matching(reply: etree._Element, wrong: list[str]) -> bytes:
    """The WSDL's MaKetQua 1: the request's data do not match the record (DanhSachSaiLech
    names the fields)."""
    _el(reply, BCA, "MaKetQua", "1")
    _el(reply, BCA, "MoTa", "Thông tin không khớp")
    listing = _el(reply, BCA, "DanhSachSaiLech")
    for name in wrong:
        _el(listing, BCA, "TruongSaiLech", name)
    return envelope_bytes(reply)


def _lookup(reg: PopulationRegistry, op: etree._Element) -> bytes:
    request_id = _required(op, "MaYeuCau")
    record = reg.people.get(_required(op, "SoDinhDanh"))
    reply = _response("TraCuuThongTinCongDanResponse", request_id)
    if record is None:
        return _unknown(reply)
    wrong = _mismatches(op, record)
    if wrong:
        return _not_matching(reply, wrong)
    _el(reply, BCA, "MaKetQua", "0")
    _el(reply, BCA, "MoTa", "Thông tin khớp")
    _congdan(_el(reply, DC, "CongdanCollection"), record)
    return envelope_bytes(reply)


# The officer the embedded sandbox's callers name when none is configured (a test person of
# every seed: Trần Văn Minh); a real registry gets the configured officer_id.
SANDBOX_OFFICER_ID = WELL_KNOWN[1].personal_id

# The WSDL's ThongTinYeuCau, required in every operation: a connector that dropped the officer
# or the service code passed against this sandbox and would fail at the real registry.
_REQUEST_INFO = ("MaYeuCau", "MaDVC", "MaTichHop", "MaCanBo", "MaDonVi")

RELATION_CODES = ("CH01", "CH02", "CH03", "CH04", "CH05")  # ChuHo/QuanHe (see the WSDL)


@dataclass(frozen=True)
class _Answer:
    """A write's reply, and whether it registered anything: a refusal (MaKetQua 1 or 2) is not
    kept under its MaYeuCau, so the corrected request may be sent again under the same id, as
    after a Client fault."""

    body: bytes
    registered: bool


def _as_parent(r: _Record) -> Parent:
    """``r`` as a relative in another's record (Cha, Me)."""
    c = r.citizen
    return Parent(
        full_name=r.full_name,
        personal_id=r.pid,
        birth_date=parse_date(r.birth, "yyyyMMdd"),
        nationality=c.nationality if c is not None else "VN",
        old_id=c.old_id if c is not None else None,
    )


def _register(reg: PopulationRegistry, op: etree._Element) -> _Answer:
    request_id = _required(op, "MaYeuCau")
    reply = _response("DangKyThuongTruResponse", request_id)
    pid, birth = _required(op, "SoDinhDanh"), _required(op, "NgayThangNamSinh", "NgayThangNam")
    try:
        born = check_personal_id(pid, birth_date=datetime.strptime(birth, "%Y%m%d").date())  # noqa: DTZ007
    except (InvalidIdentifier, ValueError) as exc:
        raise SoapFault("Client", "SO_DINH_DANH", f"SoDinhDanh: {exc}") from None
    province = "0" + _required(op, "DiaChiThuongTru", "MaTinhThanh")
    if province not in PROVINCES:
        raise SoapFault("Client", "MA_TINH", f"unknown MaTinhThanh {province[1:]}")
    record = reg.people.get(pid)
    if record is not None:
        wrong = _mismatches(op, record)
        if wrong:
            return _Answer(_not_matching(reply, wrong), False)
        if record.deceased:
            raise SoapFault(
                "Client", "DA_CHET", f"{pid} is deceased (death record {record.deceased})"
            )
    registered_name = child_text(op, "HoVaTenKhaiSinh")
    if registered_name is not None and fold(registered_name) != fold(_required(op, "HoVaTen")):
        raise SoapFault("Client", "HO_TEN", "HoVaTenKhaiSinh and HoVaTen are different names")
    if record is None and registered_name is None:
        return _Answer(_unknown(reply), False)  # nobody held, and nothing to record them by
    head_id = child_text(op, "SoDinhDanhChuHo")
    head = reg.people.get(head_id) if head_id else None
    if head_id and head is None:
        raise SoapFault("Client", "CHU_HO", f"no household head {head_id}")
    if head is not None and head.deceased:
        raise SoapFault("Client", "CHU_HO", f"the household head {head_id} is deceased")
    to_member = child_text(op, "QuanHeChuHo") or "CH03"
    if to_member not in RELATION_CODES:  # checked before anything is recorded
        raise SoapFault(
            "Client", "QUAN_HE", f"QuanHeChuHo {to_member!r} is not a relation code (CH01..CH05)"
        )
    if head is not None and to_member == "CH01":
        raise SoapFault("Client", "QUAN_HE", "CH01 is the head: a member joining has another")
    number = reg.number("DKTT", province[1:])
    if record is None:
        # Someone the registry first hears of here: a newborn whose birth the civil-status
        # register has just recorded. In the real system that record arrives by replication;
        # here it is made of what the request says as registered: the name (HoVaTen is folded),
        # the sex the id encodes, and the parent whose child it joins.
        record = _Record(
            pid=pid, full_name=nfc(registered_name or ""), birth=birth, citizen=None, sex=born.sex
        )
        if head is not None and to_member == "CH03":
            record.relatives["Me" if head.sex == "female" else "Cha"] = _as_parent(head)
        reg.people[pid] = record
    record.permanent = Address(
        province_code=province,
        district_code=_required(op, "DiaChiThuongTru", "MaQuanHuyen"),
        ward_code=_required(op, "DiaChiThuongTru", "MaPhuongXa"),
        detail=child_text(op, "DiaChiThuongTru", "ChiTiet") or "",
    )
    record.deregistered = None
    if head is not None:
        # The household the named member belongs to, and the relation to its head: a child of
        # the head or of the head's spouse is the head's child, any other's is "other".
        record.household_head = head.household_head or head.pid
        record.household_book = head.household_book
        head_is_parent = (head.relation or "CH01") in ("CH01", "CH02")
        record.relation = (
            to_member
            if record.household_head == head.pid
            else ("CH03" if to_member == "CH03" and head_is_parent else "CH05")
        )
    else:
        record.household_head, record.relation = pid, "CH01"
        record.household_book = f"{province[1:]}{next(reg._numbers):07d}"
    _el(reply, BCA, "MaKetQua", "0")
    _el(reply, BCA, "MoTa", "Đã đăng ký thường trú")
    _el(reply, BCA, "SoHoSo", number)
    _el(reply, BCA, "NgayDangKy", format_datetime(datetime.now(VIETNAM)))
    _el(reply, BCA, "SoSoHoKhau", record.household_book)
    return _Answer(envelope_bytes(reply), True)


def _deregister(reg: PopulationRegistry, op: etree._Element) -> _Answer:
    request_id = _required(op, "MaYeuCau")
    pid = _required(op, "SoDinhDanh")
    record = reg.people.get(pid)
    reply = _response("XoaDangKyThuongTruResponse", request_id)
    if record is None:
        return _Answer(_unknown(reply), False)
    if fold(_required(op, "HoVaTen")) != fold(record.full_name):
        return _Answer(_not_matching(reply, ["HoVaTen"]), False)
    reason = _required(op, "LyDoXoa")
    if reason not in mapping.DEREGISTRATION_REASONS.values():
        raise SoapFault("Client", "LY_DO", f"unknown LyDoXoa {reason}")
    if reason == "01" and not child_text(op, "SoTrichLucKhaiTu"):
        raise SoapFault("Client", "THIEU_TRUONG", "SoTrichLucKhaiTu is required for a death")
    if record.deregistered:
        raise SoapFault(
            "Client", "DA_XOA", f"{pid} is already de-registered ({record.deregistered})"
        )
    province = record.permanent.province_code[1:] if record.permanent else pid[1:3]
    record.deregistered = reg.number("XDKTT", province)
    if reason == "01":
        record.deceased = child_text(op, "SoTrichLucKhaiTu")
    _el(reply, BCA, "MaKetQua", "0")
    _el(reply, BCA, "MoTa", "Đã xóa đăng ký thường trú")
    _el(reply, BCA, "SoHoSo", record.deregistered)
    _el(reply, BCA, "NgayXoa", format_datetime(datetime.now(VIETNAM)))
    return _Answer(envelope_bytes(reply), True)


_WRITES = {
    "DangKyThuongTru": ("residence.register", _register),
    "XoaDangKyThuongTru": ("residence.deregister", _deregister),
}


def _authorised(request: web.Request, auth: dict[str, Any]) -> str | None:
    """None when the platform headers are right, else what is wrong (for the 401 body)."""
    if not auth["require"]:
        return None
    timestamp = request.headers.get("Timestamp", "")
    if not timestamp.isdigit():
        return "missing or invalid Timestamp"
    if abs(time.time() * 1000 - int(timestamp)) > auth["max_skew_s"] * 1000:
        return "Timestamp outside the allowed clock skew"
    url = f"{request.scheme}://{request.host}{request.path}"
    expected = mapping.authorization(url, auth["username"], timestamp, auth["secret"])
    if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
        return "bad Authorization"
    if not hmac.compare_digest(request.headers.get("ApiKey", ""), auth["api_key"]):
        return "bad ApiKey"
    if not request.headers.get("X-Road-Client"):
        return "missing X-Road-Client"
    return None


async def _soap(request: web.Request) -> web.Response:
    reg = request.app[REGISTRY_KEY]
    problem = _authorised(request, request.app[_AUTH_KEY])
    if problem:
        return web.Response(status=401, text=f"Unauthorized: {problem}")
    body = await request.read()
    try:
        # Requests are capped at 1 MiB; past 64 KiB parsing is worth moving off the loop.
        op = (
            parse_request(body)
            if len(body) < 65536
            else await asyncio.to_thread(parse_request, body)
        )
        name = etree.QName(op)
        if name.namespace != BCA or (
            name.localname != "TraCuuThongTinCongDan" and name.localname not in _WRITES
        ):
            raise SoapFault("Client", "OPERATION", f"unknown operation {name.localname}")
        for field in _REQUEST_INFO:  # ThongTinYeuCau: who asks, for which service
            _required(op, field)
        if name.localname == "TraCuuThongTinCongDan":
            answer = _lookup(reg, op)
        elif name.localname in _WRITES:
            operation, write = _WRITES[name.localname]
            key, print_ = _required(op, "MaYeuCau"), fingerprint(op)
            stored = reg.ledger.replay(key, print_)
            if stored is not None:
                answer = stored
            else:
                written = write(reg, op)
                answer = written.body
                if written.registered:
                    reg.ledger.record(key, print_, operation, answer)
    except SoapFault as fault:
        return _fault_response(fault)
    except Exception as exc:  # a sandbox bug answers as a real registry would: soap:Server
        return _fault_response(
            SoapFault("Server", "INTERNAL", f"internal error: {type(exc).__name__}")
        )
    return web.Response(body=answer, content_type="text/xml", charset="utf-8")


def _fault_response(fault: SoapFault) -> web.Response:
    body = fault_bytes(fault, BCA)
    return web.Response(status=500, body=body, content_type="text/xml", charset="utf-8")


async def _wsdl(request: web.Request) -> web.Response:
    if "wsdl" not in request.query:
        return web.Response(status=405, text="POST SOAP requests here; GET ?wsdl for the contract")
    text = schemas.path("wsdl", "population.wsdl").read_text(encoding="utf-8")
    here = f"{request.scheme}://{request.host}{request.path}"
    return web.Response(text=text.replace(_WSDL_LOCATION, here), content_type="text/xml")


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY_KEY].ledger.stats())


async def _citizen(request: web.Request) -> web.Response:
    reg = request.app[REGISTRY_KEY]
    try:
        index = int(request.match_info["index"])
        citizen = Population(reg.seed).citizen(index)
    except ValueError:
        raise web.HTTPNotFound(text="no such citizen") from None
    return web.json_response(citizen.as_gateway())


def create_app(
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    citizens: int = 2000,
    username: str = USERNAME,
    secret: str = SECRET,
    api_key: str = API_KEY,
    require_auth: bool = True,
    max_clock_skew_s: float = 300.0,
) -> web.Application:
    """The population sandbox: ``citizens`` people of ``seed`` (generated at start-up, off the
    loop), credentials checked as the national platform does unless ``require_auth`` is off."""
    app = web.Application(
        middlewares=[counting(lambda app: app[REGISTRY_KEY].ledger), fault_middleware],
        client_max_size=1024 * 1024,
    )
    app[FAULTS_KEY] = FaultState(faults)
    registry = PopulationRegistry(seed, citizens)
    app[REGISTRY_KEY] = registry
    app[_AUTH_KEY] = {
        "require": require_auth,
        "username": username,
        "secret": secret,
        "api_key": api_key,
        "max_skew_s": max_clock_skew_s,
    }

    async def load(_: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(registry.load)
        yield

    app.cleanup_ctx.append(load)
    app.add_routes(
        [
            web.post(SOAP_PATH, _soap),
            web.post("/", _soap),
            web.get(SOAP_PATH, _wsdl),
            web.get("/_sandbox/stats", _stats),
            web.get("/_sandbox/citizens/{index}", _citizen),
            *fault_routes(),
        ]
    )
    return app
