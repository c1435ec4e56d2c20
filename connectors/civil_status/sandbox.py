"""An emulator of the civil-status register: the SOAP contract of schemas/wsdl/civil_status.wsdl,
birth registration that issues the child's personal id and a PAdES-signed birth certificate,
death registration, idempotent writes, request-signature checks and fault injection.

Routes: ``POST /soap`` (also ``/``); ``GET /soap?wsdl``; ``GET /_sandbox/stats``;
``GET|PUT /_sandbox/faults``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aiohttp import web
from cryptography import x509
from lxml import etree

import schemas
from connectors.api import Endpoint
from connectors.civil_status.certificate import certificate_pdf
from connectors.faults import FAULTS_KEY, FaultPlan, FaultState, fault_middleware, fault_routes
from connectors.identifiers import PROVINCES, InvalidIdentifier, check_personal_id, make_personal_id
from connectors.sandboxes import counting
from connectors.soap import (
    SOAP_ENV,
    SandboxLedger,
    SoapFault,
    child_text,
    envelope_bytes,
    fault_bytes,
    fingerprint,
    parse_request,
)
from connectors.text import VIETNAM, format_datetime, nfc
from signing.errors import SignatureInvalid, SigningError, UntrustedSigner
from signing.keys import SigningKey
from signing.pdf import sign_pdf
from signing.trust import TrustStore, check_strength, common_name
from signing.xml import verify_xml_sync

__all__ = [
    "NS",
    "REGISTRY_KEY",
    "SOAP_PATH",
    "CivilStatusRegistry",
    "create_app",
    "sandbox_endpoint",
]

NS = "http://hotich.moj.gov.vn/dichvu/1.0"
DS = "http://www.w3.org/2000/09/xmldsig#"
SOAP_PATH = "/soap"
_WSDL_LOCATION = "http://localhost/soap"
_SEX = {"1": "male", "2": "female", "3": "male"}  # the id rule has two sexes; see _child_id


def sandbox_endpoint(
    base_url: str, *, timeout: float = 10.0, sign_requests: bool = False
) -> Endpoint:
    """An :class:`Endpoint` for the sandbox at ``base_url`` (it needs no credentials)."""
    return Endpoint(
        url=base_url.rstrip("/") + SOAP_PATH, timeout=timeout, sign_requests=sign_requests
    )


class CivilStatusRegistry:
    """The sandbox's state: issued ids, registrations, deaths, the ledger."""

    def __init__(
        self,
        seed: int,
        signer: SigningKey | None,
        trust: TrustStore | None,
        require_signed: bool,
        callers: Sequence[x509.Certificate] = (),
    ) -> None:
        self.signer, self.trust, self.require_signed = signer, trust, require_signed
        self.callers = list(callers)
        self.ledger = SandboxLedger()
        self.issued: set[str] = set()
        self.deaths: dict[str, str] = {}  # personal id → death record number
        # (mother's id, child's name, birth date) → birth record number: the register refuses
        # the same birth twice, as it refuses a second death
        self.births: dict[tuple[str, str, date], str] = {}
        self._rng = random.Random(f"civil_status:{seed}")
        self._births = itertools.count(1)
        self._death_numbers = itertools.count(1)
        self._locks: dict[Hashable, asyncio.Lock] = {}
        # A hook for tests: what the register does to a certificate after signing it.
        self.after_signing: Callable[[bytes], bytes] | None = None

    def lock(self, key: Hashable) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def child_id(self, province: str, sex_code: str, born: date) -> str:
        # The personal-id rule knows two sexes; for "undetermined" (3) the register must still
        # issue a number, and we use the even digit (an assumption: no rule was found).
        while True:
            pid = make_personal_id(
                province, _SEX[sex_code], born.year, self._rng.randrange(1_000_000)
            )
            if pid not in self.issued:
                self.issued.add(pid)
                return pid


REGISTRY_KEY = web.AppKey("civil_status_registry", CivilStatusRegistry)


def _required(op: etree._Element, name: str) -> str:
    value = child_text(op, name)
    if value is None:
        raise SoapFault("Client", "THIEU_TRUONG", f"{name} is required")
    return value


def _date(op: etree._Element, name: str) -> date:
    value = _required(op, name)
    try:
        return datetime.strptime(value, "%d/%m/%Y").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        raise SoapFault("Client", "NGAY", f"{name} {value!r} is not dd/MM/yyyy") from None


def _pid(op: etree._Element, name: str) -> str:
    value = _required(op, name)
    try:
        return check_personal_id(value).value
    except InvalidIdentifier as exc:
        raise SoapFault("Client", "SO_DINH_DANH", f"{name}: {exc.reason}") from None


def _province(op: etree._Element) -> str:
    code = _required(op, "maTinhDangKy")
    if code not in PROVINCES:
        raise SoapFault("Client", "MA_TINH", f"unknown maTinhDangKy {code}")
    return code


def _el(parent: etree._Element, name: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(parent, f"{{{NS}}}{name}").text = text


def _book(n: int, year: int) -> tuple[str, str]:
    return f"{(n - 1) // 500 + 1:02d}/{year}", str((n - 1) % 500 // 2 + 1)


@dataclass(frozen=True)
class _BirthRequest:
    """A ``DangKyKhaiSinh`` request with every field checked: nothing is registered before it is
    whole (a request refused for its last field had taken a number and a personal id)."""

    request_id: str
    province: str
    born: date
    sex: str
    name: str
    place: str
    mother_id: str
    mother: str
    father: str | None
    declarant: str
    relation: str
    office: str

    @property
    def child(self) -> tuple[str, str, date]:
        # The name as written, in any case or spacing (twins Anh and Ánh are two children).
        return (self.mother_id, nfc(self.name).casefold(), self.born)


def _birth_request(op: etree._Element, today: date) -> _BirthRequest:
    request_id = _required(op, "maYeuCau")
    province = _province(op)
    born = _date(op, "nksNgaySinh")
    if born > today:
        raise SoapFault("Client", "NGAY", "nksNgaySinh is in the future")
    sex = _required(op, "nksGioiTinh")
    if sex not in _SEX:
        raise SoapFault("Client", "GIOI_TINH", f"nksGioiTinh must be 1, 2 or 3, not {sex}")
    if _required(op, "loaiDangKy") not in ("0", "1", "2", "3", "4"):
        raise SoapFault("Client", "LOAI_DANG_KY", "loaiDangKy must be 0-4")
    mother_id = _pid(op, "meSoDinhDanh")
    if check_personal_id(mother_id).birth_year >= born.year:
        raise SoapFault("Client", "SAI_LECH", "the mother is not older than the child")
    if child_text(op, "chaSoDinhDanh"):
        _pid(op, "chaSoDinhDanh")
    _pid(op, "nycSoGiayToTuyThan")
    return _BirthRequest(
        request_id=request_id,
        province=province,
        born=born,
        sex=sex,
        name=_required(op, "nksHoTen"),
        place=_required(op, "nksNoiSinh"),
        mother_id=mother_id,
        mother=_required(op, "meHoTen"),
        father=child_text(op, "chaHoTen"),
        declarant=_required(op, "nycHoTen"),
        relation=_required(op, "nycQuanHe"),
        office=child_text(op, "noiDangKy") or PROVINCES[province],
    )


_SIGNER_NAME, _SIGNER_TITLE = "Nguyễn Văn Hòa", "Chủ tịch UBND"


async def _certificate(
    reg: CivilStatusRegistry,
    asked: _BirthRequest,
    number: str,
    book: str,
    child_id: str,
    now: datetime,
) -> bytes:
    """The birth certificate, signed by the register when it has a key."""
    lines = [
        ("Số", number),
        ("Quyển số", book),
        ("Họ, chữ đệm, tên", asked.name),
        ("Số định danh cá nhân", child_id),
        ("Ngày, tháng, năm sinh", asked.born.strftime("%d/%m/%Y")),
        ("Nơi sinh", asked.place),
        ("Họ, chữ đệm, tên người mẹ", asked.mother),
        ("Họ, chữ đệm, tên người cha", asked.father or "-"),
        ("Người đi khai sinh", asked.declarant),
        ("Quan hệ với người được khai sinh", asked.relation),
        ("Nơi đăng ký", asked.office),
        ("Ngày đăng ký", now.strftime("%d/%m/%Y")),
        ("Người ký", f"{_SIGNER_NAME}, {_SIGNER_TITLE}"),
    ]
    pdf = await asyncio.to_thread(certificate_pdf, "GIẤY KHAI SINH (bản chính điện tử)", lines)
    if reg.signer is not None:
        pdf = await sign_pdf(pdf, reg.signer, level="B-B", reason="Đăng ký khai sinh")
    if reg.after_signing is not None:
        pdf = reg.after_signing(pdf)
    return pdf


async def _birth(reg: CivilStatusRegistry, op: etree._Element) -> bytes:
    now = datetime.now(VIETNAM)
    asked = _birth_request(op, now.date())
    # The same child under two maYeuCau: the second waits until the first is registered (then
    # refused as a duplicate) or has failed (then registers).
    async with reg.lock(("birth", *asked.child)):
        if asked.child in reg.births:
            raise SoapFault(
                "Client",
                "DA_DANG_KY",
                f"the birth of {asked.name} on {asked.born:%d/%m/%Y} to this mother is already "
                f"registered ({reg.births[asked.child]})",
            )
        # A failure from here on registers nothing: the personal id goes back (the number is
        # skipped, as a database sequence skips one), and a retry under the same maYeuCau
        # registers the birth instead of being refused as its duplicate.
        n = next(reg._births)
        number = f"KS.{asked.province}.{now.year}.{n:06d}"
        book, page = _book(n, now.year)
        child_id = reg.child_id(asked.province, asked.sex, asked.born)
        try:
            pdf = await _certificate(reg, asked, number, book, child_id, now)
        except BaseException:
            reg.issued.discard(child_id)
            raise
        reg.births[asked.child] = number
    reply = etree.Element(f"{{{NS}}}DangKyKhaiSinhResponse", nsmap={None: NS})
    for field, value in (
        ("maYeuCau", asked.request_id),
        ("maKetQua", "0"),
        ("moTa", "Đã đăng ký khai sinh"),
        ("so", number),
        ("quyenSo", book),
        ("trangSo", page),
        ("ngayDangKy", format_datetime(now)),
        ("nksSoDinhDanh", child_id),
        ("nguoiKy", _SIGNER_NAME),
        ("chucVuNguoiKy", _SIGNER_TITLE),
        ("nguoiThucHien", "Công chức tư pháp - hộ tịch"),
    ):
        _el(reply, field, value)

    _el(reply, "giayKhaiSinh", base64.b64encode(pdf).decode("ascii"))
    return envelope_bytes(reply)


async def _death(reg: CivilStatusRegistry, op: etree._Element) -> bytes:
    request_id = _required(op, "maYeuCau")
    province = _province(op)
    pid = _pid(op, "nktSoDinhDanh")
    died = _date(op, "nktNgayChet")
    now = datetime.now(VIETNAM)
    if died > now.date():
        raise SoapFault("Client", "NGAY", "nktNgayChet is in the future")
    if check_personal_id(pid).birth_year > died.year:
        raise SoapFault("Client", "SAI_LECH", "death before birth")
    _required(op, "nktHoTen")
    _required(op, "nktNoiChet")
    _pid(op, "nycSoGiayToTuyThan")
    if pid in reg.deaths:
        raise SoapFault(
            "Client", "DA_DANG_KY", f"death of {pid} already registered ({reg.deaths[pid]})"
        )
    n = next(reg._death_numbers)
    number = f"KT.{province}.{now.year}.{n:06d}"
    reg.deaths[pid] = number
    book, page = _book(n, now.year)
    reply = etree.Element(f"{{{NS}}}DangKyKhaiTuResponse", nsmap={None: NS})
    for field, value in (
        ("maYeuCau", request_id),
        ("maKetQua", "0"),
        ("moTa", "Đã đăng ký khai tử"),
        ("so", number),
        ("quyenSo", book),
        ("trangSo", page),
        ("ngayDangKy", format_datetime(now)),
        ("nguoiKy", _SIGNER_NAME),
        ("chucVuNguoiKy", _SIGNER_TITLE),
    ):
        _el(reply, field, value)
    return envelope_bytes(reply)


_WRITES = {"DangKyKhaiSinh": ("birth.register", _birth), "DangKyKhaiTu": ("death.register", _death)}


async def _operation(reg: CivilStatusRegistry, body: bytes) -> etree._Element:
    """The request element, taken from the verified content when signatures are checked."""
    op = parse_request(body) if len(body) < 65536 else await asyncio.to_thread(parse_request, body)
    signed = op.getroottree().getroot().find(f".//{{{DS}}}Signature") is not None
    if not reg.require_signed or reg.trust is None:
        return op
    if not signed:
        raise SoapFault("Client", "CHU_KY", "the request must be signed")
    try:
        # The signer's chain is 20-50 ms of CPU: the sandbox may share its loop with the gateway
        # it answers (the embedded default), which then answered nothing meanwhile.
        verification = await asyncio.to_thread(verify_xml_sync, body, reg.trust)
    except SignatureInvalid as exc:
        raise SoapFault("Client", "CHU_KY", f"request signature refused: {exc.reason}") from None
    except SigningError as exc:
        raise SoapFault("Client", "CHU_KY", f"request signature not verifiable: {exc}") from None
    _check_caller(reg, verification.report.certificate)
    # Only what was signed is used from here on (never the original tree: signature wrapping).
    soap_body = verification.signed.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        raise SoapFault("Client", "SOAP_BODY", "the signed envelope has no body element")
    return soap_body[0]


def _check_caller(reg: CivilStatusRegistry, signer: x509.Certificate | None) -> None:
    """A chain to a trusted root is not enough: the register takes requests only from the
    gateways whose certificates it registered (another agency's certificate chains to the same
    root), and only under keys the norms let anyone sign with (RSA of 2048 bits at least)."""
    if signer is None:  # verify_xml names the signer of every signature it found valid
        raise SoapFault("Client", "CHU_KY", "request signature names no signer certificate")
    try:
        check_strength([signer])
    except UntrustedSigner as exc:
        raise SoapFault("Client", "CHU_KY", f"request signature refused: {exc.reason}") from None
    if signer not in reg.callers:
        raise SoapFault(
            "Client",
            "CHU_KY",
            f"request signed by {common_name(signer)}, not a gateway registered with the register",
        )


def _without_signature(op: etree._Element) -> bytes:
    copy = etree.fromstring(etree.tostring(op))
    for sig in copy.findall(f".//{{{DS}}}Signature"):
        sig.getparent().remove(sig)
    return fingerprint(copy)


def _fault_response(fault: SoapFault) -> web.Response:
    return web.Response(
        status=500, body=fault_bytes(fault, NS), content_type="text/xml", charset="utf-8"
    )


async def _soap(request: web.Request) -> web.Response:
    reg = request.app[REGISTRY_KEY]
    body = await request.read()
    try:
        op = await _operation(reg, body)
        name = etree.QName(op)
        if name.namespace != NS or name.localname not in _WRITES:
            raise SoapFault("Client", "OPERATION", f"unknown operation {name.localname}")
        operation, write = _WRITES[name.localname]
        key, print_ = _required(op, "maYeuCau"), _without_signature(op)
        # Signing the certificate awaits: hold the key's lock so a concurrent duplicate delivery
        # waits for the first and then gets its answer instead of registering twice.
        async with reg.lock(key):
            answer = reg.ledger.replay(key, print_)
            if answer is None:
                answer = await write(reg, op)
                reg.ledger.record(key, print_, operation, answer)
    except SoapFault as fault:
        return _fault_response(fault)
    except Exception as exc:  # a sandbox bug answers as a real registry would: soap:Server
        return _fault_response(
            SoapFault("Server", "INTERNAL", f"internal error: {type(exc).__name__}")
        )
    return web.Response(body=answer, content_type="text/xml", charset="utf-8")


async def _wsdl(request: web.Request) -> web.Response:
    if "wsdl" not in request.query:
        return web.Response(status=405, text="POST SOAP requests here; GET ?wsdl for the contract")
    text = schemas.path("wsdl", "civil_status.wsdl").read_text(encoding="utf-8")
    here = f"{request.scheme}://{request.host}{request.path}"
    return web.Response(text=text.replace(_WSDL_LOCATION, here), content_type="text/xml")


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY_KEY].ledger.stats())


def create_app(
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    signer: SigningKey | None = None,
    trust: TrustStore | None = None,
    require_signed: bool | None = None,
    callers: Sequence[x509.Certificate] = (),
    **_: Any,
) -> web.Application:
    """The civil-status sandbox. ``signer`` (the register's key) signs birth certificates — without
    it certificates are unsigned; ``trust`` checks request signatures, which are required when
    ``require_signed`` (default: whenever ``trust`` is given); ``callers`` are the certificates
    of the gateways it takes requests from (as the real register registers a member's), the only
    signers it accepts.

    Raises:
        ValueError: signatures are checked and no caller is named (every request would be refused).
    """
    app = web.Application(
        middlewares=[counting(lambda app: app[REGISTRY_KEY].ledger), fault_middleware],
        client_max_size=1024 * 1024,
    )
    app[FAULTS_KEY] = FaultState(faults)
    required = trust is not None if require_signed is None else require_signed
    if required and trust is not None and not callers:
        raise ValueError(
            "a register that checks request signatures needs its callers' certificates"
        )
    app[REGISTRY_KEY] = CivilStatusRegistry(seed, signer, trust, required, callers)
    app.add_routes(
        [
            web.post(SOAP_PATH, _soap),
            web.post("/", _soap),
            web.get(SOAP_PATH, _wsdl),
            web.get("/_sandbox/stats", _stats),
            *fault_routes(),
        ]
    )
    return app
