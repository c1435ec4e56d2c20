"""The Merkle tree against the published RFC 6962 vectors and an independent recursive reading of
RFC 9162 §2.1 (written here from the RFC's definitions, sharing no code with the module)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from gateway.audit.events import leaf_hash
from gateway.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc6962.json").read_text())
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]


# --- the reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 verbatim, recursive, slow -------------


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return d[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# --- published vectors -------------------------------------------------------------------------


def test_empty_tree() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["empty_root"]
    assert root([]) == EMPTY_ROOT == MerkleTree().root()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_vectors(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size - 1]
    assert MerkleTree(LEAVES).root(size) == ROOTS[size - 1]
    assert MerkleTree(LEAVES[:size]).root() == ROOTS[size - 1]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf']}of{c['size']}")
def test_inclusion_vectors(case: dict[str, object]) -> None:
    index, size = int(case["leaf"]) - 1, int(case["size"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(p) for p in case["proof"]]  # type: ignore[attr-defined]
    assert MerkleTree(LEAVES).inclusion_proof(index, size) == proof
    verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size - 1])


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['first']}to{c['second']}"
)
def test_consistency_vectors(case: dict[str, object]) -> None:
    first, second = int(case["first"]), int(case["second"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(p) for p in case["proof"]]  # type: ignore[attr-defined]
    assert MerkleTree(LEAVES).consistency_proof(first, second) == proof
    verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], proof)


# --- cross-check with the reference on every size up to 70 -------------------------------------

RANDOM_LEAVES = [_h(random.Random(7).randbytes(20) + bytes([i])) for i in range(70)]
TREE = MerkleTree(RANDOM_LEAVES)


@pytest.mark.parametrize("n", range(1, 71))
def test_against_reference(n: int) -> None:
    d = RANDOM_LEAVES[:n]
    r = ref_mth(d)
    assert root(d) == r == TREE.root(n)
    for m in range(n):
        proof = TREE.inclusion_proof(m, n)
        assert proof == ref_path(m, d)
        verify_inclusion(m, n, d[m], proof, r)
    for m in range(1, n + 1):
        proof = TREE.consistency_proof(m, n)
        assert proof == (ref_subproof(m, d, True) if m < n else [])
        verify_consistency(m, n, ref_mth(d[:m]), r, proof)


def test_incremental_equals_bulk() -> None:
    t = MerkleTree()
    for i, leaf in enumerate(RANDOM_LEAVES):
        t.append(leaf)
        assert t.root() == root(RANDOM_LEAVES[: i + 1])
    assert t.leaf(5) == RANDOM_LEAVES[5]


@pytest.mark.parametrize("cuts", [[70], [1, 69], [3, 5, 8, 16, 38], [2] * 35, [31, 1, 33, 5]])
def test_packed_extension_builds_the_same_tree(cuts: list[int]) -> None:
    t, at = MerkleTree(), 0
    for size in cuts:
        t.extend_packed(b"".join(RANDOM_LEAVES[at : at + size]))
        at += size
        assert t.size == at
        assert t.root() == ref_mth(RANDOM_LEAVES[:at])
    # Every inner node, not only the roots asked for so far, is the one append() would keep.
    for m in range(1, at + 1):
        assert t.root(m) == TREE.root(m)
        assert t.consistency_proof(m, at) == TREE.consistency_proof(m, at)
    assert [t.inclusion_proof(i) for i in range(at)] == [TREE.inclusion_proof(i) for i in range(at)]


def test_packed_extension_refuses_a_partial_hash() -> None:
    t = MerkleTree(RANDOM_LEAVES[:3])
    with pytest.raises(ValueError, match="32 bytes"):
        t.extend_packed(b"x" * 33)
    assert t.size == 3 and t.root() == TREE.root(3)
    t.extend_packed(b"")
    assert t.size == 3


# --- failure paths: every corruption of a good proof is refused --------------------------------


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 8]) + b[1:]


def _inclusion_probes(
    i: int, n: int, leaf: bytes, proof: list[bytes], r: bytes
) -> list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]]:
    probes = [
        ("index-1", (i - 1, n, leaf, proof, r)),
        ("index+1", (i + 1, n, leaf, proof, r)),
        ("index^2", (i ^ 2, n, leaf, proof, r)),
        ("size*2", (i, n * 2, leaf, proof, r)),
        ("size/2", (i, n // 2, leaf, proof, r)),
        ("wrong leaf", (i, n, _h(b"x"), proof, r)),
        ("empty root", (i, n, leaf, proof, EMPTY_ROOT)),
        ("trailing root", (i, n, leaf, [*proof, r], r)),
        ("preceding root", (i, n, leaf, [r, *proof], r)),
    ]
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = _flip(bad[j])
        probes.append((f"flip {j}", (i, n, leaf, bad, r)))
    if proof:
        probes.append(("removed", (i, n, leaf, proof[:-1], r)))
    return probes


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf']}of{c['size']}")
def test_corrupt_inclusion_refused(case: dict[str, object]) -> None:
    index, size = int(case["leaf"]) - 1, int(case["size"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(p) for p in case["proof"]]  # type: ignore[attr-defined]
    for name, args in _inclusion_probes(index, size, LEAVES[index], proof, ROOTS[size - 1]):
        with pytest.raises(ProofError):
            verify_inclusion(*args)
            pytest.fail(f"accepted corrupted proof: {name}")


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['first']}to{c['second']}"
)
def test_corrupt_consistency_refused(case: dict[str, object]) -> None:
    m, n = int(case["first"]), int(case["second"])  # type: ignore[call-overload]
    proof = [bytes.fromhex(p) for p in case["proof"]]  # type: ignore[attr-defined]
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    probes: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
        ("first-1", (m - 1, n, r1, r2, proof)),
        ("first+1", (m + 1, n, r1, r2, proof)),
        ("second*2", (m, n * 2, r1, r2, proof)),
        ("second/2", (m, n // 2, r1, r2, proof)),
        ("wrong root1", (m, n, _h(b"x"), r2, proof)),
        ("wrong root2", (m, n, r1, _h(b"x"), proof)),
        ("swapped", (m, n, r2, r1, proof)),
        ("empty", (m, n, r1, r2, [])),
        ("trailing", (m, n, r1, r2, [*proof, r2])),
        ("preceding", (m, n, r1, r2, [r1, *proof])),
        ("truncated", (m, n, r1, r2, proof[:-1])),
    ]
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = _flip(bad[j])
        probes.append((f"flip {j}", (m, n, r1, r2, bad)))
    for name, args in probes:
        if name == "first-1" and m - 1 == 0:
            continue  # from the empty tree anything is consistent (with an empty proof only)
        with pytest.raises(ProofError):
            verify_consistency(*args)
            pytest.fail(f"accepted corrupted proof: {name}")


def test_trivial_consistency_rules() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, ROOTS[2], ROOTS[2], [ROOTS[0]])
    with pytest.raises(ProofError):
        verify_consistency(4, 3, ROOTS[3], ROOTS[2], [])


def test_tree_refuses_impossible_requests() -> None:
    t = MerkleTree(LEAVES)
    with pytest.raises(ValueError):
        t.inclusion_proof(8, 8)
    with pytest.raises(ValueError):
        t.root(9)
    with pytest.raises(ValueError):
        t.consistency_proof(5, 4)
    with pytest.raises(ValueError):
        t.append(b"short")
    with pytest.raises(ProofError):
        verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT)
