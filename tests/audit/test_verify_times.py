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

from gateway.audit.checkpoints import (
    DEFAULT_ORIGIN,
    Checkpoint,
    sign_note,
    verify_checkpoint,
)
from gateway.audit.verify import verify_log
from gateway.store import Store
from signing.testing import TestPKI
from signing.timestamps import request_timestamp
from tests.audit.test_checkpoint_reads import Tamper, backend  # noqa: F401 - fixtures
from tests.audit.test_checkpoints import pki, tsa_url  # noqa: F401 - fixtures


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
