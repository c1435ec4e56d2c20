"""Proofs served from the stored log: a shared, growing Merkle tree read from the leaf hashes.

One :class:`LogTree` per process (the auditor API keeps one in the app): it reads only the leaves
it has not seen yet, hashes them in a worker thread, and answers inclusion and consistency proofs
for any size up to the log's in O(log n). Proofs are computed from what the store holds; an auditor
checks them against a *signed* checkpoint root, which is what makes them evidence.

A crash of the store can lose the last entries (lookups' events, committed without waiting for the
sync), and new ones then take their sequence numbers: before it answers, the tree checks that the
store still holds its last leaf, and reads the log again if not.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from gateway.store import Row, Store, Tx
from gateway.threadwork import to_its_end

from .merkle import MerkleTree

__all__ = ["LogTree", "ProofUnavailable"]

log = logging.getLogger("lienthong.audit.proofs")

_PAGE = 20000


class ProofUnavailable(ValueError):
    """The proof asked for is impossible for the log as stored (index ≥ size, size > log, …)."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class LogTree:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.tree = MerkleTree()
        self._lock = asyncio.Lock()

    async def sync(self, upto: int | None = None) -> int:
        """Read new leaves (all, or until the tree has ``upto``); return the tree size.

        A tree whose last leaf the store no longer holds (entries lost in a crash of the store,
        or removed) is read again from the start, and :attr:`tree` replaced once it is whole.

        Raises :class:`ProofUnavailable` if the log has a gap (a removed entry) where leaves are
        read; raises StoreError if the store fails.
        """
        async with self._lock:
            tree = self.tree
            if tree.size and not await self._holds(tree):
                # A crash loses a suffix of the commits (the WAL is replayed in order): a store
                # that still holds the last leaf read holds every one before it. Else the tree
                # has leaves the signed log does not: its proofs would match no checkpoint, and
                # every export would be refused until the gateway restarted.
                log.warning(
                    "audit proofs: the log no longer holds entry %d as it was read (entries "
                    "lost in a crash of the store?): reading it again",
                    tree.size - 1,
                )
                tree = MerkleTree()
            try:
                await self._extend(tree, upto)
            finally:
                self.tree = tree  # whole: proofs may be taken from it as far as it goes
            return tree.size

    async def _holds(self, tree: MerkleTree) -> bool:
        last = tree.size - 1
        rows = await self.store.read(lambda tx: tx.all("audit.leaves", start=last, stop=last + 1))
        return bool(rows) and bytes(rows[0]["leaf_hash"]) == tree.leaf(last)

    async def _extend(self, tree: MerkleTree, upto: int | None) -> None:
        while upto is None or tree.size < upto:
            start = tree.size
            stop = start + _PAGE if upto is None else min(upto, start + _PAGE)

            def page(tx: Tx, start: int = start, stop: int = stop) -> list[Row]:
                return tx.all("audit.leaves", start=start, stop=stop)

            rows = await self.store.read(page)
            if not rows:
                break
            if rows[-1]["seq"] != start + len(rows) - 1:
                raise ProofUnavailable(f"the stored log has a gap after entry {start}")
            leaves = [bytes(r["leaf_hash"]) for r in rows]
            await to_its_end(asyncio.to_thread(tree.extend, leaves))

    async def inclusion(self, index: int, size: int) -> dict[str, Any]:
        """Raises ProofUnavailable unless 0 ≤ index < size ≤ log size."""
        if not 0 <= index < size:
            raise ProofUnavailable(f"leaf {index} is not in a tree of size {size}")
        if await self.sync(size) < size:
            raise ProofUnavailable(f"the log has fewer than {size} entries")
        proof = self.tree.inclusion_proof(index, size)
        return {
            "index": index,
            "size": size,
            "leaf_hash": _b64(self.tree.leaf(index)),
            "root": _b64(self.tree.root(size)),
            "proof": [_b64(p) for p in proof],
        }

    async def consistency(self, first: int, second: int) -> dict[str, Any]:
        """Raises ProofUnavailable unless 0 ≤ first ≤ second ≤ log size."""
        if not 0 <= first <= second:
            raise ProofUnavailable(f"no consistency proof from {first} to {second}")
        if await self.sync(second) < second:
            raise ProofUnavailable(f"the log has fewer than {second} entries")
        proof = self.tree.consistency_proof(first, second)
        return {
            "first": first,
            "second": second,
            "first_root": _b64(self.tree.root(first)),
            "second_root": _b64(self.tree.root(second)),
            "proof": [_b64(p) for p in proof],
        }
