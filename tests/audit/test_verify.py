"""Tamper tests on the real store: each kind of tampering is found by ``verify_log`` and located."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.audit import leaf_hash
from gateway.audit import verify as verify_module
from gateway.audit.chain import PAGE_QUERY, VERIFY_QUERY, verify_page
from gateway.audit.checkpoints import DEFAULT_ORIGIN, Checkpointer, key_fingerprint
from gateway.audit.events import GENESIS
from gateway.audit.verify import verify_log
from gateway.store import SQLiteStore, StoreError
from signing.testing import TestPKI
from tests.audit.test_checkpoints import (  # noqa: F401 - fixtures
    add_events,
    pki,
    store,
    tamper,
    tsa_url,
)


@pytest.fixture
async def logged(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> SQLiteStore:
    """25 events, checkpoints at 10, 20 and 25."""
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    tamper(store, "DELETE FROM audit_events WHERE seq >= 10")
    for upto in (10, 20, 25):
        await add_events(store, upto - (await _count(store)), first=await _count(store))
        assert (await cpr.checkpoint_now()) is not None
    return store


async def _count(store: SQLiteStore) -> int:
    row = await store.read(lambda tx: tx.one("audit.count"))
    return int(row["n"]) if row else 0


async def test_intact(logged: SQLiteStore, pki: TestPKI) -> None:
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints) == (25, 3)
    assert all(c["ok"] and c["tsa"] for c in report.checked)
    assert "intact" in report.describe()


@pytest.mark.parametrize(
    ("sql", "entry", "words"),
    [
        (
            "UPDATE audit_events SET entry = replace(entry, 'D1', 'D3') WHERE seq = 13",
            13,
            "modified",
        ),
        ("DELETE FROM audit_events WHERE seq = 7", 7, "removed"),
        (
            "UPDATE audit_events SET seq = -1 WHERE seq = 4; "
            "UPDATE audit_events SET seq = 4 WHERE seq = 5; "
            "UPDATE audit_events SET seq = 5 WHERE seq = -1",
            4,
            "moved",
        ),
    ],
    ids=["modify", "delete", "reorder"],
)
async def test_entry_tampering_located(
    logged: SQLiteStore, pki: TestPKI, sql: str, entry: int, words: str
) -> None:
    for stmt in sql.split("; "):
        tamper(logged, stmt)
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert not report.ok
    assert report.first_bad_entry == entry
    assert words in report.problems[0]
    # The checkpoints past the break can no longer be matched to the log.
    assert report.first_bad_checkpoint is not None and report.first_bad_checkpoint > entry


async def test_insert_located(logged: SQLiteStore, pki: TestPKI) -> None:
    # Shift 15.. up by one and slip a forged entry in at 15.
    for seq in range(24, 14, -1):
        tamper(logged, f"UPDATE audit_events SET seq = {seq + 1} WHERE seq = {seq}")
    forged = b'{"seq":15,"at":"2026-01-01T00:00:00+00:00","action":"evil"}'
    tamper(
        logged,
        "INSERT INTO audit_events (seq, at, action, entry, leaf_hash, chain_hash) "
        "VALUES (15, 'x', 'evil', ?, ?, zeroblob(32))",
        forged,
        leaf_hash(forged),
    )
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 15 and "chain hash" in report.problems[0]


async def test_truncation_caught_by_latest_checkpoint(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(logged, "DELETE FROM audit_events WHERE seq >= 22")
    report = await verify_log(logged, pki.trust(revocation="off"))
    # The chain of what is left is perfect: only the checkpoint can tell.
    assert report.first_bad_entry is None
    assert report.first_bad_checkpoint == 25
    assert "entries 22..24 were removed (log truncated)" in report.problems[0]


async def test_rewritten_log_caught_by_checkpoint_root(logged: SQLiteStore, pki: TestPKI) -> None:
    # A forger who rewrites entry 12 and recomputes every leaf and chain hash after it.
    import hashlib

    rows = await logged.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    prev = bytes(rows[11]["chain_hash"])
    for row in rows[12:]:
        entry = bytes(row["entry"])
        if row["seq"] == 12:
            entry = entry.replace(b"VN:GOV:M0", b"VN:GOV:M9")
        leaf = leaf_hash(entry)
        prev = hashlib.sha256(prev + leaf).digest()
        tamper(
            logged,
            "UPDATE audit_events SET entry = ?, leaf_hash = ?, chain_hash = ? WHERE seq = ?",
            entry,
            leaf,
            prev,
            row["seq"],
        )
    tamper(logged, "UPDATE audit_events SET member = 'VN:GOV:M9' WHERE seq = 12")  # its column too
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry is None  # the chain is self-consistent again
    assert report.first_bad_checkpoint == 20
    assert "an entry in 10..19 was altered" in report.problems[0]


async def test_forged_checkpoint(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(
        logged,
        "UPDATE audit_events SET entry = replace(entry, 'D1', 'D3') WHERE seq = 21",
    )
    # The forger also edits the checkpoint's root column and note to match: no valid signature.
    tamper(
        logged,
        "UPDATE audit_checkpoints SET note = replace(note, '\n25\n', '\n26\n') WHERE size = 25",
    )
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 21
    bad = [c for c in report.checked if not c["ok"]]
    assert bad[0]["size"] == 25 and "signature" in bad[0]["problem"]


async def test_forged_root_column(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(logged, "UPDATE audit_checkpoints SET root = zeroblob(32) WHERE size = 10")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_checkpoint == 10
    assert "differ from the signed note" in report.problems[0]


async def test_swapped_timestamp(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(
        logged,
        "UPDATE audit_checkpoints SET timestamp = "
        "(SELECT timestamp FROM audit_checkpoints WHERE size = 10) WHERE size = 20",
    )
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry is None and report.first_bad_checkpoint == 20
    assert "timestamp" in report.problems[0]
    # Without trust anchors timestamps are not checked: the report must not claim they were.
    untrusted = await verify_log(logged)
    assert untrusted.ok and all(c["tsa"] is None for c in untrusted.checked)


async def test_empty_log(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "e.db") as s:
        report = await verify_log(s)
    assert report.ok and report.entries == 0


# --- who signed: pinned to the audit signer, or one signer per log ------------------------------


async def test_pinned_signer(logged: SQLiteStore, pki: TestPKI, tsa_url: str) -> None:
    gateway = pki.certificate("gateway")
    report = await verify_log(logged, pki.trust(revocation="off"), signers=[gateway])
    assert report.ok and report.signer_pinned, report.problems
    assert not [n for n in report.notes if "signer" in n]
    assert report.signers == [
        {"name": "gateway", "key_sha256": key_fingerprint(gateway), "origin": DEFAULT_ORIGIN}
    ]
    # A checkpoint made by an agency's key (it chains to the same anchor, with a signing usage).
    await add_events(logged, 2, first=25)
    agency = Checkpointer(logged, pki.key("agency-000.00.11.H53"), tsa_url=tsa_url)
    assert await agency.checkpoint_now() is not None
    report = await verify_log(logged, pki.trust(revocation="off"), signers=[gateway])
    assert report.first_bad_checkpoint == 27 and report.first_bad_entry is None
    assert report.problems == [
        "checkpoint 27: signed by agency-000.00.11.H53 [key sha256:"
        f"{key_fingerprint(pki.certificate('agency-000.00.11.H53'))[:16]}], not by the audit "
        f"signer (gateway [key sha256:{key_fingerprint(gateway)[:16]}])"
    ]
    # Unpinned, a log still has one signer: the key of its first checkpoint.
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert not report.signer_pinned and report.first_bad_checkpoint == 27
    assert "a log has one audit signer" in report.problems[0]
    assert [n for n in report.notes if "signer" in n] == [
        "signer not pinned (checked against the trust anchors only, which any certificate "
        f"issued under them satisfies): signed by gateway [key sha256:{key_fingerprint(gateway)[:16]}]"
    ]
    # Several keys (a key the gateway replaced, and the new one) may be pinned together.
    both = [gateway, pki.certificate("agency-000.00.11.H53")]
    report = await verify_log(logged, pki.trust(revocation="off"), signers=both)
    assert report.ok and [s["name"] for s in report.signers] == ["gateway", "agency-000.00.11.H53"]


async def test_pinned_origin(logged: SQLiteStore, pki: TestPKI) -> None:
    report = await verify_log(logged, pki.trust(revocation="off"), origin="other/log")
    assert [c["problem"] for c in report.checked] == [
        f"origin {DEFAULT_ORIGIN!r} is not the log's ('other/log')"
    ] * 3
    assert (await verify_log(logged, origin=DEFAULT_ORIGIN)).ok


# --- the columns beside each entry: what queries, exports and the access report select by -------


async def test_edited_columns_are_found(logged: SQLiteStore, pki: TestPKI) -> None:
    """Two of D1's events moved to D2 and a citizen's lookup hidden from the access report, by
    editing the indexed columns only: no hash changes, and the log is reported at the first."""
    tamper(logged, "UPDATE audit_events SET dossier = 'D2', member = 'M9' WHERE seq IN (13, 17)")
    tamper(logged, "UPDATE audit_events SET citizen = NULL WHERE seq = 21")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 13
    assert report.problems[0] == (
        "entry 13: indexed columns differ from the entry, so queries, exports and the access "
        "report read something else than what was logged: member 'M9' (the entry: 'VN:GOV:M1'), "
        "dossier 'D2' (the entry: 'D1')"
    )
    tamper(logged, "UPDATE audit_events SET dossier = 'D1', member = 'VN:GOV:M1' WHERE seq = 13")
    tamper(logged, "UPDATE audit_events SET dossier = 'D1', member = 'VN:GOV:M2' WHERE seq = 17")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 21 and "citizen None (the entry: 'ccc" in report.problems[0]


# --- the page form: a page read in one piece is never taken for more than its rows say ----------


async def _fast_page(store: SQLiteStore, start: int, stop: int) -> bytes | None:
    """What verify_page says of entries [start, stop): the chain hash of the last, or None."""
    prev = (
        GENESIS
        if start == 0
        else bytes(
            (await store.read(lambda tx: tx.tuples(VERIFY_QUERY, start=start - 1, stop=start)))[0][
                3
            ]
        )
    )
    (page,) = await store.read(lambda tx: tx.tuples(PAGE_QUERY, start=start, stop=stop))
    return verify_page(page, start_seq=start, prev=prev, leaves=bytearray())


@pytest.mark.parametrize(
    ("sql", "entry", "words"),
    [
        (  # a newline inside an entry would split it in two
            "UPDATE audit_events SET entry = CAST(replace(CAST(entry AS TEXT), ',\"action\"',"
            " char(10) || ',\"action\"') AS BLOB) WHERE seq = 7",
            7,
            "modified",
        ),
        (  # json_array refuses a blob: the page cannot be built in one piece
            "UPDATE audit_events SET dossier = CAST(dossier AS BLOB) WHERE seq = 4",
            4,
            "indexed columns differ",
        ),
    ],
    ids=["newline", "blob-column"],
)
async def test_what_a_page_in_one_piece_hides_is_found_row_by_row(
    logged: SQLiteStore, pki: TestPKI, sql: str, entry: int, words: str
) -> None:
    assert await _fast_page(logged, 0, 25) is not None
    tamper(logged, sql)
    try:
        assert await _fast_page(logged, 0, 25) is None
    except StoreError:
        assert "blob" in sql.lower()  # the store could not build the page at all
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == entry and words in report.problems[0], report.problems


async def test_an_entry_stored_as_text_reads_the_same_either_way(
    logged: SQLiteStore, pki: TestPKI
) -> None:
    """The row-by-row check hashes a TEXT entry's bytes as it does a BLOB's; so does the page."""
    tamper(logged, "UPDATE audit_events SET entry = CAST(entry AS TEXT) WHERE seq = 12")
    assert await _fast_page(logged, 10, 20) is not None
    assert (await verify_log(logged, pki.trust(revocation="off"))).ok


async def test_pages_past_the_first_are_checked_in_one_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several pages, each checked in one piece (not one falling back to rows): the same leaves."""
    monkeypatch.setattr(verify_module, "_PAGE", 7)
    monkeypatch.setattr(verify_module, "verify_rows", _never)
    async with SQLiteStore(tmp_path / "p.db") as store:
        await add_events(store, 30)
        report = await verify_log(store)
        assert report.ok and report.entries == 30, report.problems
        rows = await store.read(lambda tx: tx.tuples(VERIFY_QUERY, start=0, stop=30))
        assert await _fast_page(store, 7, 14) == bytes(rows[13][3])


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("a page was checked row by row")


async def test_hashes_shifted_between_entries_are_found(logged: SQLiteStore, pki: TestPKI) -> None:
    """Entry 5's leaf hash cut to 31 bytes and its last byte put before entry 6's: back to back,
    the hashes read the same, so the page must not be checked in one piece."""
    rows = await logged.read(lambda tx: tx.tuples(VERIFY_QUERY, start=5, stop=7))
    five, six = bytes(rows[0][2]), bytes(rows[1][2])
    tamper(logged, "UPDATE audit_events SET leaf_hash = ? WHERE seq = 5", five[:31])
    tamper(logged, "UPDATE audit_events SET leaf_hash = ? WHERE seq = 6", five[31:] + six)
    assert await _fast_page(logged, 0, 25) is None
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 5 and "modified" in report.problems[0], report.problems


async def test_a_column_that_is_not_text_is_located(logged: SQLiteStore, pki: TestPKI) -> None:
    """Bytes that are not UTF-8 written into a text column: SQLite cannot hand that row over at
    all, so the entry is found by reading ever smaller ranges."""
    tamper(logged, "UPDATE audit_events SET dossier = CAST(x'ff00fe' AS TEXT) WHERE seq = 13")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 13, report.problems
    assert "cannot read it" in report.problems[0] and "UTF-8" in report.problems[0]
    # The entries before it were checked: the checkpoint at 10 holds, those past 13 cannot.
    assert report.entries == 13 and report.checked[0]["ok"]
    assert report.first_bad_checkpoint == 20


# --- coverage: what no signed checkpoint vouches for -------------------------------------------


def _later(hours: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)


async def test_a_log_no_checkpoint_covers_passes_only_until_one_is_due(store: SQLiteStore) -> None:
    """A gateway's first entries, before its first checkpoint is due: verifiable, and said to be
    unsigned. The same log once a checkpoint was due (a log rewritten whole, its checkpoints
    deleted): nothing signed vouches for it, so it fails, naming the entries."""
    young = await verify_log(store)
    assert young.ok and young.uncovered == (0, 24) and young.covered == 0, young.problems
    assert "entries 0..24 are covered by no signed checkpoint yet (one is due by " in (
        young.describe()
    )
    old = await verify_log(store, now=_later(2))
    assert not old.ok and old.first_bad_entry is None
    assert old.problems[0].startswith(
        "entries 0..24 are covered by no signed checkpoint: one was due by "
    ), old.problems
    assert "(the gateway signs one every 1000 entries or 60 s, 60 s of grace)" in old.problems[0]
    assert old.to_dict()["uncovered"] == [0, 24]


async def test_deleting_every_checkpoint_is_found(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(logged, "DELETE FROM audit_checkpoints")
    report = await verify_log(logged, pki.trust(revocation="off"), now=_later(1))
    assert not report.ok and report.checkpoints == 0
    assert report.problems[0].startswith("entries 0..24 are covered by no signed checkpoint")


async def test_entries_past_the_latest_checkpoint_are_judged_by_the_policy(
    logged: SQLiteStore, pki: TestPKI
) -> None:
    """The checkpoints at 20 and 25 deleted: 10 covers the rest. The log's own clock (its newest
    entry), not the verifier's, judges the rest: a copy verified days later still passes."""
    tamper(logged, "DELETE FROM audit_checkpoints WHERE size > 10")
    report = await verify_log(logged, pki.trust(revocation="off"), now=_later(48))
    assert report.ok and report.covered == 10 and report.uncovered == (10, 24), report.problems
    # A gateway that checkpoints every 5 entries, at once: 10..14 were due before entry 24.
    strict = verify_module.CheckpointPolicy(every=5, interval_s=3600, grace_s=0)
    report = await verify_log(logged, pki.trust(revocation="off"), policy=strict)
    assert not report.ok
    (newest,) = await logged.read(lambda tx: tx.tuples(VERIFY_QUERY, start=24, stop=25))
    runs_to = dt.datetime.fromisoformat(newest[4]).isoformat(timespec="seconds")
    assert report.problems == [
        f"entries 10..24 are covered by no signed checkpoint: one was due by "
        f"{report.checkpoint_due_by} (the gateway signs one every 5 entries or 3600 s, 0 s of "
        f"grace) and the log runs to {runs_to}"
    ]


@pytest.mark.parametrize("seq", [1000, 100_000], ids=["in-the-page", "past-the-page"])
async def test_a_row_inserted_after_a_gap_is_named(
    logged: SQLiteStore, pki: TestPKI, seq: int
) -> None:
    tamper(
        logged,
        f"INSERT INTO audit_events SELECT {seq}, at, action, member, service, dossier, document, "
        "citizen, entry, leaf_hash, chain_hash FROM audit_events WHERE seq = 24",
    )
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == 25
    assert report.problems == [
        f"entry 25: missing: the next entry stored after entry 24 has seq {seq} (entries "
        f"25..{seq - 1} removed, or entry {seq} inserted out of sequence)"
    ]


async def test_a_row_inserted_before_entry_0_is_named(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(
        logged,
        "INSERT INTO audit_events SELECT -4, at, action, member, service, dossier, document, "
        "citizen, entry, leaf_hash, chain_hash FROM audit_events WHERE seq = 3",
    )
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_entry == -4
    assert report.problems == ["entry -4: stored before entry 0 (inserted out of sequence)"]


async def test_one_entry_removed_is_named(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(logged, "DELETE FROM audit_events WHERE seq = 0")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.problems[0] == (
        "entry 0: missing: the first entry has seq 1 (entry 0 removed, or entry 1 inserted out "
        "of sequence)"
    )


async def test_an_unreadable_timestamp_is_one_line(logged: SQLiteStore, pki: TestPKI) -> None:
    tamper(logged, "UPDATE audit_checkpoints SET timestamp = x'3000' WHERE size = 25")
    report = await verify_log(logged, pki.trust(revocation="off"))
    assert report.first_bad_checkpoint == 25
    assert report.problems[0].startswith("checkpoint 25: timestamp: malformed timestamp token")
    assert all("\n" not in p for p in report.problems) and "\n" not in report.describe()
    assert all("\n" not in (c["problem"] or "") for c in report.checked)
