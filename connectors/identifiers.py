"""Vietnamese identifiers: validation by the rules in shared/spec/identifiers.md, and generators.

Each ``check_*`` returns the normalised value or raises :class:`InvalidIdentifier` (a ValueError)
whose ``kind`` names the identifier and ``reason`` says, in one line, what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

__all__ = [
    "DOSSIER_CODE_MAX",
    "PROVINCES",
    "InvalidIdentifier",
    "PersonalId",
    "check_agency_id",
    "check_dossier_code",
    "check_personal_id",
    "check_procedure_code",
    "check_tax_code",
    "make_personal_id",
    "make_tax_code",
    "mask_personal_id",
    "province_from_registry",
    "tax_check_digit",
]


class InvalidIdentifier(ValueError):
    def __init__(self, kind: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {kind} {value!r}: {reason}")
        self.kind, self.value, self.reason = kind, value, reason


# Birth-registration province codes of the personal identification number (the 63 provinces before
# the 2025 merger; the 2025 reorganisation does not renumber numbers already issued).
PROVINCES: dict[str, str] = {
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn", "008": "Tuyên Quang",
    "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu", "014": "Sơn La", "015": "Yên Bái",
    "017": "Hòa Bình", "019": "Thái Nguyên", "020": "Lạng Sơn", "022": "Quảng Ninh",
    "024": "Bắc Giang", "025": "Phú Thọ", "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương",
    "031": "Hải Phòng", "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định",
    "037": "Ninh Bình", "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh", "044": "Quảng Bình",
    "045": "Quảng Trị", "046": "Thừa Thiên Huế", "048": "Đà Nẵng", "049": "Quảng Nam",
    "051": "Quảng Ngãi", "052": "Bình Định", "054": "Phú Yên", "056": "Khánh Hòa",
    "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum", "064": "Gia Lai", "066": "Đắk Lắk",
    "067": "Đắk Nông", "068": "Lâm Đồng", "070": "Bình Phước", "072": "Tây Ninh",
    "074": "Bình Dương", "075": "Đồng Nai", "077": "Bà Rịa–Vũng Tàu", "079": "Hồ Chí Minh",
    "080": "Long An", "082": "Tiền Giang", "083": "Bến Tre", "084": "Trà Vinh", "086": "Vĩnh Long",
    "087": "Đồng Tháp", "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ",
    "093": "Hậu Giang", "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
}  # fmt: skip

_SEXES = ("male", "female")
VIETNAM = timezone(timedelta(hours=7))


def province_from_registry(code: str | None) -> str | None:
    """A registry's province code (the statistics office's 2 digits: ``"40"``, as the population
    and business registries send it) as the 3-digit one of personal ids and of every answer of
    the gateway (``"040"``: "0" + it, spec/identifiers.md). A code that lost its leading zero
    (``"1"``, Hà Nội's ``"01"``) is padded; None for no code, or one that names no province
    (the record is answered all the same, without a code its reader would take for one)."""
    code = (code or "").strip()
    if not (code.isascii() and code.isdigit() and len(code) <= 3):
        return None
    code = code.zfill(3)
    return code if code in PROVINCES else None


def mask_personal_id(value: str) -> str:
    """A personal id as an answer may show it: a 12-character one with its province code and its
    last 3 digits (``"040******123"``, as the business registry masks it), anything else with its
    last 3 at most (an old 9-digit ID card number, a value the registry garbled); the rest ``*``.
    Whatever was sent, masked or not: the gateway, not the registry, keeps the promise."""
    value = value.strip()
    shown_head = 3 if len(value) == 12 else 0
    shown_tail = 3 if len(value) >= 7 else 0
    hidden = len(value) - shown_head - shown_tail
    return value[:shown_head] + "*" * hidden + value[len(value) - shown_tail :]


@dataclass(frozen=True)
class PersonalId:
    value: str
    province_code: str
    sex: str  # "male" | "female"
    birth_year: int


def check_personal_id(
    value: str,
    *,
    birth_date: date | None = None,
    birth_year: int | None = None,
    today: date | None = None,
) -> PersonalId:
    """Validate a 12-digit personal identification number (CCCD).

    Rule: digits 1-3 a known province code; digit 4 the century (1900s 0/1 … 2300s 8/9, even for
    men); digits 5-6 the birth year's last two digits; no check digit. The birth year must not be
    in the future and must agree with ``birth_date``, or ``birth_year`` (a record that holds
    only the year), when one is given.
    """
    kind = "personal id"
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        raise InvalidIdentifier(kind, value, "must be exactly 12 digits")
    province = value[:3]
    if province not in PROVINCES:
        raise InvalidIdentifier(kind, value, f"unknown province code {province}")
    marker = int(value[3])
    year = 1900 + 100 * (marker // 2) + int(value[4:6])
    today = today or datetime.now(VIETNAM).date()
    if year > today.year:
        raise InvalidIdentifier(kind, value, f"birth year {year} is in the future")
    if birth_date is not None and birth_date.year != year:
        raise InvalidIdentifier(
            kind, value, f"encodes birth year {year}, but the date of birth is {birth_date}"
        )
    if birth_year is not None and birth_year != year:
        raise InvalidIdentifier(
            kind, value, f"encodes birth year {year}, but the year of birth is {birth_year}"
        )
    return PersonalId(value, province, _SEXES[marker % 2], year)


def make_personal_id(province_code: str, sex: str, birth_year: int, serial: int) -> str:
    """Compose a personal id (the inverse of :func:`check_personal_id`). Raises ValueError for
    a birth year the century digit cannot say (before 1900 or after 2399)."""
    if not 1900 <= birth_year <= 2399:
        raise ValueError(f"no personal id encodes the birth year {birth_year} (1900-2399)")
    century = (birth_year - 1900) // 100
    marker = 2 * century + _SEXES.index(sex)
    return f"{province_code}{marker}{birth_year % 100:02d}{serial % 1_000_000:06d}"


_TAX_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)
# Matched with fullmatch and [0-9]: re's $ also matches before a final newline, and \d takes
# every script's digits; either would let "…\n" or Arabic-Indic digits through as an identifier.
_TAX_RE = re.compile(r"([0-9]{10})(?:-([0-9]{3}))?")


def tax_check_digit(first9: str) -> int | None:
    """N10 = 10 - (Σ wᵢ·Nᵢ mod 11); None when that is 10 (no valid code has these nine digits)."""
    digit = 10 - sum(w * int(d) for w, d in zip(_TAX_WEIGHTS, first9, strict=True)) % 11
    return None if digit == 10 else digit


def check_tax_code(value: str) -> str:
    """Validate an enterprise / tax code: 10 digits with check digit, optional ``-NNN`` branch."""
    kind = "tax code"
    m = _TAX_RE.fullmatch(value)
    if not m:
        if len(value) == 12 and value.isascii() and value.isdigit():
            raise InvalidIdentifier(
                kind,
                value,
                "12 digits is a personal identification number (an individual's tax code since "
                "1 July 2025), not an enterprise's: an enterprise's has 10 digits, optionally "
                "followed by -NNN",
            )
        if len(value) == 13 and value.isascii() and value.isdigit():
            # identifiers.md writes a branch only with its dash: say where it goes, by the spec's
            # example rather than the value (the 12-digit case above echoes none either).
            raise InvalidIdentifier(
                kind,
                value,
                "13 digits is a branch's code, written with a dash after the 10th digit: "
                "NNNNNNNNNN-NNN, as 0314409058-002",
            )
        raise InvalidIdentifier(kind, value, "must be 10 digits, optionally followed by -NNN")
    main, branch = m.groups()
    if main[2:9] == "0000000":
        raise InvalidIdentifier(kind, value, "digits 3-9 are all zero")
    if branch == "000":
        raise InvalidIdentifier(kind, value, "branch suffix 000 is not issued")
    expected = tax_check_digit(main[:9])
    if expected is None or expected != int(main[9]):
        raise InvalidIdentifier(kind, value, "check digit does not match")
    return value


def make_tax_code(first9: str) -> str | None:
    digit = tax_check_digit(first9)
    return None if digit is None else f"{first9}{digit}"


_AGENCY = r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}"
_AGENCY_RE = re.compile(_AGENCY)
_PROCEDURE_RE = re.compile(rf"[0-9]\.[0-9]{{6}}(\.{_AGENCY})?")
# The sequence is 4 digits in every sample (identifiers.md); up to 6 leaves a busy agency room
# past 9999 a day. Unbounded, a code of thousands of digits was accepted: past PostgreSQL's index
# row limit, or into a URL longer than the server reads back.
_DOSSIER_RE = re.compile(rf"({_AGENCY})-([0-9]{{6}})-([0-9]{{4,6}})")
DOSSIER_CODE_MAX = len("000.00.00.H41-261122-000001")  # the longest code _DOSSIER_RE takes


def check_agency_id(value: str) -> str:
    """``ddd.dd.dd.Xdd``, e.g. ``000.00.00.H41`` (UBND Nghệ An)."""
    if not _AGENCY_RE.fullmatch(value):
        raise InvalidIdentifier("agency id", value, "must look like 000.00.00.H41")
    return value


def check_procedure_code(value: str) -> str:
    """National ``1.001193`` or a local variant ``1.000494.000.00.00.H29``."""
    if not _PROCEDURE_RE.fullmatch(value):
        raise InvalidIdentifier("procedure code", value, "must look like 1.001193")
    return value


def check_dossier_code(value: str) -> str:
    """``{agency id}-{yymmdd}-{sequence}``, e.g. ``000.00.14.H20-200703-0002``: a sequence of 4
    to 6 digits."""
    m = _DOSSIER_RE.fullmatch(value)
    if not m:
        raise InvalidIdentifier(
            "dossier code",
            value,
            "must look like 000.00.00.H41-261122-0001 (a sequence of 4 to 6 digits)",
        )
    yymmdd = m.group(2)
    try:
        date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        raise InvalidIdentifier("dossier code", value, f"{yymmdd} is not a date") from None
    return value
