"""Verifying a checkpoint (its TSA's chain, its token, its signer's chain: 20 ms of CPU or more)
runs off the event loop, and a checkpoint found good is not verified again while the revocation
answers it rests on are kept: an auditor's page of checkpoints shown again, or a monitor polling
the latest one, made the loop do it all again each time. A revocation is still noticed once that
time is up. Time is a fake clock here; calls are counted, never timed.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import signing.timestamps
from gateway.audit.checkpoints import Checkpoint, Checkpointer, verify_checkpoint
from gateway.store import SQLiteStore
from signing.testing import TestPKI, serve_pki
from signing.trust import TrustStore
from tests.audit.test_api import _auth, _Signing, seeded_store, serve_audit_app
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures
from tests.conftest import TrustClock


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of each timestamp verification (one per checkpoint verified)."""
    threads: list[int] = []
    real = signing.timestamps.verify_timestamp

    async def counting(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return await real(*args, **kwargs)

    monkeypatch.setattr(signing.timestamps, "verify_timestamp", counting)
    return threads


async def _checkpoint(path: Path, pki: TestPKI, tsa_url: str) -> Checkpoint:
    async with SQLiteStore(path) as store:
        await add_events(store, 5)
        cp = await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    assert cp is not None
    return cp


def _revoked(pki: TestPKI, subject: str) -> TestPKI:
    """The same PKI, whose CA has since revoked ``subject`` (as of when the PKI was made)."""
    subjects = dict(pki.index["subjects"])
    subjects[subject] = {**subjects[subject], "revoked": True}
    return TestPKI(pki.directory, pki.base_url, {**pki.index, "subjects": subjects})


async def test_a_page_shown_again_is_not_verified_again_nor_on_the_loop(
    tmp_path: Path, pki: TestPKI, tsa_url: str, verified: list[int]
) -> None:
    store = await seeded_store(tmp_path / "api.db", pki, tsa_url)  # checkpoints 33 and 37
    signing_setup = _Signing(pki.trust(revocation="off"), pki.key("gateway"))
    try:
        async with (
            serve_audit_app(store, {"signing": signing_setup}) as url,
            aiohttp.ClientSession(headers=_auth()) as s,
        ):
            for _ in range(3):  # the console's Checkpoints tab, opened three times
                async with s.get(f"{url}/v1/audit/checkpoints", params={"verify": "1"}) as r:
                    page = await r.json()
                assert [(c["size"], c["verified"]) for c in page["items"]] == [
                    (37, True),
                    (33, True),
                ], page
            async with s.get(f"{url}/v1/audit/checkpoints/latest") as r:
                latest = await r.json()
            assert latest["size"] == 37 and latest["verified"] and latest["tsa"]
    finally:
        await store.close()
    assert len(verified) == 2, "a checkpoint already found good was verified again"
    assert threading.get_ident() not in verified, "verified on the event loop's thread"


async def test_a_revoked_signer_is_noticed_once_the_cache_time_is_up(
    tmp_path: Path, pki: TestPKI, tsa_url: str, trust_clock: TrustClock, verified: list[int]
) -> None:
    cp = await _checkpoint(tmp_path / "a.db", pki, tsa_url)
    trust = TrustStore(pki.trust().anchors, revocation="hard-fail", cache_ttl=300.0)
    pins = {"signers": [pki.certificate("gateway")], "origin": "lienthong.local/audit"}
    async with serve_pki(pki):
        assert (await verify_checkpoint(cp, trust, **pins)).ok
    async with serve_pki(_revoked(pki, "gateway")):  # the CA revokes the audit key
        trust_clock.now += 299.0
        check = await verify_checkpoint(cp, trust, **pins)
        assert check.ok and len(verified) == 1  # still the answer found 299 s ago
        trust_clock.now += 2.0
        check = await verify_checkpoint(cp, trust, **pins)
    assert len(verified) == 2
    assert not check.ok and check.problem and "revoked" in check.problem, check


async def test_a_check_soft_failed_is_kept_only_as_long_as_a_failed_fetch(
    tmp_path: Path, pki: TestPKI, tsa_url: str, trust_clock: TrustClock, verified: list[int]
) -> None:
    cp = await _checkpoint(tmp_path / "s.db", pki, tsa_url)
    trust = TrustStore(pki.trust().anchors, revocation="soft-fail", fetch_timeout=2.0)
    assert (await verify_checkpoint(cp, trust)).ok  # no CA server runs: status unknown
    trust_clock.now += 29.0
    assert (await verify_checkpoint(cp, trust)).ok
    assert len(verified) == 1
    trust_clock.now += 2.0  # past the store's failed_fetch_ttl (30 s), not its cache_ttl (300 s)
    async with serve_pki(_revoked(pki, "gateway")):
        check = await verify_checkpoint(cp, trust)
    assert len(verified) == 2
    assert not check.ok and check.problem and "revoked" in check.problem, check


async def test_a_failed_check_is_not_kept(
    tmp_path: Path, pki: TestPKI, tsa_url: str, trust_clock: TrustClock, verified: list[int]
) -> None:
    cp = await _checkpoint(tmp_path / "f.db", pki, tsa_url)
    trust = TrustStore(pki.trust().anchors, revocation="hard-fail", fetch_timeout=2.0)
    check = await verify_checkpoint(cp, trust)  # no CA server runs: refused under hard-fail
    assert not check.ok and check.problem and "revocation status unknown" in check.problem
    async with serve_pki(pki):  # back: the next check is made, not the failure repeated
        assert (await verify_checkpoint(cp, trust)).ok
    assert len(verified) == 2


async def test_a_check_is_kept_for_the_signers_and_origin_it_was_made_for(
    tmp_path: Path, pki: TestPKI, tsa_url: str, verified: list[int]
) -> None:
    cp = await _checkpoint(tmp_path / "p.db", pki, tsa_url)
    trust = pki.trust(revocation="off")
    gateway, agency = pki.certificate("gateway"), pki.certificate("agency-000.00.11.H53")
    assert (await verify_checkpoint(cp, trust, signers=[gateway])).ok
    assert not (await verify_checkpoint(cp, trust, signers=[agency])).ok
    assert not (await verify_checkpoint(cp, trust, origin="other.log/audit")).ok
    assert (await verify_checkpoint(cp, trust, signers=[gateway])).ok
    assert len(verified) == 1
