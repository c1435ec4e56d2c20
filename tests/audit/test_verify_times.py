"""The times an audit log carries, against the clocks that can vouch for them: a checkpoint's
signed time against its RFC 3161 timestamp's, and entries no checkpoint covers against the
verifier's clock.

Real stores (SQLite, and the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``), the test PKI's
audit key and its TSA over HTTP.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from gateway.audit import leaf_hash
from gateway.audit.checkpoints import (
    DEFAULT_ORIGIN,
    Checkpoint,
    Checkpointer,
    CheckpointError,
    sign_note,
    verify_checkpoint,
)
from gateway.audit.verify import verify_log
from gateway.store import Store
from signing.testing import TestPKI
from signing.timestamps import request_timestamp, serve_tsa
from tests.audit.test_checkpoint_reads import Tamper, backend  # noqa: F401 - fixtures
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="microseconds")


async def _latest(store: Store) -> Checkpoint:
    row = await store.read(lambda tx: tx.one("checkpoints.latest"))
    assert row is not None
    return Checkpoint.from_row(row)


async def _signed_at(cp: Checkpoint, at: str, pki: TestPKI, tsa_url: str) -> Checkpoint:
    """``cp`` as a gateway whose clock read ``at`` would have made it: the note signed by the
    audit key, stamped by the TSA at once (the checkpointer's steps; only its clock differs)."""
    note = sign_note(pki.key("gateway"), DEFAULT_ORIGIN, cp.size, cp.root, at)
    token = await request_timestamp(tsa_url, hashlib.sha256(note).digest())
    return Checkpoint(cp.size, cp.root, at, note, cp.signer_chain, token)


# --- a checkpoint's signed time and its timestamp ------------------------------------------------


async def test_a_signed_time_the_timestamp_contradicts_is_refused(
    backend: tuple[Store, Tamper], pki: TestPKI, tsa_url: str
) -> None:
    """A gateway whose clock ran 5 years ahead (or was reset to 2000) signed `time 2031-…` in its
    notes; the TSA stamped them today. The timestamp is what vouches for the time, and the
    entries the checkpoint covers carry the same wrong clock's times: `audit verify` said
    intact, only --json showing both times side by side."""
    store, tamper = backend
    trust = pki.trust(revocation="off")
    latest = await _latest(store)
    for years in (5, -26):
        at = _iso(_now() + dt.timedelta(days=365 * years))
        wrong = await _signed_at(latest, at, pki, tsa_url)
        check = await verify_checkpoint(wrong, trust)
        assert not check.ok and check.problem is not None
        assert check.problem.startswith(f"signed time {at} contradicts its timestamp (20"), check
        assert check.problem.endswith(
            "more than 5 minutes apart: the gateway's clock was wrong when it signed"
        ), check
    # Stored as the gateway would have stored it: the log fails, naming the checkpoint.
    tamper(
        "UPDATE audit_checkpoints SET at = ?, note = ?, timestamp = ? WHERE size = ?",
        wrong.at,
        wrong.note,
        wrong.timestamp,
        wrong.size,
    )
    report = await verify_log(store, trust, signers=[pki.certificate("gateway")])
    assert not report.ok and report.first_bad_checkpoint == 25, report.problems
    assert report.problems[0].startswith(f"checkpoint 25: signed time {wrong.at} contradicts")


async def test_a_signed_time_within_the_tolerance_passes(
    backend: tuple[Store, Tamper], pki: TestPKI, tsa_url: str
) -> None:
    """The checkpointer asks for the timestamp right after signing, and the two clocks may differ
    a little: a note signed 4 minutes before, or after, its timestamp's time still verifies."""
    store, _ = backend
    latest = await _latest(store)
    for minutes in (-4, 4):
        near = await _signed_at(latest, _iso(_now() + dt.timedelta(minutes=minutes)), pki, tsa_url)
        check = await verify_checkpoint(near, pki.trust(revocation="off"))
        assert check.ok, check.problem


async def test_a_gateway_whose_clock_is_wrong_stores_no_checkpoint_verify_would_refuse(
    backend: tuple[Store, Tamper], pki: TestPKI
) -> None:
    """The gateway's clock an hour off the TSA's (here the TSA's is set back): every checkpoint it
    signed would fail `audit verify`, as above. The checkpointer checks its token before storing
    it: this is a failed checkpoint (named in /readyz, counted, the gateway closed after
    fail_closed_after_s), and nothing is stored."""
    store, _ = backend
    await add_events(store, 2, first=25)  # type: ignore[arg-type]
    trust = pki.trust(revocation="off")
    async with serve_tsa(pki.directory, at=_now() - dt.timedelta(hours=1)) as behind:
        cpr = Checkpointer(store, pki.key("gateway"), tsa_url=behind, trust=trust)
        with pytest.raises(CheckpointError) as refused:
            await cpr.checkpoint_now()
    assert str(refused.value).startswith("checkpoint 27 not stored: signed time 20"), refused.value
    assert str(refused.value).endswith(
        "more than 5 minutes apart: the gateway's clock was wrong when it signed"
    )
    assert (await _latest(store)).size == 25
    async with serve_tsa(pki.directory) as right:
        cpr = Checkpointer(store, pki.key("gateway"), tsa_url=right, trust=trust)
        made = await cpr.checkpoint_now()
    assert made is not None and (await _latest(store)).size == 27


# --- entries no checkpoint covers, against the verifier's clock ---------------------------------


async def _redate(store: Store, tamper: Tamper, times: dict[int, str], forge: bool = False) -> None:
    """Give entries ``times`` (entry and column) and recompute every leaf and chain hash from the
    first of them on, as someone with write access to the store would; ``forge``: and say in the
    first that its dossier was another."""
    rows = await store.read(lambda tx: tx.all("audit.range", start=0, stop=10**9))
    first = min(times)
    prev = bytes(rows[first - 1]["chain_hash"]) if first else b"\0" * 32
    for row in rows[first:]:
        seq, entry = row["seq"], bytes(row["entry"])
        old = (await store.read(lambda tx, s=seq: tx.one("audit.get", seq=s)))["at"]  # type: ignore[index]
        at = times.get(seq, old)
        entry = entry.replace(f'"at":"{old}"'.encode(), f'"at":"{at}"'.encode(), 1)
        if forge and seq == first:
            entry = entry.replace(b'"dossier":"D', b'"dossier":"X', 1)
        leaf = leaf_hash(entry)
        prev = hashlib.sha256(prev + leaf).digest()
        tamper(
            "UPDATE audit_events SET at = ?, dossier = ?, entry = ?, leaf_hash = ?, chain_hash = ? "
            "WHERE seq = ?",
            at,
            json.loads(entry).get("dossier"),
            entry,
            leaf,
            prev,
            seq,
        )


async def test_a_log_rewritten_whole_and_dated_in_the_future_fails(
    backend: tuple[Store, Tamper], pki: TestPKI
) -> None:
    """Every checkpoint deleted, entry 0 rewritten (another dossier) and dated 2099, every hash
    recomputed: the checkpoint looked due only in 2099, and `audit verify` said intact ("entries
    0..24 are covered by no signed checkpoint yet (one is due by 2099-01-01T00:02:00+00:00)")."""
    store, tamper = backend
    tamper("DELETE FROM audit_checkpoints")
    future = "2099-01-01T00:00:00.000000+00:00"
    await _redate(store, tamper, {0: future}, forge=True)
    report = await verify_log(store, pki.trust(revocation="off"))
    assert not report.ok and report.first_bad_entry == 0, report.describe()
    assert report.problems[0].startswith(
        f"entry 0: dated {future}, after the verifier's clock (it is now 20"
    ), report.problems
    assert report.problems[0].endswith(
        "5 minutes of tolerance): no entry is written after it is verified; "
        "no signed checkpoint covers entries 0..24"
    ), report.problems


async def test_an_uncovered_entry_dated_in_the_future_fails(
    backend: tuple[Store, Tamper], pki: TestPKI
) -> None:
    """The checkpoints after 12 deleted and entry 20 dated tomorrow: the entries after the latest
    checkpoint were judged by the first and the last of them alone."""
    store, tamper = backend
    tamper("DELETE FROM audit_checkpoints WHERE size > 12")
    tomorrow = _iso(_now() + dt.timedelta(days=1))
    await _redate(store, tamper, {20: tomorrow})
    report = await verify_log(store, pki.trust(revocation="off"))
    assert not report.ok and report.first_bad_entry == 20, report.describe()
    assert report.problems[0].startswith(f"entry 20: dated {tomorrow}, after the verifier's clock")
    assert report.covered == 12


async def test_a_checkpoint_is_due_from_the_oldest_entry_it_should_cover(
    backend: tuple[Store, Tamper], pki: TestPKI
) -> None:
    """Every checkpoint deleted, two hours later, and entry 0 re-dated to a minute before the
    verifier's clock: the checkpoint looked due two minutes after that (entry 0's time), though
    entries 1..24 say the log is two hours old."""
    store, tamper = backend
    tamper("DELETE FROM audit_checkpoints")
    later = _now() + dt.timedelta(hours=2)
    await _redate(store, tamper, {0: _iso(later - dt.timedelta(minutes=1))})
    report = await verify_log(store, pki.trust(revocation="off"), now=later)
    assert not report.ok and report.first_bad_entry is None, report.describe()
    assert report.problems[0].startswith(
        "entries 0..24 are covered by no signed checkpoint: one was due by "
    ), report.problems
    # An honest young log, its gateway's clock two minutes ahead of the verifier's, passes.
    young = await _redate_all(store, tamper, _now() + dt.timedelta(minutes=2))
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok and report.uncovered == (0, 24), report.problems
    assert report.checkpoint_due_by == (young + dt.timedelta(seconds=120)).isoformat(
        timespec="seconds"
    )


async def _redate_all(store: Store, tamper: Tamper, start: dt.datetime) -> dt.datetime:
    """Date the entries a millisecond apart from ``start`` (hashes recomputed); ``start``,
    to the second the report shows."""
    times = {seq: _iso(start + dt.timedelta(milliseconds=seq)) for seq in range(25)}
    await _redate(store, tamper, times)
    return start.replace(microsecond=0)
