"""The audit API's Merkle tree (one per gateway: gateway.audit.proofs.LogTree) and entries lost in a
crash of the store (tests/audit/test_checkpoint_crash.py: the last lookups' events, committed
without waiting for the sync; new events then take their sequence numbers).

Before, the tree only ever appended leaves past its size: once it had read the lost entries (an
auditor asked for a proof up to the log's head) it kept them, served proofs whose root matched no
signed checkpoint, and refused every export (409 "the stored log does not match the latest
checkpoint") until the gateway restarted, while `audit verify` said the log was intact. It now
notices a store shorter than it, or holding another entry where its last leaf was, and reads the
log again. The tests run on SQLite and on the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``.
"""
# ruff: noqa: F811 - pytest fixtures imported from the other modules are parameters here

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest

from gateway.audit.bundle import Scope, build_bundle
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.merkle import verify_inclusion
from gateway.audit.proofs import LogTree, ProofUnavailable
from gateway.store import Store
from signing.testing import TestPKI
from tests.audit.test_checkpoint_crash import Lose, _crash, _leaves, backend  # noqa: F401
from tests.audit.test_checkpoints import pki, tsa_url  # noqa: F401 - fixtures


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


async def test_proofs_and_exports_follow_the_log_after_entries_were_lost(
    backend: tuple[Store, Lose], pki: TestPKI, tsa_url: str
) -> None:
    store, lose = backend
    tree = LogTree(store)
    await tree.consistency(20, 25)  # an auditor's proof up to the head: the tree reads 0..24
    await _crash(store, lose, keep=22, new=5)  # 22..24 lost, then 22..26 other events
    cp = await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    assert cp is not None and cp.size == 27
    leaves = await _leaves(store)
    proof = await tree.inclusion(23, 27)
    assert proof["root"] == _b64(cp.root)  # the signed checkpoint's, not a fork's
    assert proof["leaf_hash"] == _b64(leaves[23])  # the entry stored, not the one lost
    verify_inclusion(23, 27, leaves[23], [base64.b64decode(p) for p in proof["proof"]], cp.root)
    consistency = await tree.consistency(20, 27)
    assert consistency["second_root"] == _b64(cp.root)
    data = await build_bundle(
        store, Scope(start="2000-01-01T00:00:00Z", stop="2100-01-01T00:00:00Z"), tree=tree
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["anchor"] == 27, manifest


async def test_no_proof_is_served_from_entries_the_store_no_longer_holds(
    backend: tuple[Store, Lose],
) -> None:
    store, lose = backend
    tree = LogTree(store)
    await tree.inclusion(24, 25)
    lose(22)  # the store came back with 22 entries, and nothing new yet
    with pytest.raises(ProofUnavailable, match="fewer than 25 entries"):
        await tree.inclusion(24, 25)
    with pytest.raises(ProofUnavailable, match="fewer than 25 entries"):
        await tree.consistency(20, 25)
    proof = await tree.inclusion(21, 22)
    leaves = await _leaves(store)
    assert proof["leaf_hash"] == _b64(leaves[21])
