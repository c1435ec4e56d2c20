"""The people an audit entry disclosed besides its citizen (a citizen lookup's answer names the
parents with their personal ids), on both backends: one entry holds their keyed hashes, the store
indexes them (``audit_discloses``), every search by person finds the entry through that index, and
``audit verify`` finds a row of it removed, added or altered, naming the entry.

Before, each disclosed person had an entry of their own (``lookup.discloses``): a lookup wrote three
entries, and its p99 tripled. Logs holding such entries stay valid and searchable.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from gateway.audit import AuditEvent, append, citizen_hash, verify_chain
from gateway.audit import verify as verify_module
from gateway.audit.query import EventFilter, access_report, query_events
from gateway.audit.verify import verify_log
from gateway.store import Store, open_store

KEY = b"k" * 32
CHILD, FATHER, MOTHER, OTHER = "001204000001", "001080000002", "001182000003", "079090000004"
SUBSYSTEM = "VN:GOV:000.00.00.H41:motcua"


def _hash(personal_id: str) -> str:
    return citizen_hash(KEY, personal_id)


def _lookup(**fields: Any) -> AuditEvent:
    return AuditEvent(
        **{
            "action": "lookup.citizen",
            "member": "VN:GOV:000.00.00.H41",
            "subsystem": SUBSYSTEM,
            "service": "lookups.citizen",
            "citizen": _hash(CHILD),
            "detail": "population/citizen.lookup",
            **fields,
        }
    )


DISCLOSING = _lookup(discloses={_hash(FATHER): ["father"], _hash(MOTHER): ["mother"]})


async def _log(store: Store, *events: AuditEvent) -> None:
    for event in events:
        await store.transact(lambda tx, e=event: append(tx, e))


async def _found(store: Store, personal_id: str) -> list[tuple[int, str]]:
    page = await query_events(store, EventFilter.build(personal_id=personal_id, citizen_key=KEY))
    return [(e["seq"], e["action"]) for e in page.items]


def _tamper(store_url: str, sql: str) -> None:
    """Change the store behind the gateway's back, as someone with access to the database can."""
    if store_url.startswith("sqlite:"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with conn:
            conn.executescript(sql)
        conn.close()
        return
    with psycopg.connect(store_url, autocommit=True) as pg:
        pg.execute(sql.encode())


async def test_one_entry_holds_the_people_it_disclosed_and_each_finds_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _log(store, _lookup(), DISCLOSING, _lookup(citizen=_hash(OTHER)))
    entries = await store.read(lambda tx: tx.all("audit.range", start=0, stop=10))
    assert len(entries) == 3
    assert b'"discloses":{"' in bytes(entries[1]["entry"])
    assert b"discloses" not in bytes(entries[0]["entry"])  # omitted when no one: as before
    assert await _found(store, FATHER) == [(1, "lookup.citizen")]
    assert await _found(store, MOTHER) == [(1, "lookup.citizen")]
    assert await _found(store, CHILD) == [(0, "lookup.citizen"), (1, "lookup.citizen")]
    assert await _found(store, OTHER) == [(2, "lookup.citizen")]
    for parent in (FATHER, MOTHER):
        [row] = await access_report(store, KEY, parent)
        assert (row["member"], row["service"], row["action"], row["n"]) == (
            "VN:GOV:000.00.00.H41",
            "lookups.citizen",
            "lookup.discloses",  # named as a parent: not looked up themselves
            1,
        )
    [row] = await access_report(store, KEY, CHILD)  # the child was looked up, twice
    assert (row["action"], row["n"]) == ("lookup.citizen", 2)

    # The log verifies, each page in one piece (no fallback to the row-by-row check).
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page was checked row by row")

    monkeypatch.setattr(verify_module, "verify_rows", never)
    report = await verify_log(store)
    assert report.ok and report.entries == 3, report.problems
    assert (await verify_chain(store)).ok


async def test_an_old_lookup_discloses_entry_is_still_found_and_verifies(store: Store) -> None:
    """Entries of the version that logged an event per person disclosed (its citizen column)."""
    old = AuditEvent(
        action="lookup.discloses",
        member="VN:GOV:000.00.00.H41",
        subsystem=SUBSYSTEM,
        service="lookups.citizen",
        citizen=_hash(FATHER),
        detail="discloses the father",
    )
    await _log(store, _lookup(), old, DISCLOSING)
    assert await _found(store, FATHER) == [(1, "lookup.discloses"), (2, "lookup.citizen")]
    actions = {r["action"]: r["n"] for r in await access_report(store, KEY, FATHER)}
    assert actions == {"lookup.discloses": 2}  # the old event and the new one count alike
    report = await verify_log(store)
    assert report.ok and report.entries == 3, report.problems


# Each row of the index is compared with its entry: entry 1 discloses the father and the mother.
_FATHERS = "'" + _hash(FATHER) + "'"
_OTHERS = "'" + _hash(OTHER) + "'"


@pytest.mark.parametrize(
    ("sql", "entry", "words"),
    [
        (f"DELETE FROM audit_discloses WHERE citizen = {_FATHERS}", 1, "without " + _hash(FATHER)),
        (
            f"INSERT INTO audit_discloses (citizen, seq) VALUES ({_OTHERS}, 1)",
            1,
            f"with {_hash(OTHER)}, whom the entry does not name",
        ),
        (
            f"INSERT INTO audit_discloses (citizen, seq) VALUES ({_OTHERS}, 2)",
            2,
            f"with {_hash(OTHER)}, whom the entry does not name",
        ),
        (
            f"UPDATE audit_discloses SET citizen = {_OTHERS} WHERE citizen = {_FATHERS}",
            1,
            f"without {_hash(FATHER)}; with {_hash(OTHER)}",
        ),
        (f"UPDATE audit_discloses SET seq = 0 WHERE citizen = {_FATHERS}", 0, "with "),
        (
            f"INSERT INTO audit_discloses (citizen, seq) VALUES ({_OTHERS}, 3)",
            3,
            "for entry 3, which is not in the log",
        ),
        (
            f"INSERT INTO audit_discloses (citizen, seq) VALUES ({_OTHERS}, -1)",
            -1,
            "for entry -1, which is not in the log",
        ),
    ],
    ids=["removed", "added", "added-to-another", "altered", "moved", "beyond-the-log", "before"],
)
async def test_a_row_of_the_index_removed_added_or_altered_is_found_and_located(
    store: Store, store_url: str, sql: str, entry: int, words: str
) -> None:
    await _log(store, _lookup(), DISCLOSING, _lookup(citizen=_hash(OTHER)))
    assert (await verify_log(store)).ok
    _tamper(store_url, sql)
    report = await verify_log(store)
    assert not report.ok and report.first_bad_entry == entry, report.problems
    assert words in report.problems[0] and "audit_discloses" in report.problems[0]
    chain = await verify_chain(store)
    assert not chain.ok and chain.first_bad == entry and words in (chain.problem or "")


async def test_a_store_of_the_previous_version_gets_the_index_on_open(store_url: str) -> None:
    async with open_store(store_url) as store:
        await _log(store, _lookup())
    if store_url.startswith("sqlite:"):
        _tamper(store_url, "DROP TABLE audit_discloses; DROP TRIGGER audit_discloses_index")
    else:
        _tamper(
            store_url,
            "DROP TABLE audit_discloses; DROP FUNCTION lienthong_audit_discloses() CASCADE;"
            "UPDATE lienthong_schema SET digest = 'an earlier version'",
        )
    async with open_store(store_url, readonly=True) as old:
        # An auditor's reading of the old store (opened read-only: nothing may be created in it).
        assert await _found(old, CHILD) == [(0, "lookup.citizen")]
        assert await _found(old, FATHER) == []
        report = await verify_log(old)
        assert report.ok and report.entries == 1, report.problems
    async with open_store(store_url) as store:
        await _log(store, DISCLOSING)
        assert await _found(store, FATHER) == [(1, "lookup.citizen")]
        report = await verify_log(store)
        assert report.ok and report.entries == 2, report.problems


# SQLite's alone: PostgreSQL types the column, and '1' cannot be stored beside the entries' seq.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("seq", ["'1'", "X'31'"], ids=["text", "blob"])
async def test_a_row_whose_seq_is_not_stored_as_a_number_is_found(
    store: Store, store_url: str, seq: str
) -> None:
    """SQLite compares a column of no type by its value's own type: a table made again without
    one (the writer of the database can) holds '1' as text, which the search by person matches
    with entry 1 (the entries' seq converts it) but which sorts after every number, outside the
    pages the verifier reads. It is no entry's number: found, at the entry it points to."""
    await _log(store, _lookup(), DISCLOSING, _lookup(citizen=_hash(OTHER)))
    _tamper(
        store_url,
        "ALTER TABLE audit_discloses RENAME TO kept;"
        "CREATE TABLE audit_discloses (citizen TEXT NOT NULL, seq NOT NULL,"
        " PRIMARY KEY (citizen, seq)) WITHOUT ROWID;"
        "INSERT INTO audit_discloses SELECT citizen, seq FROM kept; DROP TABLE kept;"
        f"INSERT INTO audit_discloses (citizen, seq) VALUES ({_OTHERS}, {seq})",
    )
    if seq == "'1'":  # the invented disclosure a search by that person now finds
        assert await _found(store, OTHER) == [(1, "lookup.citizen"), (2, "lookup.citizen")]
    log, chain = await verify_log(store), await verify_chain(store)
    entry = 1 if seq == "'1'" else 3  # the entry the search finds it with, or the log's end
    assert not log.ok and log.first_bad_entry == entry, log.problems
    assert not chain.ok and chain.first_bad == entry, chain.problem
    assert "audit_discloses" in log.problems[0] and "not an entry's number" in log.problems[0]
    # The row-by-row check compares each entry with the rows its seq matches, as the search does.
    assert "audit_discloses" in (chain.problem or "") and _hash(OTHER) in (chain.problem or "")


# SQLite's alone: PostgreSQL's text column converts a bytea given to it to text ('\x…'), which
# the altered-row case above covers; SQLite keeps a blob a blob, whatever the column's type.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("sql", "entry", "words"),
    [
        (
            f"UPDATE audit_discloses SET citizen = CAST(citizen AS BLOB) WHERE citizen = {_FATHERS}",
            1,
            f"without {_hash(FATHER)}; with X'{_hash(FATHER).encode().hex().upper()}'",
        ),
        (
            "INSERT INTO audit_discloses (citizen, seq) VALUES (X'00FF', 2)",
            2,
            "with X'00FF' (stored as bytes, not text: a search by person finds no one by it), "
            "whom the entry does not name",
        ),
    ],
    ids=["altered", "added"],
)
async def test_a_row_of_the_index_whose_citizen_is_a_blob_is_found_as_altered(
    store: Store, store_url: str, sql: str, entry: int, words: str
) -> None:
    """A blob in audit_discloses' citizen column was reported as a row the store cannot read, not
    as what it is: the index differing from the entry (a search by person, which compares text,
    never finds the entry by it)."""
    await _log(store, _lookup(), DISCLOSING, _lookup(citizen=_hash(OTHER)))
    _tamper(store_url, sql)
    if entry == 1:  # the disclosure of the father, hidden from a search by him
        assert await _found(store, FATHER) == []
    report = await verify_log(store)
    assert not report.ok and report.first_bad_entry == entry, report.problems
    assert "the store cannot read it" not in report.problems[0]
    assert "audit_discloses" in report.problems[0] and words in report.problems[0]
    chain = await verify_chain(store)
    assert not chain.ok and chain.first_bad == entry and words in (chain.problem or "")
