"""Vietnamese text and dates at the registry boundary.

- :func:`nfc` normalises to NFC (text arrives in NFC and NFD);
- :func:`fold` gives the upper-case, diacritic-free form the population registry matches names on;
- :func:`decode_tcvn3` and :func:`decode_vni` turn legacy 8-bit text (TCVN3/ABC and VNI-Windows, the
  font-based encodings of 1990s-2000s provincial software) into Unicode;
- :func:`format_date` / :func:`parse_date` / :func:`format_datetime` / :func:`parse_datetime`
  convert between ISO and the registries' ``yyyyMMdd``, ``dd/MM/yyyy``, ``yyyy/MM/dd`` and
  ``yyyyMMddHHmmss``.

Dates are converted here, at the connector, never in the gateway's core.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

__all__ = [
    "DATE_PATTERNS",
    "VIETNAM",
    "decode_legacy",
    "decode_tcvn3",
    "decode_vni",
    "fold",
    "format_date",
    "format_datetime",
    "nfc",
    "parse_date",
    "parse_datetime",
]

VIETNAM = timezone(timedelta(hours=7))


# Unicode's format characters (category Cf): invisible, and carried along when a name is copied
# from Word or a PDF form — a zero-width space, a soft hyphen, a byte order mark, a word joiner,
# bidirectional marks. A registry compares them as characters: "Lan\u200b" is not "Lan".
# Looked for in the planes that hold any (the BMP, the SMP and the tags of plane 14): a scan of
# all 17 took 90 ms at every start of the command line.
_FORMAT_CHARS = frozenset(
    chr(c)
    for plane in (range(0x20000), range(0xE0000, 0xE1000))
    for c in plane
    if unicodedata.category(chr(c)) == "Cf"
)
_NO_FORMAT = {ord(c): None for c in _FORMAT_CHARS}


def _visible(text: str) -> str:
    # Looked for first: text without any (nearly all of it) is not copied by translate().
    return text if _FORMAT_CHARS.isdisjoint(text) else text.translate(_NO_FORMAT)


def nfc(text: str) -> str:
    """NFC with runs of whitespace collapsed, the ends trimmed (names come padded) and invisible
    format characters (zero-width space, soft hyphen, BOM …) removed."""
    # split() and strip() know the same whitespace as re's \s (Py_UNICODE_ISSPACE), at a
    # fraction of a regex's cost on text that is already tidy, as nearly all of it is.
    # Removed before NFC composes: a mark after one ("e\u200b\u0301") is then the letter's.
    return " ".join(unicodedata.normalize("NFC", _visible(text)).split())


# Đ/đ is a letter of its own (a stroke, not a combining mark): NFD leaves it whole.
_STROKE = str.maketrans({"Đ": "D", "đ": "d", "Ð": "D"})


def fold(name: str) -> str:
    """``"Nguyễn Thị Lan"`` → ``"NGUYEN THI LAN"``: upper case, no diacritics, single spaces,
    no invisible format characters."""
    decomposed = unicodedata.normalize("NFD", _visible(name).translate(_STROKE))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.split()).upper()


# --- TCVN3 (TCVN 5712:1993, "ABC") -------------------------------------------------------------
# One byte per precomposed letter. Upper-case toned letters have no code of their own: ABC used a
# separate upper-case font (.VnTimeH) drawing the lower-case codes as capitals, so the bytes alone
# decode to lower case there; only Ă Â Ê Ô Ơ Ư Đ have upper-case codes.
_TCVN3: dict[int, str] = {
    0xA1: "Ă", 0xA2: "Â", 0xA3: "Ê", 0xA4: "Ô", 0xA5: "Ơ", 0xA6: "Ư", 0xA7: "Đ",
    0xA8: "ă", 0xA9: "â", 0xAA: "ê", 0xAB: "ô", 0xAC: "ơ", 0xAD: "ư", 0xAE: "đ",
    0xB5: "à", 0xB6: "ả", 0xB7: "ã", 0xB8: "á", 0xB9: "ạ",
    0xBB: "ằ", 0xBC: "ẳ", 0xBD: "ẵ", 0xBE: "ắ", 0xC6: "ặ",
    0xC7: "ầ", 0xC8: "ẩ", 0xC9: "ẫ", 0xCA: "ấ", 0xCB: "ậ",
    0xCC: "è", 0xCE: "ẻ", 0xCF: "ẽ", 0xD0: "é", 0xD1: "ẹ",
    0xD2: "ề", 0xD3: "ể", 0xD4: "ễ", 0xD5: "ế", 0xD6: "ệ",
    0xD7: "ì", 0xD8: "ỉ", 0xDC: "ĩ", 0xDD: "í", 0xDE: "ị",
    0xDF: "ò", 0xE1: "ỏ", 0xE2: "õ", 0xE3: "ó", 0xE4: "ọ",
    0xE5: "ồ", 0xE6: "ổ", 0xE7: "ỗ", 0xE8: "ố", 0xE9: "ộ",
    0xEA: "ờ", 0xEB: "ở", 0xEC: "ỡ", 0xED: "ớ", 0xEE: "ợ",
    0xEF: "ù", 0xF1: "ủ", 0xF2: "ũ", 0xF3: "ú", 0xF4: "ụ",
    0xF5: "ừ", 0xF6: "ử", 0xF7: "ữ", 0xF8: "ứ", 0xF9: "ự",
    0xFA: "ỳ", 0xFB: "ỷ", 0xFC: "ỹ", 0xFD: "ý", 0xFE: "ỵ",
}  # fmt: skip
_TCVN3_TABLE = str.maketrans({chr(b): u for b, u in _TCVN3.items()})

# --- VNI-Windows -------------------------------------------------------------------------------
# A base ASCII letter followed by a modifier byte: "Nguye\xe3n" is "Nguyễn" (e + circumflex-tilde).
# Modifiers map to Unicode combining marks and NFC composes them; the letters VNI draws with one
# byte (ơ ư đ and the toned i / ỵ) map straight to the letter.
_ACUTE, _GRAVE, _HOOK, _TILDE, _DOT = "\u0301", "\u0300", "\u0309", "\u0303", "\u0323"
_CIRC, _BREVE = "\u0302", "\u0306"
_VNI_LOWER: dict[int, str] = {
    0xF9: _ACUTE, 0xF8: _GRAVE, 0xFB: _HOOK, 0xF5: _TILDE, 0xEF: _DOT,
    0xE2: _CIRC, 0xE1: _CIRC + _ACUTE, 0xE0: _CIRC + _GRAVE, 0xE5: _CIRC + _HOOK,
    0xE3: _CIRC + _TILDE, 0xE4: _CIRC + _DOT,
    0xEA: _BREVE, 0xE9: _BREVE + _ACUTE, 0xE8: _BREVE + _GRAVE, 0xFA: _BREVE + _HOOK,
    0xFC: _BREVE + _TILDE, 0xEB: _BREVE + _DOT,
    0xF4: "ơ", 0xF6: "ư", 0xF1: "đ",
    0xED: "í", 0xEC: "ì", 0xE6: "ỉ", 0xF3: "ĩ", 0xF2: "ị", 0xEE: "ỵ",
}  # fmt: skip
# Upper-case codes sit 0x20 below the lower-case ones (the Latin-1 layout VNI borrowed).
_VNI: dict[int, str] = {
    **_VNI_LOWER,
    **{b - 0x20: (m.upper() if len(m) == 1 and m.isalpha() else m) for b, m in _VNI_LOWER.items()},
}
_VNI_TABLE = str.maketrans({chr(b): u for b, u in _VNI.items()})


def _as_latin1(data: bytes | str) -> str:
    # Legacy text reaches us either as raw bytes or already mis-decoded as Latin-1/cp1252 (the
    # "NguyÔn" seen in old databases); both give the same code points here.
    if isinstance(data, bytes):
        return data.decode("latin-1")
    try:
        return data.encode("cp1252").decode("latin-1")
    except UnicodeEncodeError:
        return data


def decode_tcvn3(data: bytes | str) -> str:
    """TCVN3 (ABC) bytes, or their Latin-1 reading (``"NguyÔn ThÞ Lan"``), to NFC Unicode."""
    return unicodedata.normalize("NFC", _as_latin1(data).translate(_TCVN3_TABLE))


def decode_vni(data: bytes | str) -> str:
    """VNI-Windows bytes, or their Latin-1 reading (``"Nguyeãn Thò Lan"``), to NFC Unicode."""
    return unicodedata.normalize("NFC", _as_latin1(data).translate(_VNI_TABLE))


def decode_legacy(data: bytes | str, encoding: str) -> str:
    """Decode by name: ``"tcvn3"``/``"abc"``, ``"vni"``, or any Python codec (``"utf-8"``).

    Raises ValueError for an unknown encoding or bytes invalid in a Python codec.
    """
    name = encoding.lower().replace("-", "").replace("_", "")
    if name in ("tcvn3", "abc", "tcvn"):
        return decode_tcvn3(data)
    if name in ("vni", "vniwindows", "vniwin"):
        return decode_vni(data)
    if isinstance(data, str):
        return unicodedata.normalize("NFC", data)
    try:
        return unicodedata.normalize("NFC", data.decode(encoding))
    except LookupError as exc:
        raise ValueError(f"unknown encoding {encoding!r}") from exc


# --- dates ---------------------------------------------------------------------------------------
DATE_PATTERNS: dict[str, str] = {
    "yyyyMMdd": "%Y%m%d",
    "dd/MM/yyyy": "%d/%m/%Y",
    "yyyy/MM/dd": "%Y/%m/%d",
    "yyyy-MM-dd": "%Y-%m-%d",
    "yyyyMMddHHmmss": "%Y%m%d%H%M%S",
}
# The strict shape of each pattern, its fields named: strptime alone accepts "2024/1/5" for
# yyyy/MM/dd (registries do not), and costs ten times as much as a match and date().
_FIELDS = {
    "yyyyMMdd": r"(?P<Y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})",
    "dd/MM/yyyy": r"(?P<d>[0-9]{2})/(?P<m>[0-9]{2})/(?P<Y>[0-9]{4})",
    "yyyy/MM/dd": r"(?P<Y>[0-9]{4})/(?P<m>[0-9]{2})/(?P<d>[0-9]{2})",
    "yyyy-MM-dd": r"(?P<Y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})",
    "yyyyMMddHHmmss": r"(?P<Y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})"
    r"(?P<H>[0-9]{2})(?P<M>[0-9]{2})(?P<S>[0-9]{2})",
}
_STRICT = {name: re.compile(fields) for name, fields in _FIELDS.items()}


def _pattern(pattern: str) -> str:
    try:
        return DATE_PATTERNS[pattern]
    except KeyError:
        raise ValueError(f"unknown date pattern {pattern!r}") from None


def format_date(value: date | str, pattern: str) -> str:
    """An ISO date (or :class:`date`) in a registry pattern. Raises ValueError on a bad date."""
    day = date.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(day, datetime):
        day = day.date()
    return day.strftime(_pattern(pattern))


def _fields(text: str, pattern: str, what: str) -> re.Match[str]:
    _pattern(pattern)
    text = text.strip()
    found = _STRICT[pattern].fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a {what} in the form {pattern}")
    return found


def parse_date(text: str, pattern: str = "yyyy-MM-dd") -> date:
    """A registry date string in ``pattern`` as a :class:`date`. Raises ValueError when it is not
    (its shape, or a day the calendar does not have)."""
    f = _fields(text, pattern, "date")
    return date(int(f["Y"]), int(f["m"]), int(f["d"]))


def format_datetime(value: datetime | str, pattern: str = "yyyyMMddHHmmss") -> str:
    """An aware datetime (or ISO string with offset) as Vietnam local time in ``pattern``.

    Raises ValueError for a naive datetime: the registries' compact forms carry no offset, so the
    conversion to Vietnam time must be certain.
    """
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError("a naive datetime cannot be converted to Vietnam time")
    return moment.astimezone(VIETNAM).strftime(_pattern(pattern))


def parse_datetime(text: str, pattern: str = "yyyyMMddHHmmss") -> datetime:
    """A compact registry timestamp (Vietnam local time) as an aware datetime in +07:00.

    Raises ValueError when ``text`` does not match ``pattern``.
    """
    f = _fields(text, pattern, "timestamp")
    if "H" not in f.groupdict():
        return datetime.combine(parse_date(text, pattern), datetime.min.time(), VIETNAM)
    Y, m, d, H, M, S = (int(f[k]) for k in ("Y", "m", "d", "H", "M", "S"))
    return datetime(Y, m, d, H, M, S, tzinfo=VIETNAM)
