"""Queries over the audit log: events by time, member, service, dossier, document or citizen, paged
with a cursor, and the "who accessed this citizen's data" report.

Personal ids are never stored or put in a cursor: a citizen is searched by its keyed hash
(:func:`gateway.audit.citizen_hash`), computed here from the id and the configured key.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.identifiers import InvalidIdentifier, check_personal_id
from connectors.text import VIETNAM
from gateway.store import Store, Tx

from .events import citizen_hash, decode_entry

__all__ = [
    "EventFilter",
    "EventPage",
    "FilterError",
    "InvalidPersonalId",
    "access_report",
    "normalize_time",
    "query_events",
]

MAX_LIMIT = 1000


class FilterError(ValueError):
    """A filter or cursor is malformed (bad time, bad cursor, limit out of range); ``parameter``
    names it, as the API's query parameter (``from``, ``to``, ``cursor``, ``limit``), when known."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class InvalidPersonalId(FilterError):
    """The personal id to search for is none (not 12 digits, an unknown province): no event can
    hold its hash, since only valid ids are hashed. ``reason`` says what is wrong, without the id."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"personal id: {reason}", parameter="personal_id")
        self.reason = reason


def _times(
    start: str | datetime | None, stop: str | datetime | None
) -> tuple[str | None, str | None]:
    """Both ends of a window, normalised; FilterError naming the one that is wrong."""
    ends = []
    for name, value in (("from", start), ("to", stop)):
        try:
            ends.append(normalize_time(value))
        except FilterError as exc:
            raise FilterError(str(exc), parameter=name) from None
    first, end = ends
    if first is not None and end is not None and first >= end:
        raise FilterError(
            f"the window is empty: from {first} is not before to {end}", parameter="from"
        )
    return first, end


def _citizen(citizen_key: bytes | None, personal_id: str) -> str:
    """The keyed hash a search and the access report look for: the id without blanks around it
    (the report hashed it as given, and told a pasted " 0011…" that no one had accessed it).
    A mistyped id is refused (InvalidPersonalId): the answer would be that no one accessed it."""
    personal_id = personal_id.strip()
    if not personal_id:
        raise FilterError("the personal id to search for is empty", parameter="personal_id")
    try:
        check_personal_id(personal_id)
    except InvalidIdentifier as exc:
        raise InvalidPersonalId(exc.reason) from None
    if not citizen_key:
        raise FilterError("searching by citizen needs audit.citizen_key")
    return citizen_hash(citizen_key, personal_id)


_DAY = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})([+-][0-9]{2}:[0-9]{2})?")


def normalize_time(value: str | datetime | None) -> str | None:
    """An ISO 8601 time in the log's own spelling (UTC, microseconds), so that text comparison in
    SQL is time comparison. A date alone means that day in Vietnam (its 00:00 at +07:00), as the
    province counts its days; with a zone, its midnight there. Raises FilterError if unparsable or
    a time without a time zone (a local time read as UTC would silently shift the window)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        day = _DAY.fullmatch(text)
        try:
            if day:  # (fromisoformat reads "2026-12-06+07:00" as 07:00 with no zone)
                when = datetime.fromisoformat(f"{day[1]}T00:00:00{day[2] or ''}")
                when = when if day[2] else when.replace(tzinfo=VIETNAM)
            else:
                when = datetime.fromisoformat(text)
        except ValueError as exc:
            raise FilterError(f"not an ISO 8601 time: {value!r}") from exc
    else:
        when = value
    if when.tzinfo is None:
        raise FilterError(f"time {value!r} needs a time zone (e.g. +07:00 or Z)")
    try:
        return when.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:  # year 1 east of UTC, or 9999 west of it
        raise FilterError(f"time {value!r} is out of range in UTC") from None


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    start: str | None = None  # ISO 8601, inclusive
    stop: str | None = None  # ISO 8601, exclusive
    member: str | None = None
    service: str | None = None
    dossier: str | None = None
    document: str | None = None
    citizen: str | None = None  # the keyed hash, never the id

    @classmethod
    def build(
        cls,
        *,
        start: str | datetime | None = None,
        stop: str | datetime | None = None,
        member: str | None = None,
        service: str | None = None,
        dossier: str | None = None,
        document: str | None = None,
        personal_id: str | None = None,
        citizen_key: bytes | None = None,
    ) -> EventFilter:
        """Raises FilterError on a bad time or an empty window, or a personal id that is empty
        (a search about no one must not answer with everyone's events) or without the key to
        hash it; InvalidPersonalId on a personal id that is not one."""
        citizen = None if personal_id is None else _citizen(citizen_key, personal_id)
        first, end = _times(start, stop)
        return cls(
            start=first,
            stop=end,
            member=member or None,
            service=service or None,
            dossier=dossier or None,
            document=document or None,
            citizen=citizen,
        )


@dataclass(frozen=True)
class EventPage:
    items: list[dict[str, Any]]  # decoded entries, each with its "seq"
    next: str | None  # opaque cursor for the next page, None at the end


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if not cursor:
        return -1
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, seq = raw.partition(":")
        if tag != "seq" or not (seq.isascii() and seq.isdigit()) or int(seq) >= 2**63:
            raise ValueError(tag)  # a cursor this module never wrote
        return int(seq)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FilterError("malformed cursor", parameter="cursor") from exc


async def query_events(
    store: Store, flt: EventFilter, *, cursor: str | None = None, limit: int = 100
) -> EventPage:
    """One page of matching events in log order. Raises FilterError on a bad cursor or limit."""
    if not 1 <= limit <= MAX_LIMIT:
        raise FilterError(f"limit must be 1..{MAX_LIMIT}", parameter="limit")
    after = _after(cursor)

    def work(tx: Tx) -> list[dict[str, Any]]:
        return tx.all(
            "audit.query",
            after=after,
            start=flt.start,
            stop=flt.stop,
            member=flt.member,
            service=flt.service,
            dossier=flt.dossier,
            document=flt.document,
            citizen=flt.citizen,
            limit=limit + 1,  # one more tells whether there is a next page
        )

    rows = await store.read(work)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [decode_entry(_blob(r["entry"])) for r in rows]
    return EventPage(items, _cursor(rows[-1]["seq"]) if more and rows else None)


def _blob(v: Any) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


async def access_report(
    store: Store,
    citizen_key: bytes,
    personal_id: str,
    *,
    start: str | datetime | None = None,
    stop: str | datetime | None = None,
) -> list[dict[str, Any]]:
    """Who accessed this citizen's data: one row per member, service and action, with a count and
    the first and last time. Raises FilterError on a bad time or an empty key."""
    hashed = _citizen(citizen_key, personal_id)
    s, e = _times(start, stop)
    return await store.read(lambda tx: tx.all("audit.accessors", citizen=hashed, start=s, stop=e))
