"""Checkpoints with a real key, a real TSA (served over HTTP) and the real SQLite store.

The fixtures here are shared by the other audit test modules (``from test_checkpoints import …``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditEvent, append
from gateway.audit.checkpoints import (
    DEFAULT_ORIGIN,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    key_fingerprint,
    load_checkpoints,
    parse_note,
    sign_note,
    verify_checkpoint,
    verify_note_signature,
)
from gateway.audit.merkle import root
from gateway.store import SQLiteStore
from signing.testing import TestPKI, free_port, serve_pki
from signing.timestamps import request_timestamp, serve_tsa
from signing.trust import RevocationMode


@functools.cache
def _pki(directory: str) -> TestPKI:
    return TestPKI.create(Path(directory), base_url=f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    # Cached by directory so that modules importing this fixture share one PKI per session.
    base = tmp_path_factory.getbasetemp() / "audit-pki"
    return _pki(str(base))


@pytest.fixture
async def tsa_url(pki: TestPKI) -> AsyncIterator[str]:
    async with serve_tsa(pki.directory) as url:
        yield url


async def add_events(store: SQLiteStore, n: int, *, first: int = 0) -> None:
    for i in range(first, first + n):
        await store.transact(
            lambda tx, i=i: append(
                tx,
                AuditEvent(
                    action="dossier.accepted" if i % 2 else "step.delivered",
                    member=f"VN:GOV:M{i % 3}",
                    service="population/citizen.lookup/v1",
                    dossier=f"D{i % 4}",
                    document=f"DOC{i % 5}",
                    citizen="c" * 64 if i % 7 == 0 else None,
                ),
            )
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "audit.db") as s:
        await add_events(s, 25)
        yield s


def tamper(store: SQLiteStore, sql: str, *params: object) -> None:
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(sql, params)
    conn.close()


async def leaves(store: SQLiteStore) -> list[bytes]:
    rows = await store.read(lambda tx: tx.all("audit.leaves", start=0, stop=10**9))
    return [bytes(r["leaf_hash"]) for r in rows]


# --- tests ---------------------------------------------------------------------------------------


async def test_checkpoint_is_signed_and_timestamped(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    cp = await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    assert cp is not None and cp.size == 25
    assert cp.root == root(await leaves(store))
    content = verify_note_signature(cp.note, pki.certificate("gateway"))
    assert (content.size, content.root, content.origin) == (25, cp.root, "lienthong.local/audit")
    check = await verify_checkpoint(cp, pki.trust(revocation="off"))
    assert check.ok, check.problem
    assert check.tsa and check.timestamp_time
    stored = await load_checkpoints(store)
    assert stored == [cp]


async def test_ecdsa_key_and_nothing_new(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> None:
    cpr = Checkpointer(store, pki.key("agency-000.00.11.H53"), tsa_url=tsa_url, origin="x/y")
    cp = await cpr.checkpoint_now()
    assert cp is not None and (await verify_checkpoint(cp, pki.trust(revocation="off"))).ok
    assert await cpr.checkpoint_now() is None  # the log did not grow
    await add_events(store, 3, first=25)
    nxt = await cpr.checkpoint_now()
    assert nxt is not None and nxt.size == 28


async def test_a_checkpoint_does_not_chase_appends_made_while_it_reads(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """Under load, events keep arriving while a checkpoint reads the log: it covers the log as
    its read found it, in one read, and the next checkpoint covers the rest."""
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    reads = 0
    read = store.read

    async def busy_read(work: Any) -> Any:
        nonlocal reads
        reads += 1
        found = await read(work)
        await add_events(store, 1, first=100 + reads)  # one more lookup came in meanwhile
        return found

    store.read = busy_read  # type: ignore[method-assign]
    try:
        cp = await asyncio.wait_for(cpr.checkpoint_now(), 30)
    finally:
        del store.read
    assert cp is not None and cp.size == 25
    assert reads == 1
    assert cp.root == root((await leaves(store))[:25])
    nxt = await cpr.checkpoint_now()
    assert nxt is not None and nxt.size == 26


async def test_background_writer_every_n(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> None:
    cpr = Checkpointer(
        store, pki.key("gateway"), tsa_url=tsa_url, every=10, interval_s=3600, poll_s=0.01
    )
    await cpr.start()
    try:
        assert cpr.healthy == (True, "ok")
        for _ in range(3000):  # wait for the condition, not for a time (bounded: 30 s)
            if cpr.latest is not None and cpr.latest.size == 25:
                break
            await asyncio.sleep(0.01)
        assert cpr.latest is not None and cpr.latest.size == 25
        await add_events(store, 5, first=25)  # 5 < every, interval far away: nothing due
        await asyncio.sleep(0.1)
        assert cpr.latest.size == 25
    finally:
        await cpr.stop()
    assert cpr.healthy[0] is False  # stopped: not ready


async def test_interval_triggers(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> None:
    now = [0.0]
    cpr = Checkpointer(
        store,
        pki.key("gateway"),
        tsa_url=tsa_url,
        every=1000,
        interval_s=60,
        poll_s=0.01,
        clock=lambda: now[0],
    )
    await cpr.start()
    try:
        await asyncio.sleep(0.05)
        assert cpr.latest is None  # 25 < 1000 and the interval has not passed
        now[0] = 61.0
        for _ in range(3000):  # bounded: 30 s
            if cpr.latest is not None:
                break
            await asyncio.sleep(0.01)
        assert cpr.latest is not None and cpr.latest.size == 25
    finally:
        await cpr.stop()


async def test_fail_closed_then_recovers(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> None:
    from signing.timestamps import request_timestamp

    now = [0.0]
    tsa_up = [False]

    async def stamper(digest: bytes) -> bytes:
        if not tsa_up[0]:
            raise ConnectionRefusedError("TSA down")
        return await request_timestamp(tsa_url, digest)

    cpr = Checkpointer(
        store,
        pki.key("gateway"),
        timestamper=stamper,
        every=1,
        poll_s=0.01,
        fail_closed_after_s=30,
        clock=lambda: now[0],
    )
    await cpr.start()
    try:
        for _ in range(3000):  # bounded: 30 s
            if cpr.last_error:
                break
            await asyncio.sleep(0.01)
        assert "TSA down" in (cpr.last_error or "")
        assert cpr.healthy == (True, "ok")  # failing, but not for long yet
        now[0] = 31.0
        ok, reason = cpr.healthy
        assert not ok and "TSA down" in reason and "31s" in reason
        assert await load_checkpoints(store) == []  # nothing half-made was stored
        tsa_up[0] = True
        for _ in range(3000):  # bounded: 30 s
            if cpr.healthy[0]:
                break
            await asyncio.sleep(0.01)
        assert cpr.healthy == (True, "ok")
        assert cpr.latest is not None and cpr.latest.size == 25
    finally:
        await cpr.stop()


async def test_a_failing_tsa_is_named_without_its_secrets(store: SQLiteStore, pki: TestPKI) -> None:
    """The reason a checkpoint failed is logged (last_error) and shown by /readyz and the 503
    not-accepting (healthy): the TSA's password, in its user info or its query, is not in it.
    Before, ``?password=`` came through as written (to any client, in the 503's detail)."""
    now = [0.0]
    url = f"http://tsauser:TsaS3cret@127.0.0.1:{free_port()}/tsa?password=QueryS3cret"
    cpr = Checkpointer(
        store,
        pki.key("gateway"),
        tsa_url=url,
        every=1,
        poll_s=0.01,
        fail_closed_after_s=30,
        clock=lambda: now[0],
    )
    await cpr.start()
    try:
        for _ in range(3000):  # bounded: 30 s
            if cpr.last_error:
                break
            await asyncio.sleep(0.01)
        now[0] = 31.0
        ok, reason = cpr.healthy
    finally:
        await cpr.stop()
    assert not ok
    for shown in (reason, cpr.last_error or ""):
        assert "S3cret" not in shown, shown
        assert "tsauser:***@127.0.0.1:" in shown and "/tsa?password=*** failed" in shown, shown


async def test_start_refuses_a_log_that_does_not_match(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    tamper(store, "UPDATE audit_events SET leaf_hash = zeroblob(32) WHERE seq = 3")
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    with pytest.raises(CheckpointError, match="does not match checkpoint 25"):
        await cpr.start()
    ok, reason = cpr.healthy
    assert not ok and "altered" in reason


async def _truncated(tmp_path: Path, pki: TestPKI, tsa_url: str) -> tuple[Path, Checkpoint]:
    """A gateway's store with a checkpoint of 20 entries, of which the last 5 were then deleted
    (between two runs of the gateway)."""
    path = tmp_path / "truncated.db"
    async with SQLiteStore(path) as s:
        await add_events(s, 20)
        cp = await Checkpointer(s, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
        assert cp is not None and cp.size == 20
    shutil.copyfile(path, tmp_path / "backup.db")  # closed: the whole store is in the file
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM audit_events WHERE seq >= 15")
    conn.close()
    return path, cp


async def _until(condition: Any) -> None:
    for _ in range(3000):  # wait for the condition, not for a time (bounded: 30 s)
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_a_log_truncated_below_its_checkpoint_is_not_signed_again(
    tmp_path: Path, pki: TestPKI, tsa_url: str
) -> None:
    """Restarted on a log cut below its latest checkpoint, the checkpointer says so (readiness,
    new work refused) and signs nothing: the next appends take the removed entries' sequence
    numbers, and a checkpoint of them would be a fork of the signed log."""
    path, _ = await _truncated(tmp_path, pki, tsa_url)
    async with SQLiteStore(path) as s:
        cpr = Checkpointer(
            s, pki.key("gateway"), tsa_url=tsa_url, every=1, interval_s=0.05, poll_s=0.01
        )
        await cpr.start()
        try:
            truncated = "audit log truncated below checkpoint 20: it has 15 entries"
            assert cpr.healthy == (False, truncated)
            with pytest.raises(CheckpointError, match=f"not signing: {truncated}"):
                await cpr.checkpoint_now()
            await add_events(s, 3, first=15)  # new traffic: 15, 16, 17
            await asyncio.sleep(0.1)
            assert cpr.healthy == (False, truncated)
            await add_events(s, 5, first=18)  # 18..22: the log passes 20 with other entries
            await _until(lambda: "does not match" in cpr.healthy[1])
            assert cpr.healthy == (
                False,
                "audit log does not match checkpoint 20: altered entries",
            )
            await asyncio.sleep(0.1)
            with pytest.raises(CheckpointError, match="not signing: audit log does not match"):
                await cpr.checkpoint_now()
        finally:
            await cpr.stop()
        assert [c.size for c in await load_checkpoints(s)] == [20]  # no fork was signed


async def test_a_truncated_log_given_back_its_entries_recovers(
    tmp_path: Path, pki: TestPKI, tsa_url: str
) -> None:
    path, _ = await _truncated(tmp_path, pki, tsa_url)
    async with SQLiteStore(path) as s:
        backup = tmp_path / "backup.db"  # the same 5 entries, put back as they were
        cpr = Checkpointer(
            s, pki.key("gateway"), tsa_url=tsa_url, every=1, interval_s=0.05, poll_s=0.01
        )
        await cpr.start()
        try:
            assert not cpr.healthy[0]
            conn = sqlite3.connect(path)
            with conn:
                conn.execute("ATTACH DATABASE ? AS backup", (str(backup),))
                conn.execute(
                    "INSERT INTO audit_events SELECT * FROM backup.audit_events WHERE seq >= 15"
                )
            conn.close()
            await _until(lambda: cpr.healthy[0])
            assert cpr.healthy == (True, "ok")
            await add_events(s, 2, first=20)
            await _until(lambda: cpr.latest is not None and cpr.latest.size == 22)
            # Signed again from 20 on: at 22, and at 21 too when it polled between the two
            # appends (each its own transaction; it failed CI's full run once as [20, 21, 22]).
            assert [c.size for c in await load_checkpoints(s)] in ([20, 22], [20, 21, 22])
        finally:
            await cpr.stop()


async def test_forged_note_and_swapped_timestamp_are_refused(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    a = await cpr.checkpoint_now()
    await add_events(store, 2, first=25)
    b = await cpr.checkpoint_now()
    assert a is not None and b is not None
    trust = pki.trust(revocation="off")
    forged_note = a.note.replace(b"\n25\n", b"\n24\n")
    forged = Checkpoint(**{**a.__dict__, "note": forged_note, "size": 24})
    check = await verify_checkpoint(forged, trust)
    assert not check.ok and "signature does not verify" in (check.problem or "")
    swapped = Checkpoint(**{**b.__dict__, "timestamp": a.timestamp})
    check = await verify_checkpoint(swapped, trust)
    assert not check.ok and "timestamp" in (check.problem or "")
    # Control: an unmodified copy still verifies, so the refusals above are about the edits.
    other = Checkpoint(**a.__dict__)
    assert (await verify_checkpoint(other, trust)).ok


async def test_untrusted_signer(
    store: SQLiteStore, pki: TestPKI, tsa_url: str, tmp_path: Path
) -> None:
    stranger = TestPKI.create(tmp_path / "other")
    cp = await Checkpointer(store, stranger.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    assert cp is not None
    check = await verify_checkpoint(cp, pki.trust(revocation="off"))
    assert not check.ok and "signer" in (check.problem or "")


async def test_the_signer_and_origin_can_be_pinned(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """Anchors alone admit any certificate under them with a signing usage: an agency's key
    signs a checkpoint that chains; pinned to the audit signer's key, it is refused."""
    agency = pki.key("agency-000.00.11.H53")
    cp = await Checkpointer(store, agency, tsa_url=tsa_url).checkpoint_now()
    assert cp is not None
    trust = pki.trust(revocation="off")
    loose = await verify_checkpoint(cp, trust)
    assert loose.ok and loose.key == key_fingerprint(agency.certificate)
    gateway = pki.certificate("gateway")
    for t in (trust, None):  # the pin holds with or without the anchors
        check = await verify_checkpoint(cp, t, signers=[gateway])
        assert not check.ok and check.signer == "agency-000.00.11.H53"
        assert check.problem == (
            f"signed by agency-000.00.11.H53 [key sha256:{key_fingerprint(agency.certificate)[:16]}"
            f"], not by the audit signer (gateway [key sha256:{key_fingerprint(gateway)[:16]}])"
        )
    assert (await verify_checkpoint(cp, trust, signers=[gateway, agency.certificate])).ok
    check = await verify_checkpoint(cp, trust, origin="lienthong.example/audit")
    assert check.problem == (
        "origin 'lienthong.local/audit' is not the log's ('lienthong.example/audit')"
    )


def test_parse_note_refuses_garbage() -> None:
    for bad in [b"", b"a\n1\n", b"o\n1\nAAAA\ntime x\n\n- o AAAAAAAA\n", "é".encode("latin-1")]:
        with pytest.raises(CheckpointError):
            parse_note(bad)


def test_requires_a_tsa(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="TSA"):
        Checkpointer(SQLiteStore(tmp_path / "x.db"), object())


async def _checkpoint(store: SQLiteStore, pki: TestPKI, signer: str, at: dt.datetime) -> Checkpoint:
    """A checkpoint of the log made at ``at``: its note signed with that time, its timestamp
    saying it (the PKI's TSA, its clock set back), as the checkpointer made it then."""
    async with serve_tsa(pki.directory, at=at) as url:
        made = await Checkpointer(store, pki.key(signer), tsa_url=url).checkpoint_now()
        assert made is not None
        then = at.isoformat(timespec="microseconds")
        note = sign_note(pki.key(signer), DEFAULT_ORIGIN, made.size, made.root, then)
        token = await request_timestamp(url, hashlib.sha256(note).digest())
    return Checkpoint(made.size, made.root, then, note, made.signer_chain, token)


@pytest.mark.parametrize("revocation", ["soft-fail", "hard-fail"])
async def test_a_checkpoint_older_than_the_revocation_data_verifies(
    store: SQLiteStore, pki: TestPKI, revocation: RevocationMode
) -> None:
    """An auditor checks checkpoints long after they were made, with CRLs and OCSP answers
    issued since: those still tell whether the signer was revoked when the TSA saw the note."""
    hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    old = await _checkpoint(store, pki, "gateway", hours_ago)
    async with serve_pki(pki):  # the CRLs and OCSP answers it serves are issued now
        check = await verify_checkpoint(old, pki.trust(revocation=revocation))
    assert check.ok, check.problem
    assert check.timestamp_time == hours_ago.isoformat()


async def test_a_revoked_signer_is_refused_only_after_its_revocation(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """The PKI's ``revoked`` key was revoked when the PKI was made: a note it signed and a TSA
    dated before that verifies; one dated now does not."""
    revoked_at = dt.datetime.fromisoformat(pki.index["revoked_at"])
    old = await _checkpoint(store, pki, "revoked", revoked_at - dt.timedelta(minutes=30))
    await add_events(store, 1, first=25)
    made = await Checkpointer(store, pki.key("revoked"), tsa_url=tsa_url).checkpoint_now()
    assert made is not None
    trust = pki.trust(revocation="hard-fail")
    async with serve_pki(pki):
        assert (await verify_checkpoint(old, trust)).ok
        now = await verify_checkpoint(made, trust)
    assert not now.ok and "revoked" in (now.problem or "")


async def test_a_signer_whose_certificate_expired_signs_no_checkpoint(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """The gateway refuses an expired [signing] certificate at start; one that expires while it
    runs signed checkpoints that `audit verify` refused. The checkpoint fails instead, saying why
    (its error reaches /readyz and, after fail_closed_after_s, stops new work)."""
    with pytest.raises(CheckpointError, match="certificate expired"):
        await Checkpointer(store, pki.key("expired"), tsa_url=tsa_url).checkpoint_now()
    assert await load_checkpoints(store) == []


async def test_the_first_checkpoint_the_store_cannot_read_is_named(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """Rows whose text is not UTF-8 (edited around the gateway; SQLite alone holds such text):
    the store cannot hand them over, and the whole read failed, naming none of them."""
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    for n in range(5):
        await add_events(store, 1, first=25 + n)
        await cpr.checkpoint_now()  # 26 .. 30
    tamper(store, "UPDATE audit_checkpoints SET note = x'ff' || note WHERE size IN (27, 30)")
    with pytest.raises(CheckpointError) as unreadable:
        await load_checkpoints(store)
    assert unreadable.value.size == 27
    assert str(unreadable.value) == (
        "the store cannot read it (Could not decode to UTF-8 column 'note')"
    )
    restarted = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    with pytest.raises(CheckpointError) as at_start:  # the latest, 30: `serve` cannot start
        await restarted.start()
    assert str(at_start.value) == (
        "checkpoint 30: the store cannot read it (Could not decode to UTF-8 column 'note')"
    )
