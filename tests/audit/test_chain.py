import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, append, citizen_hash, decode_entry, verify_chain
from gateway.audit.events import utc_iso
from gateway.store import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path):
    async with SQLiteStore(tmp_path / "a.db") as s:
        for i in range(20):
            await s.transact(
                lambda tx, i=i: append(tx, AuditEvent(action="test.event", dossier=f"D{i % 3}"))
            )
        yield s


def _tamper(store: SQLiteStore, sql: str) -> None:
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(sql)
    conn.close()


async def test_intact_chain(store: SQLiteStore) -> None:
    report = await verify_chain(store)
    assert report.ok and report.entries == 20


async def test_sequence_and_content(store: SQLiteStore) -> None:
    rows = await store.read(lambda tx: tx.all("audit.by_dossier", dossier="D1"))
    assert [r["seq"] for r in rows] == [1, 4, 7, 10, 13, 16, 19]
    entry = decode_entry(rows[0]["entry"])
    assert entry["action"] == "test.event" and entry["seq"] == 1 and "at" in entry


@pytest.mark.parametrize(
    ("sql", "first_bad", "problem"),
    [
        ("UPDATE audit_events SET entry = replace(entry, 'D1', 'D9') WHERE seq = 7", 7, "modified"),
        ("DELETE FROM audit_events WHERE seq = 5", 5, "removed"),
        ("UPDATE audit_events SET seq = 100 WHERE seq = 3", 3, "removed"),
    ],
)
async def test_tampering_is_located(
    store: SQLiteStore, sql: str, first_bad: int, problem: str
) -> None:
    _tamper(store, sql)
    report = await verify_chain(store)
    assert not report.ok
    assert report.first_bad == first_bad
    assert problem in (report.problem or "")


@pytest.mark.parametrize(
    ("column", "seq", "value", "said"),
    [
        ("dossier", 7, "'D2'", "dossier 'D2' (the entry: 'D1')"),
        ("dossier", 4, "NULL", "dossier None (the entry: 'D1')"),
        ("member", 9, "'VN:GOV:X'", "member 'VN:GOV:X' (the entry: None)"),
        ("service", 3, "'lookups.citizen'", "service 'lookups.citizen' (the entry: None)"),
        ("document", 5, "'DOC'", "document 'DOC' (the entry: None)"),
        ("citizen", 11, "'ab'", "citizen 'ab' (the entry: None)"),
        ("action", 2, "'dossier.accepted'", "action 'dossier.accepted' (the entry: 'test.event')"),
        ("at", 6, "'2020-01-01T00:00:00.000000+00:00'", "at '2020-01-01T00:00:00.000000+00:00'"),
    ],
)
async def test_edited_index_columns_are_located(
    store: SQLiteStore, column: str, seq: int, value: str, said: str
) -> None:
    """Queries, exports and the access report select by the columns beside each entry, which no
    hash covers: a column that no longer says what its entry says is named, at its entry."""
    assert (await verify_chain(store)).ok
    _tamper(store, f"UPDATE audit_events SET {column} = {value} WHERE seq = {seq}")
    report = await verify_chain(store)
    assert (report.ok, report.first_bad, report.entries) == (False, seq, seq)
    assert (report.problem or "").startswith("indexed columns differ from the entry")
    assert said in (report.problem or "")


async def test_recomputed_leaf_still_breaks_the_chain(store: SQLiteStore) -> None:
    # A forger who rewrites an entry AND its leaf hash is caught by the next chain link.
    rows = await store.read(lambda tx: tx.all("audit.range", start=4, stop=5))
    from gateway.audit import leaf_hash

    forged = bytes(rows[0]["entry"]).replace(b"D1", b"D2")
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(
            "UPDATE audit_events SET entry = ?, leaf_hash = ? WHERE seq = 4",
            (forged, leaf_hash(forged)),
        )
    conn.close()
    report = await verify_chain(store)
    assert (report.ok, report.first_bad) == (False, 4)
    assert "chain hash" in (report.problem or "")


async def test_inserted_entry_is_found(store: SQLiteStore) -> None:
    _tamper(
        store,
        "INSERT INTO audit_events (seq, at, action, entry, leaf_hash, chain_hash) "
        "VALUES (20, 'x', 'evil', CAST('{\"seq\":21}' AS BLOB), x'00', x'00')",
    )
    report = await verify_chain(store)
    assert (report.ok, report.first_bad) == (False, 20)


def test_citizen_hash_is_keyed() -> None:
    a = citizen_hash(b"k1", "026092008262")
    assert a == citizen_hash(b"k1", "026092008262")
    assert a != citizen_hash(b"k2", "026092008262")
    assert "026092008262" not in a


@pytest.mark.parametrize(
    "ns",
    [0, 999_999, 1_795_000_000_123_456_789, 1_795_000_000_999_999_999, 1_795_000_001_000_000_000],
)
def test_entry_times_are_isoformat_in_utc(ns: int) -> None:
    # The same second twice, then the next one: the cached prefix must follow the clock.
    expected = (
        datetime.fromtimestamp(ns // 1_000_000_000, UTC)
        + timedelta(microseconds=ns // 1000 % 10**6)
    ).isoformat(timespec="microseconds")
    assert utc_iso(ns) == expected
    assert utc_iso(ns + 1000) == (
        datetime.fromisoformat(expected) + timedelta(microseconds=1)
    ).isoformat(timespec="microseconds")


async def test_appended_entries_carry_the_current_time(store: SQLiteStore) -> None:
    before = datetime.now(UTC)
    seq = await store.transact(lambda tx: append(tx, AuditEvent(action="test.now")))
    after = datetime.now(UTC)
    row = await store.read(lambda tx: tx.one("audit.get", seq=seq))
    assert row is not None
    stamp = datetime.fromisoformat(decode_entry(row["entry"])["at"])
    assert row["at"] == decode_entry(row["entry"])["at"]
    assert before <= stamp <= after
