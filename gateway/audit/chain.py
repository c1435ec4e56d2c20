"""Walk the hash chain and name the first entry that was modified, removed or inserted — or whose
indexed columns no longer say what the entry says.

The hash covers only the entry. Queries, exports and the access report select by the columns stored
beside it (time, action, member, service, dossier, document, citizen), so an edited column rewrites
their answers without touching a hash: each entry's own fields are compared with its columns. So
are the rows of ``audit_discloses`` (the people an entry disclosed, which a search by person also
finds it by) with its ``discloses``: a row removed would hide a disclosure, one added invent one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.store import Row, Store, Tx

from .events import GENESIS

__all__ = [
    "DISCLOSES_OUTSIDE",
    "INDEXED",
    "PAGE_QUERY",
    "VERIFY_QUERY",
    "ChainReport",
    "out_of_sequence",
    "verify_chain",
    "verify_page",
    "verify_rows",
]

_PAGE = 5000

# The block the verifiers read the log with: seq, entry, leaf_hash, chain_hash, then the columns
# stored beside each entry for queries, in this order, then its rows of audit_discloses.
VERIFY_QUERY = "audit.verify_range"
# The same range as one row, for verify_page: n, first, last, odd, entries, leaves, chains, columns,
# and the range's rows of audit_discloses.
PAGE_QUERY = "audit.verify_page"
# The first row of audit_discloses that names no entry of a log of ``size`` entries, if any.
DISCLOSES_OUTSIDE = "audit.discloses_outside"
INDEXED = ("at", "action", "member", "service", "dossier", "document", "citizen")


class _Indexed(msgspec.Struct, gc=False):
    """An entry's fields that have a column (the rest are skipped while decoding)."""

    at: str | None = None
    action: str | None = None
    member: str | None = None
    service: str | None = None
    dossier: str | None = None
    document: str | None = None
    citizen: str | None = None
    discloses: dict[str, Any] | None = None  # indexed in audit_discloses: only its keys


_decode_indexed = msgspec.json.Decoder(_Indexed).decode
_encode = msgspec.json.encode
_decode = msgspec.json.decode


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad: int | None = None  # sequence number of the first entry that fails
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries"
        return f"audit chain broken at entry {self.first_bad}: {self.problem}"


def verify_rows(
    rows: Sequence[tuple[Any, ...]],
    *,
    start_seq: int = 0,
    prev: bytes = GENESIS,
    leaves: bytearray | None = None,
) -> ChainReport:
    """Check rows of :data:`VERIFY_QUERY`, tuples ``(seq, entry, leaf_hash, chain_hash, *INDEXED,
    discloses)`` in ``seq`` order (:meth:`~gateway.store.Tx.tuples`): each entry in its place, its
    hashes, its :data:`INDEXED` columns equal to its own fields and its rows of audit_discloses
    (``discloses``: their citizens as a JSON array, or None) to its ``discloses``; stop at the
    first that fails. The leaf hash of each good row is added to ``leaves``, back to back (for
    :meth:`MerkleTree.extend_packed`).

    The loop is the verifier's hot path (hundreds of thousands of entries): tuples unpacked in
    one step, not dicts, names bound locally, the two hashes computed inline.
    """
    sha256 = hashlib.sha256
    decode = _decode_indexed
    out = bytearray() if leaves is None else leaves
    expected, count = start_seq, 0
    for (
        seq,
        entry,
        stored_leaf,
        stored_chain,
        at,
        action,
        member,
        service,
        dossier,
        document,
        citizen,
        disclosed,
    ) in rows:
        if type(entry) is not bytes:
            # A hand-edited entry may come back as TEXT; hash what is stored, whatever its type.
            entry = entry.encode() if isinstance(entry, str) else bytes(entry)
        if seq != expected:
            return ChainReport(False, count, expected, out_of_sequence(expected, seq))
        if not entry.startswith(b'{"seq":%d,' % seq):
            return ChainReport(False, count, seq, _misplaced(entry, seq))
        leaf = sha256(b"\x00" + entry).digest()  # RFC 9162 leaf hash, as leaf_hash()
        if leaf != stored_leaf:
            return ChainReport(False, count, seq, "entry content was modified")
        prev = sha256(prev + leaf).digest()
        if prev != stored_chain:
            return ChainReport(
                False, count, seq, "chain hash does not follow from the previous entry"
            )
        try:
            f = decode(entry)
        except msgspec.DecodeError:  # ValidationError too: a field of another type
            return ChainReport(False, count, seq, "entry is not in the log's form")
        if (
            f.at != at
            or f.action != action
            or f.member != member
            or f.service != service
            or f.dossier != dossier
            or f.document != document
            or f.citizen != citizen
        ):
            columns = (at, action, member, service, dossier, document, citizen)
            return ChainReport(False, count, seq, _columns_differ(f, columns))
        if (f.discloses or disclosed is not None) and (
            problem := _disclosures_differ(f.discloses, disclosed)
        ):
            return ChainReport(False, count, seq, problem)
        out += leaf
        expected += 1
        count += 1
    return ChainReport(True, count)


def verify_page(
    page: Sequence[Any], *, start_seq: int, prev: bytes, leaves: bytearray
) -> bytes | None:
    """Check a page of the log as one row of :data:`PAGE_QUERY` holds it, from ``prev``, the
    chain hash before it: what :func:`verify_rows` checks, each entry's columns compared as JSON
    arrays, and the page's rows of audit_discloses with the people its entries disclose, at once
    (an entry that discloses no one costs nothing more). Returns the chain hash of its last
    entry, the page's leaf hashes added to ``leaves`` — or None, with ``leaves`` untouched, when
    anything in the page fails or cannot be checked this way: then :func:`verify_rows`, on the
    same range, says what and where (a row of audit_discloses past the log's last entry, which
    no entry of the page can be compared with: :data:`DISCLOSES_OUTSIDE`).

    Why: reading a row per entry cost about as much as checking it (~2 us), and took the GIL back
    for each, so the next page could not be read while this one was checked. The store builds
    this row in one call that does not hold it. Equal arrays mean equal columns (each side is a
    JSON encoding of its own values), so the check is exact; arrays that differ only in how they
    escape a character fall back to the row-by-row check.
    """
    n, first, last, odd, entries, leaf_hashes, chain_hashes, columns, disclosed = page
    if not n or first != start_seq or last - first + 1 != n or odd:
        return None
    split_entries, split_columns = bytes(entries).split(b"\n"), bytes(columns).split(b"\n")
    if len(split_entries) != n or len(split_columns) != n:
        return None
    sha256, decode, encode = hashlib.sha256, _decode_indexed, _encode
    ours, chains = bytearray(), bytearray()
    said: list[list[Any]] = []  # [seq, citizen] of each person the entries disclose, in order
    for seq, entry, stored in zip(
        range(start_seq, start_seq + n), split_entries, split_columns, strict=True
    ):
        if not entry.startswith(b'{"seq":%d,' % seq):
            return None
        leaf = sha256(b"\x00" + entry).digest()
        prev = sha256(prev + leaf).digest()
        ours += leaf
        chains += prev
        try:
            f = decode(entry)
        except msgspec.DecodeError:
            return None
        if (
            encode((f.at, f.action, f.member, f.service, f.dossier, f.document, f.citizen))
            != stored
        ):
            return None
        if f.discloses:
            said.extend([seq, c] for c in sorted(f.discloses))
    if ours != leaf_hashes or chains != chain_hashes:
        return None
    try:
        if _decode(disclosed) != said:
            return None
    except (msgspec.DecodeError, TypeError):
        return None
    leaves += ours
    return prev


def out_of_sequence(expected: int, found: Any) -> str:
    """Why the entry stored where ``expected`` should be is ``found``: a gap (entries removed, or
    one inserted with a later sequence number) or a row out of order."""
    if isinstance(found, int) and found > expected:
        gone = f"entry {expected}" if found == expected + 1 else f"entries {expected}..{found - 1}"
        after = (
            f"the next entry stored after entry {expected - 1}" if expected else "the first entry"
        )
        return (
            f"missing: {after} has seq {found} ({gone} removed, or entry {found} inserted out of "
            "sequence)"
        )
    return f"missing: in its place is seq {found!r} (inserted or reordered)"


def _columns_differ(fields: _Indexed, columns: tuple[Any, ...]) -> str:
    said = [
        f"{name} {column!r} (the entry: {getattr(fields, name)!r})"
        for name, column in zip(INDEXED, columns, strict=True)
        if getattr(fields, name) != column
    ]
    return (
        "indexed columns differ from the entry, so queries, exports and the access report "
        "read something else than what was logged: " + ", ".join(said)
    )


def _disclosures_differ(said: dict[str, Any] | None, stored: str | bytes | None) -> str | None:
    """Why an entry's rows of audit_discloses (``stored``: their citizens, a JSON array) are not
    the people its ``discloses`` names, or None when they are."""
    try:
        indexed = [] if stored is None else _decode(stored)
        if not isinstance(indexed, list):
            raise TypeError
        people = [c for c in indexed if isinstance(c, str)]
        blobs = [_blob(c) for c in indexed if not isinstance(c, str)]
    except (msgspec.DecodeError, TypeError):
        return f"its disclosures' index cannot be read: {stored!r}"
    named = sorted(said or ())
    if not blobs and sorted(people) == named:
        return None
    missing, extra = sorted(set(named) - set(people)), sorted(set(people) - set(named))
    how = [f"without {', '.join(missing)}"] if missing else []
    extra += [
        f"{b} (stored as bytes, not text: a search by person finds no one by it)" for b in blobs
    ]
    how += [f"with {', '.join(extra)}, whom the entry does not name"] if extra else []
    return (
        "the index of the people it disclosed (audit_discloses) differs from the entry, so a "
        "search by person finds something else than what was logged: "
        + ("; ".join(how) or f"a person listed twice: {indexed}")
    )


def _blob(item: Any) -> str:
    """A citizen audit.verify_range found stored as a blob (``{"blob": hex}``), as SQL writes a
    blob (X'…'). Raises TypeError for anything else."""
    if isinstance(item, dict) and item.keys() == {"blob"} and isinstance(item["blob"], str):
        return f"X'{item['blob']}'"
    raise TypeError(item)


def discloses_outside(row: Row | None, size: int) -> tuple[int, str] | None:
    """The entry a row of :data:`DISCLOSES_OUTSIDE` (a log of ``size`` entries) is reported at,
    and why it is wrong; None for no row."""
    if row is None:
        return None
    seq, citizen, entry = row["seq"], row["citizen"], row["entry"]
    if type(seq) is not int and type(seq) is not float:
        # Stored as text or a blob: the verifier's pages never hold it, the search may.
        finds = (
            "a row no writer makes" if entry is None else f"a search by them finds entry {entry}"
        )
        return (size if entry is None else entry), (
            f"audit_discloses names a person ({citizen!r}) with a seq that is not an entry's "
            f"number ({seq!r}): {finds}"
        )
    return int(entry), (
        f"audit_discloses names a person ({citizen!r}) for entry {seq}, which is "
        "not in the log: a search by that person would find the entry appended there"
    )


def _misplaced(entry: bytes, seq: int) -> str:
    """Why an entry does not begin with its own sequence number (the slow path: it failed)."""
    try:
        claimed = msgspec.json.decode(entry)["seq"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return "entry is not valid JSON"
    if claimed == seq:
        return "entry is not in the log's form (it must begin with its sequence number)"
    return f"entry says it is {claimed}: moved or inserted"


async def verify_chain(store: Store) -> ChainReport:
    """Verify the whole log page by page, each page read off the event loop."""
    start, prev, total = 0, GENESIS, 0

    def page(tx: Tx) -> list[tuple[Any, ...]]:
        return tx.tuples(VERIFY_QUERY, start=start, stop=start + _PAGE)

    def outside(tx: Tx) -> Row | None:
        return tx.one(DISCLOSES_OUTSIDE, size=total)

    while True:
        rows = await store.read(page)
        if not rows:
            orphan = discloses_outside(await store.read(outside), total)
            if orphan is not None:
                return ChainReport(False, total, *orphan)
            return ChainReport(True, total)
        report = verify_rows(rows, start_seq=start, prev=prev)
        if not report.ok:
            return ChainReport(False, total + report.entries, report.first_bad, report.problem)
        total += report.entries
        start += len(rows)
        prev = bytes(rows[-1][3])
