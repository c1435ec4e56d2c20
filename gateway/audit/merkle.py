"""RFC 9162 Merkle tree over the audit log's leaf hashes: roots, inclusion and consistency proofs.

The leaves are the stored ``leaf_hash`` values (``SHA-256(0x00 || entry)``, see
:mod:`gateway.audit.events`); interior nodes are ``SHA-256(0x01 || left || right)``.

:func:`root` is the O(n) stack algorithm for a one-off tree hash. :class:`MerkleTree` keeps every
full, aligned subtree hash (level ``k`` holds the hashes of leaves ``[i·2^k, (i+1)·2^k)``) in
compact ``bytearray`` levels, so it grows by appends in amortised O(1) and answers the root of any
size ``m ≤ n``, inclusion and consistency proofs in O(log n) hashes: full subtrees never change once
complete, so one tree serves every past checkpoint size too.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 (bit arithmetic, no tree needed) and raise
:class:`ProofError` on any mismatch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "MerkleTree",
    "ProofError",
    "RootStack",
    "hash_children",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()


class ProofError(ValueError):
    """A proof does not verify, or its parameters are impossible (index ≥ size, m > n, …)."""


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes in one pass, with a stack of full-subtree hashes (O(log n) memory)."""
    stack: list[bytes] = []
    count = 0
    sha = hashlib.sha256
    for leaf in leaves:
        node = leaf
        count += 1
        # After leaf number ``count``, one merge per trailing zero bit of ``count``.
        c = count
        while not c & 1:
            node = sha(b"\x01" + stack.pop() + node).digest()
            c >>= 1
        stack.append(node)
    if not stack:
        return EMPTY_ROOT
    # The remaining full subtrees, largest first, fold right to left (RFC 9162's unbalanced edge).
    node = stack.pop()
    while stack:
        node = sha(b"\x01" + stack.pop() + node).digest()
    return node


class RootStack:
    """The right edge of a growing tree (one hash per set bit of the size): O(log n) memory,
    amortised one hash per leaf, the root of the current size in O(log n). For a writer that only
    ever needs the latest root (the checkpointer)."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        node, stack = leaf, self._stack
        self.size += 1
        c = self.size
        while not c & 1:
            node = hashlib.sha256(b"\x01" + stack.pop() + node).digest()
            c >>= 1
        stack.append(node)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = hash_children(left, node)
        return node


class MerkleTree:
    """An append-only tree of leaf hashes with all full subtree hashes kept for fast proofs."""

    __slots__ = ("_levels", "size")

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.size = 0
        self.extend(leaves)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash. Raises ValueError if it is not 32 bytes."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        levels = self._levels
        levels[0] += leaf
        self.size += 1
        n, level = self.size, 0
        # Each trailing zero bit of the new size completes one subtree one level up.
        while not n & 1:
            below = levels[level]
            node = hashlib.sha256(b"\x01" + bytes(below[-2 * HASH_SIZE :])).digest()
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += node
            n >>= 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def extend_packed(self, packed: bytes | bytearray) -> None:
        """Add leaf hashes given back to back, 32 bytes each: the same tree as :meth:`append` of
        each, built a level at a time (a tight loop per level instead of one per leaf).
        Raises ValueError if the length is not a multiple of 32."""
        if len(packed) % HASH_SIZE:
            raise ValueError(f"leaf hashes are {HASH_SIZE} bytes each, got {len(packed)} bytes")
        levels, sha = self._levels, hashlib.sha256
        levels[0] += packed
        self.size += len(packed) // HASH_SIZE
        level, pair = 0, 2 * HASH_SIZE
        # Level k holds the floor(size / 2^k) complete subtrees; hash the pairs not yet above.
        while len(levels[level]) >= pair:
            if level + 1 == len(levels):
                levels.append(bytearray())
            below, above = levels[level], levels[level + 1]
            done, due = len(above) // HASH_SIZE, len(below) // pair
            if done == due:
                break  # nothing new here, so nothing new higher up either
            above += b"".join(
                [
                    sha(b"\x01" + below[i : i + pair]).digest()
                    for i in range(done * pair, due * pair, pair)
                ]
            )
            level += 1

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _node(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi); the callers only ask for ranges the RFC recursion produces,
        where ``lo`` is a multiple of the largest power of two ≤ hi - lo."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._node(n.bit_length() - 1, lo // n)
        k = _split(n)
        return hash_children(self._hash(lo, lo + k), self._hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """The tree hash of the first ``size`` leaves (default: all). Raises ValueError if
        ``size`` exceeds the tree."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]). Raises ValueError unless 0 ≤ index < size."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        lo, hi, m = 0, size, index
        # Walk down from the root; siblings are collected top-down, the proof lists them bottom-up.
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo, m = lo + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(first, D[second]); empty when first is 0 or equals second.
        Raises ValueError unless 0 ≤ first ≤ second ≤ size."""
        second = self.size if second is None else second
        self._check_size(second)
        if not 0 <= first <= second:
            raise ValueError(f"no consistency proof from size {first} to size {second}")
        if first in (0, second):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, second, first, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            proof.append(self._hash(lo, hi))
        proof.reverse()
        return proof


def _lsb(x: int) -> int:
    return x & 1


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises :class:`ProofError` unless ``leaf`` is leaf ``index`` of the tree
    of ``size`` leaves whose hash is ``expected_root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("proof element of the wrong length")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if _lsb(fn) or fn == sn:
            r = hash_children(p, r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != expected_root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises :class:`ProofError` unless the tree of ``first`` leaves hashing to
    ``first_root`` is a prefix of the tree of ``second`` leaves hashing to ``second_root``."""
    if not 0 <= first <= second:
        raise ProofError(f"tree size {first} cannot precede tree size {second}")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("equal sizes with different roots")
        return
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("proof element of the wrong length")
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if _lsb(fn) or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root:
        raise ProofError("consistency proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("consistency proof does not lead to the second root")
