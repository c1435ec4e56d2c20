"""Sandbox of Vietnam Social Security (BHXH): tokens, card check, newborn cards, funeral allowance.

Card holders are the first ``holders`` citizens of :class:`connectors.testdata.Population` for
the seed, with the card numbers testdata gives them. Some holders carry a registry-side state so
that every ``maKetQua`` can be produced; :func:`scenarios` returns, for each code, the
``card.check`` params that produce it (deterministic per seed).

``CapTheTreEm`` and ``TroCapMaiTang`` are the project's own design (see mapping.py). Both are
idempotent by ``Idempotency-Key``, and a second request for the same child / the same deceased
under another key returns the first answer without registering again.

Admin: ``GET /_sandbox/tokens`` → ``{issued, active}``; ``POST /_sandbox/tokens/expire`` makes
every issued token expire now (the client must take a new one).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from aiohttp import web

from connectors.api import Endpoint
from connectors.faults import FaultPlan
from connectors.identifiers import PROVINCES, VIETNAM, InvalidIdentifier, check_personal_id
from connectors.insurance.mapping import (
    CARD_CODES,
    FUNERAL_DATA_FAULTS,
    FUNERAL_VERDICTS,
    WRITE_CODES,
)
from connectors.sandboxes import Outcome, idempotent_write, new_sandbox_app
from connectors.testdata import WELL_KNOWN, Population
from connectors.text import fold

__all__ = [
    "PASSWORD",
    "SANDBOX_OFFICER",
    "STATE_CODES",
    "USERNAME",
    "Registry",
    "create_app",
    "endpoint",
    "scenarios",
]

USERNAME = "lienthong"
PASSWORD = "sandbox-bhxh"
# The officer the embedded sandbox's callers name when none is configured: a test person of every
# seed (Trần Văn Minh, population's SANDBOX_OFFICER_ID too); a real registry gets the configured
# officer_name and officer_id.
SANDBOX_OFFICER = {"officer_name": WELL_KNOWN[1].full_name, "officer_id": WELL_KNOWN[1].personal_id}

# Codes that come from the registry's own record of a card rather than from the request.
STATE_CODES = ("001", "002", "003", "004", "010", "080", "090", "100", "101", "110",
               "120", "121", "122", "123", "124", "130")  # fmt: skip
_CARD_RE = re.compile(r"^[A-Z]{2}[1-5]\d{2}\d{10}$")
_WORKING_AGE = 15  # the youngest anyone is insured (the sandbox's funeral eligibility)
# Funeral allowance = 10 × the statutory base salary in force on the date of death.
_BASE_SALARY = ((date(2024, 7, 1), 2_340_000), (date(2023, 7, 1), 1_800_000),
                (date(2019, 7, 1), 1_490_000), (date(1900, 1, 1), 1_390_000))  # fmt: skip


@dataclass(frozen=True)
class Card:
    number: str
    full_name: str
    birth_date: date
    sex: str
    address: str
    clinic: str
    agency: str
    valid_from: date | None  # None, with valid_to: a year card (see validity)
    valid_to: date | None
    area: str = ""
    state: str = ""  # one of STATE_CODES but 010 (which follows from the dates), or ""
    note: str = ""
    years_late: int = 0  # a year card not renewed for this many years (the expired test card: 1)

    def validity(self, day: date) -> tuple[date, date]:
        """The card's dates as the registry answers them on ``day``. A year card (an adult's)
        is renewed each year, so it runs through the year of the check: made once for the year
        the sandbox started, every adult card was "expired" after 31 December."""
        if self.valid_from is not None and self.valid_to is not None:
            return self.valid_from, self.valid_to
        year = day.year - self.years_late
        return date(year, 1, 1), date(year, 12, 31)


def _dmy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _te_valid_to(birth: date) -> date:
    """A child's card runs to the day before the 6th birthday; a child who turns 6 before the
    school year starts (by 30 September) keeps it until 30 September of that year."""
    sixth = date(
        birth.year + 6, birth.month, 28 if (birth.month, birth.day) == (2, 29) else birth.day
    )
    last = sixth - timedelta(days=1)
    september = date(sixth.year, 9, 30)
    return max(last, september) if sixth <= september else last


def _agency(stats: str) -> str:
    return f"BHXH {PROVINCES.get('0' + stats, 'tỉnh ' + stats)}"


@lru_cache(maxsize=8)
def _holders(seed: int, holders: int) -> tuple[dict[str, Card], dict[str, str]]:
    """The seeded card holders and the test card of each state code (cached: building them
    takes a noticeable fraction of a second, and every sandbox instance would repeat it)."""
    population = Population(seed)
    cards: dict[str, Card] = {}
    for citizen in population.citizens(holders):
        number = citizen.health_card_number
        start: date | None = None  # a year card
        end: date | None = None
        if number.startswith("TE"):
            start, end = citizen.birth_date, _te_valid_to(citizen.birth_date)
        stats = number[3:5]
        cards[number[5:]] = Card(
            number=number,
            full_name=citizen.full_name,
            birth_date=citizen.birth_date,
            sex=citizen.sex,
            address=citizen.permanent_address.detail,
            clinic=f"{stats}{citizen.index % 97 + 1:03d}",
            agency=_agency(stats),
            valid_from=start,
            valid_to=end,
            area=("K1", "K2", "K3")[citizen.index % 3] if citizen.index % 17 == 0 else "",
        )
    flagged: dict[str, str] = {}
    candidates = iter(c for c in population.citizens(holders - 10, start=10))
    for code in STATE_CODES:
        child = code == "130"
        citizen = next(c for c in candidates if c.health_card_number.startswith("TE") == child)
        ssc = citizen.social_insurance_code
        card = cards[ssc]
        if code == "010":
            card = replace(card, years_late=1)
        elif code in ("003", "004"):
            new_number = card.number[:5] + f"{(int(ssc) + 5_000_000) % 10**10:010d}"
            card = replace(card, state=code, note=f"Thẻ mới / new card: {new_number}")
        else:
            card = replace(card, state=code)
        cards[ssc] = card
        flagged[code] = ssc
    return cards, flagged


class Registry:
    """The emulated registry's data and rules, without HTTP (the app wraps it)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        holders: int = 2000,
        today: date | None = None,
        clock: Callable[[], date] | None = None,
    ) -> None:
        self.seed = seed
        # Vietnam's date at each request, unless tests fix it (today) or move it (clock).
        self._clock = clock or (lambda: today or datetime.now(VIETNAM).date())
        self.newborn: dict[str, dict[str, Any]] = {}  # by the child's personal id
        self.funerals: dict[str, dict[str, Any]] = {}  # by the deceased's personal id
        self._counter = 0
        cards, flagged = _holders(seed, holders)
        self.cards: dict[str, Card] = dict(cards)  # by social-insurance code (last 10 characters)
        self.flagged: dict[str, str] = dict(flagged)  # code → social-insurance code of its card

    @property
    def today(self) -> date:
        """A sandbox started yesterday refused a death or birth of today as impossible."""
        return self._clock()

    # --- KQNhanLichSuKCB2024 -------------------------------------------------------------------
    def check(self, body: Any) -> dict[str, Any]:
        today = self.today

        def answer(
            code: str, card: Card | None = None, number: str = "", detail: str = ""
        ) -> dict[str, Any]:
            note = CARD_CODES[code].vietnamese + (f": {detail}" if detail else "")
            reply: dict[str, Any] = {"maKetQua": code, "ghiChu": note}
            if number:
                reply["maThe"] = number
            if card is not None:
                valid_from, valid_to = card.validity(today)
                reply.update(
                    maThe=card.number, hoTen=card.full_name, ngaySinh=_dmy(card.birth_date),
                    gioiTinh={"male": "Nam", "female": "Nữ"}[card.sex], diaChi=card.address,
                    maDKBD=card.clinic, cqBHXH=card.agency, gtTheTu=_dmy(valid_from),
                    gtTheDen=_dmy(valid_to), maKV=card.area,
                )  # fmt: skip
                if card.note:
                    reply["ghiChu"] += f". {card.note}"
            return reply

        fields = ("maThe", "hoTen", "ngaySinh", "hoTenCb", "cccdCb")
        if not isinstance(body, dict) or any(
            not isinstance(body.get(k), str) or not body[k].strip() for k in fields
        ):
            return answer("205")
        refusal = _officer_refusal(body["hoTenCb"], body["cccdCb"])
        if refusal:
            return answer("205", detail=refusal)
        number = body["maThe"].strip().upper()
        if not _CARD_RE.match(number):
            return answer("051", number=number)
        card = self.cards.get(number[5:])
        if card is None:
            return answer("050", number=number)
        if number[:2] != card.number[:2]:
            return answer("051", number=number)
        if number[2] != card.number[2]:
            return answer("053", number=number)
        if number[3:5] != card.number[3:5]:
            return answer("052", number=number)
        asked, held = fold(body["hoTen"]), fold(card.full_name)
        if asked != held:
            return answer("061" if asked[:1] == held[:1] else "060", number=number)
        birth = body["ngaySinh"].strip()
        same = (
            birth == str(card.birth_date.year)
            if len(birth) == 4
            else birth == _dmy(card.birth_date)
        )
        if not same:
            return answer("070", number=number)
        if card.state:
            return answer(card.state, card)
        if card.validity(today)[1] < today:
            return answer("010", card)
        return answer("000", card)

    # --- CapTheTreEm (the project's own design) -----------------------------------------------
    def issue_newborn(self, body: Any) -> tuple[int, dict[str, Any], Outcome]:
        fields = ("soDinhDanh", "hoTen", "ngaySinh", "gioiTinh", "maTinh")
        if not isinstance(body, dict) or any(
            not isinstance(body.get(k), str) or not body[k].strip() for k in fields
        ):
            return _write_error("205")
        try:
            birth = datetime.strptime(body["ngaySinh"], "%d/%m/%Y").date()  # noqa: DTZ007
            check_personal_id(body["soDinhDanh"], birth_date=birth, today=self.today)
        except (ValueError, InvalidIdentifier) as exc:
            return _write_error("206", str(exc))
        province = body["maTinh"]
        if "0" + province not in PROVINCES:
            return _write_error("206", f"unknown province {province}")
        if birth > self.today:
            return _write_error("206", "date of birth in the future")
        if _te_valid_to(birth) < self.today:
            return _write_error("207", "the child is 6 or older")
        pid = body["soDinhDanh"]
        if pid in self.newborn:
            return 200, {**self.newborn[pid], "ghiChu": "Thẻ đã được cấp trước đó"}, "found"
        serial = int(pid[-6:]) * 37
        while (ssc := f"{province}{serial % 10**8:08d}") in self.cards:
            serial += 1
        number = f"TE1{province}{ssc}"
        valid_to = _te_valid_to(birth)
        self.cards[ssc] = Card(
            number=number, full_name=body["hoTen"], birth_date=birth,
            sex="female" if body["gioiTinh"] == "Nữ" else "male", address="",
            clinic=f"{province}001", agency=_agency(province), valid_from=birth, valid_to=valid_to,
        )  # fmt: skip
        reply = {"maKetQua": "000", "ghiChu": "Cấp thẻ thành công", "maThe": number,
                 "maSoBHXH": ssc, "gtTheTu": _dmy(birth), "gtTheDen": _dmy(valid_to)}  # fmt: skip
        self.newborn[pid] = reply
        return 200, reply, "written"

    # --- TroCapMaiTang (the project's own design) ---------------------------------------------
    def pay_funeral(self, body: Any) -> tuple[int, dict[str, Any], Outcome]:
        fields = ("soDinhDanh", "hoTen", "ngayChet", "soTrichLucKhaiTu")
        beneficiary = body.get("nguoiHuong") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or any(not isinstance(body.get(k), str) or not body[k].strip() for k in fields)
            or not isinstance(beneficiary, dict)
            or any(
                not isinstance(beneficiary.get(k), str) or not beneficiary[k].strip()
                for k in ("hoTen", "soDinhDanh")
            )
        ):
            return _write_error("205")
        try:
            died = datetime.strptime(body["ngayChet"], "%d/%m/%Y").date()  # noqa: DTZ007
            deceased = check_personal_id(body["soDinhDanh"], today=self.today)
            check_personal_id(beneficiary["soDinhDanh"], today=self.today)
        except (ValueError, InvalidIdentifier) as exc:
            return _write_error("206", str(exc))
        if died > self.today or died.year < deceased.birth_year:
            return _write_error("206", f"impossible date of death {died}")
        if beneficiary["soDinhDanh"] == body["soDinhDanh"]:
            return _write_error("207", reason="NGUOI_HUONG")
        pid = body["soDinhDanh"]
        if pid in self.funerals:
            return 200, {**self.funerals[pid], "ghiChu": "Đã chi trả trước đó"}, "found"
        if died.year - deceased.birth_year < _WORKING_AGE:
            # The allowance is paid for the insured and pensioners (Law on Social Insurance):
            # the sandbox holds as insured everyone who died at working age or older, and no one
            # younger. A verdict: the dossier's data are right, and no correction changes it.
            return _write_error("207", reason="CHUA_THAM_GIA")
        base = next(amount for start, amount in _BASE_SALARY if died >= start)
        self._counter += 1
        reply = {"maKetQua": "000", "ghiChu": "Đã duyệt chi trợ cấp mai táng",
                 "maHoSo": f"MT{self.seed % 100:02d}{self._counter:08d}", "soTien": 10 * base}  # fmt: skip
        self.funerals[pid] = reply
        return 200, reply, "written"


def _officer_refusal(name: str, personal_id: str) -> str:
    """Why ``hoTenCb`` / ``cccdCb`` name no officer ("" if they do). BHXH logs the person who
    asks: a citizen's id card number and full name, never an account's name or an X-Road id."""
    try:
        check_personal_id(personal_id.strip())
    except InvalidIdentifier as exc:
        return f"cccdCb: {exc.reason}"
    words = name.split()
    if len(words) < 2 or not all(word.isalpha() for word in words):
        return f"hoTenCb {name!r} is not a person's full name"
    return ""


def _write_error(
    code: str, detail: str = "", *, reason: str = ""
) -> tuple[int, dict[str, Any], Outcome]:
    """A refusal; ``reason``: a 207's maLyDo (FUNERAL_VERDICTS, FUNERAL_DATA_FAULTS), which says
    it in the note too."""
    if reason:
        detail = (FUNERAL_VERDICTS | FUNERAL_DATA_FAULTS)[reason]
    note = WRITE_CODES[code].vietnamese + (f": {detail}" if detail else "")
    # Application errors travel as HTTP 200 with a result code, as the card check does.
    reply = {"maKetQua": code, "ghiChu": note}
    if reason:
        reply["maLyDo"] = reason
    return 200, reply, "rejected"


def scenarios(seed: int = 0, *, holders: int = 2000) -> dict[str, dict[str, Any]]:
    """For every maKetQua, ``card.check`` params that make the sandbox (same seed) answer it.

    The 205 scenario names an officer with an empty name (the params' ``officer`` override);
    every other one leaves the officer to the connector (:data:`SANDBOX_OFFICER` will do).
    """
    registry = Registry(seed, holders=holders, today=date(2026, 11, 1))
    base = registry.cards[Population(seed).citizen(0).social_insurance_code]
    card, name, birth = base.number, base.full_name, base.birth_date

    def params(number: str = card, full_name: str = name, day: date = birth) -> dict[str, Any]:
        return {"card_number": number, "full_name": full_name, "birth_date": day.isoformat()}

    other_group = "HC" if card[:2] != "HC" else "DN"
    other_level = str(int(card[2]) % 5 + 1)
    other_province = "01" if card[3:5] != "01" else "79"
    unknown = f"{card[:5]}9999999999"
    while unknown[5:] in registry.cards:
        unknown = unknown[:5] + f"{int(unknown[5:]) - 1:010d}"
    first = fold(name)[:1]
    result = {
        "000": params(),
        "050": params(unknown),
        "051": params(other_group + card[2:]),
        "052": params(card[:3] + other_province + card[5:]),
        "053": params(card[:2] + other_level + card[3:]),
        "060": params(full_name="Trần Văn Bình" if first != "T" else "Lê Văn Bình"),
        "061": params(full_name=f"{name.split()[0]} Cao Kỳ Lạ"),
        "070": params(day=birth + timedelta(days=1)),
        "205": {**params(), "officer": {"full_name": "", "personal_id": ""}},
    }
    for code, ssc in registry.flagged.items():
        held = registry.cards[ssc]
        result[code] = params(held.number, held.full_name, held.birth_date)
    return result


def create_app(
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    username: str = USERNAME,
    password: str = PASSWORD,
    token_ttl: float = 3600.0,
    holders: int = 2000,
    today: date | None = None,
    clock: Callable[[], date] | None = None,
) -> web.Application:
    """The BHXH sandbox application. ``today`` fixes the registry's date, ``clock`` tells it at
    each request (default: Vietnam's date at each request)."""
    registry = Registry(seed, holders=holders, today=today, clock=clock)
    tokens: dict[str, tuple[str, float]] = {}  # access token → (id token, expiry, monotonic)
    issued = [0]

    def authorised(request: web.Request) -> bool:
        query = request.query
        held = tokens.get(query.get("token", ""))
        return (
            held is not None
            and held[0] == query.get("id_token")
            and time.monotonic() < held[1]
            and (query.get("username"), query.get("password")) == (username, password)
        )

    def refused() -> web.Response:
        return web.json_response(
            {"maKetQua": "401", "ghiChu": "Token không hợp lệ hoặc đã hết hạn / invalid token"},
            status=401,
        )

    async def take(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or (body.get("username"), body.get("password")) != (
            username,
            password,
        ):
            return web.json_response(
                {
                    "maKetQua": "401",
                    "ghiChu": "Sai tên đăng nhập hoặc mật khẩu / wrong credentials",
                },
                status=401,
            )
        access, id_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        tokens[access] = (id_token, time.monotonic() + token_ttl)
        issued[0] += 1
        return web.json_response(
            {
                "maKetQua": "200",
                "APIKey": {"access_token": access, "id_token": id_token, "expires_in": token_ttl},
            }
        )

    async def check(request: web.Request) -> web.Response:
        if not authorised(request):
            return refused()
        try:
            body = await request.json()
        except ValueError:
            body = None
        return web.json_response(registry.check(body))

    def writer(operation: str, perform: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if not authorised(request):
                return refused()
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            return await idempotent_write(request, operation, raw, lambda: perform(body))

        return handler

    async def token_stats(request: web.Request) -> web.Response:
        now = time.monotonic()
        active = sum(1 for _, expiry in tokens.values() if now < expiry)
        return web.json_response({"issued": issued[0], "active": active})

    async def expire(request: web.Request) -> web.Response:
        for key, (id_token, _) in list(tokens.items()):
            tokens[key] = (id_token, float("-inf"))
        return await token_stats(request)

    return new_sandbox_app(
        faults=faults,
        routes=[
            web.post("/api/token/take", take),
            web.post("/api/egw/KQNhanLichSuKCB2024", check),
            web.post("/api/egw/CapTheTreEm", writer("card.issue_newborn", registry.issue_newborn)),
            web.post("/api/egw/TroCapMaiTang", writer("funeral.pay", registry.pay_funeral)),
            web.get("/_sandbox/tokens", token_stats),
            web.post("/_sandbox/tokens/expire", expire),
        ],
    )


def endpoint(url: str) -> Endpoint:
    """An Endpoint for this sandbox at ``url`` with its built-in credentials."""
    return Endpoint(url=url, username=USERNAME, password=PASSWORD)
