"""Audit events: appended in the same transaction as the state change they record.

Each event is serialised to compact JSON that starts with its sequence number and time
(``{"seq":N,"at":"…",…}``, then the event's fields in a fixed order) — the *entry* — and hashed as an
RFC 9162 leaf, ``SHA-256(0x00 || entry)``, so the log is at once a hash chain (``chain_hash`` links
each entry to all before it) and the leaf list of a Merkle tree (see :mod:`gateway.audit.merkle`).
Personal ids never enter the log: :func:`citizen_hash` keys them with a secret held outside it,
and long numbers in an event's free text are withheld.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from gateway.store import Tx

__all__ = [
    "GENESIS",
    "WITHHELD",
    "Actor",
    "AuditEvent",
    "append",
    "citizen_hash",
    "decode_entry",
    "leaf_hash",
    "withhold_numbers",
]

GENESIS = b"\x00" * 32  # the chain hash "before" entry 0


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who did what to which, with what outcome. Payloads are recorded by digest, never by body."""

    action: str  # dossier.accepted, step.attempted, step.delivered, step.failed, job.dead, …
    outcome: str = "ok"  # ok | retry | failed | dead | refused | cancelled
    member: str | None = None  # VN:GOV:000.00.00.H41
    subsystem: str | None = None  # VN:GOV:000.00.00.H41:motcua
    officer: str | None = None  # the officer's id as the client system reported it (hashed)
    service: str | None = None  # population/citizen.lookup/v1 …
    dossier: str | None = None
    document: str | None = None
    job: int | None = None
    step: str | None = None
    citizen: str | None = None  # citizen_hash(), never a personal id
    # The other people the event handed out data of (a citizen lookup's answer names the parents
    # with their personal ids): citizen_hash() -> roles ("father", "mother"). The store indexes
    # them beside ``citizen`` (audit_discloses), so that a search by person finds the event.
    discloses: dict[str, list[str]] = {}
    request_id: str | None = None
    digests: dict[str, str] = {}  # name → sha256 hex of a payload
    reference: str | None = None  # the registry's reference number (a personal one: hashed)
    detail: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who took an operator's action (a correction, a resume, a replay), as every other event
    names its caller: ``member`` is the agency (``VN:GOV:000.00.00.H41``), so that a search by
    member finds its operators' actions too, and ``subsystem`` the caller within it. The command
    line is no member: its actions are ``member`` "cli", ``subsystem`` "cli:<login name>"."""

    member: str
    subsystem: str

    @classmethod
    def cli(cls, user: str) -> Actor:
        return cls("cli", f"cli:{user}")


# Free text in an event (a registry's fault, an operator's reason) can quote a personal id
# ("no citizen 019053987654"), an old 9-digit id, a health-insurance card or a social-insurance
# code. The log is kept for ever and exported in evidence bundles: every run of nine digits or
# more is withheld from ``detail``, also one written in groups of 1 to 4 digits (then 2 to 4)
# split by one space (a no-break one too, as a web page or a word processor writes it), dash or
# dot, the same throughout ("079 198 105 555", "CCCD-079-198-105-555"): a date (2026-12-07, 8
# digits), a time (its colons), a dossier code (its 6-digit date) is no such run. ``reference``
# is not withheld: a registry's reference can hold such a run, no one's (a portal transaction
# id, GD026000000001) or someone's (a health-insurance card number, which holds its holder's
# social-insurance code): a step whose reference is personal has it hashed before it comes here
# (Step.personal_reference).
_LONG_NUMBER = re.compile(
    r"(?<![0-9])(?:[0-9]{9,}|[0-9]{1,4}([ \u00a0\u202f.-])[0-9]{2,4}(?:\1[0-9]{2,4})+)(?![0-9])"
)
WITHHELD = "[number withheld]"

# Nor is an amount of money, written the Vietnamese way ("100.000.000 đồng", "1.500.000.000 VNĐ",
# "2.000.000.000đ"), a fee or an allowance that means nothing without its figure. An amount is
# grouped in threes by dots or by spaces (no-break ones too), the same throughout, after a first
# group of 1 to 3 digits that starts with no 0, and is followed (after one space or none) by a
# currency word: đồng, đ, VND, VNĐ, ₫, in any case. No personal id passes for one: a CCCD starts
# with its province code (001 to 096), a phone number with 0; a social-insurance code or an old
# tax code is never written 1-3-3-3; only a 9-digit CMND fits, written in threes, and a currency
# word is what tells it from one: so at nine digits a word after "đồng" or "đ" (past spaces, "/"
# or ".") withholds the number, since "đồng ý", "đồng bộ", "Đồng Tháp", "đ/c" (an address) can
# follow a CMND: "100.000.000 đồng." is kept, "100.000.000 đồng cho …" is not; VND, VNĐ and ₫
# begin no other word. A leading group of one digit is part of the number ("0 912 345 678"); a
# number grouped otherwise, unbroken, or preceded by more of its digits, is withheld.
_AMOUNT = re.compile(
    r"(?<![0-9][ \u00a0\u202f.-])[1-9][0-9]{0,2}([ \u00a0\u202f.])[0-9]{3}(?:\1[0-9]{3})+"
)
_CURRENCY = re.compile(  # "đồng" also as an NFD source writes it
    r"[ \u00a0\u202f]?(?:vn[dđ]|₫|(đ(?:ồ|ô\u0300|o\u0302\u0300)ng|đ))(?![^\W_]|[\u0300-\u036f])",
    re.IGNORECASE,
)
_PHRASE_GOES_ON = re.compile(r"[\s/.]*[^\W_]")
_CMND_DIGITS = 9


def withhold_numbers(text: str, mark: str = WITHHELD) -> str:
    """``text`` with each run of nine digits or more (see _LONG_NUMBER) ``mark``, but for an
    amount of money (see _AMOUNT): what an event's ``detail`` keeps of free text, and what a log
    line keeps of a registry's words (logs are shipped and read more widely than the audit log,
    which keeps no personal id either)."""

    def withheld(run: re.Match[str]) -> str:
        found = run.group()
        digits = sum(c.isdigit() for c in found)
        if digits < 9 or _ipv4(found) or _amount(run, digits):
            return found  # 2026-12-07: a date; 192.168.100.200: an address; 100.000.000 đồng
        return mark

    return _LONG_NUMBER.sub(withheld, text)


def _amount(run: re.Match[str], digits: int) -> bool:
    """Whether ``run``, a long number in its text, is an amount of money (see _AMOUNT)."""
    text = run.string
    if not _AMOUNT.fullmatch(text, run.start(), run.end()):
        return False
    currency = _CURRENCY.match(text, run.end())
    if currency is None:
        return False
    return not (
        digits == _CMND_DIGITS
        and currency.group(1) is not None
        and _PHRASE_GOES_ON.match(text, currency.end())
    )


def _ipv4(text: str) -> bool:
    """Whether ``text`` is a dotted-quad IPv4 address (no part with a leading 0, as a personal
    id's province code has: 079.198.105.155 is none)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


_encoder = msgspec.json.Encoder()
_sha256 = hashlib.sha256
_HEAD = "audit.head"  # Tx.memo key: (seq, chain_hash) of the last entry this transaction wrote


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of a leaf is SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def citizen_hash(key: bytes, personal_id: str) -> str:
    """The keyed hash under which a personal id is searchable without being stored."""
    return hmac.new(key, personal_id.encode(), hashlib.sha256).hexdigest()


def utc_iso(ns: int) -> str:
    """``ns`` (nanoseconds since the epoch) as ``datetime.isoformat(timespec="microseconds")``
    writes it in UTC, at a quarter of the cost: the text up to the second is formatted once per
    second, then the microseconds are appended."""
    global _second
    sec, us = divmod(ns // 1000, 1_000_000)
    cached = _second  # one read: another thread may replace it (it then holds another second)
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}+00:00"


_second: tuple[int, str] = (-1, "")


def append(tx: Tx, event: AuditEvent, *, at: datetime | None = None) -> int:
    """Append ``event`` inside the caller's transaction; return its sequence number."""
    head: tuple[int, bytes] | None = tx.memo.get(_HEAD)
    if head is None:
        row = tx.one("audit.head")
        head = (-1, GENESIS) if row is None else (row["seq"], bytes(row["chain_hash"]))
    seq = head[0] + 1
    if event.detail is not None and _LONG_NUMBER.search(event.detail):
        event = msgspec.structs.replace(event, detail=withhold_numbers(event.detail))
    when = utc_iso(time.time_ns()) if at is None else at.isoformat(timespec="microseconds")
    # The event's own JSON is '{"action":…}'; the entry puts seq and time first, so a verifier
    # checks an entry's position from its first bytes without parsing it.
    entry = b'{"seq":%d,"at":"%s",' % (seq, when.encode()) + _encoder.encode(event)[1:]
    leaf = _sha256(b"\x00" + entry).digest()  # leaf_hash(entry), inline: appends are hot
    chain = _sha256(head[1] + leaf).digest()
    # Deferred: the store writes a transaction's entries in one batch at commit; the head for the
    # next append in the same transaction comes from the memo, not from a read.
    tx.defer(
        "audit.insert",
        seq=seq,
        at=when,
        action=event.action,
        member=event.member,
        service=event.service,
        dossier=event.dossier,
        document=event.document,
        citizen=event.citizen,
        entry=entry,
        leaf_hash=leaf,
        chain_hash=chain,
    )
    tx.memo[_HEAD] = (seq, chain)
    return seq


def decode_entry(entry: bytes) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(entry)
    return result
