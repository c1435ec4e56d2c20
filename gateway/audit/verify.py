"""Verify the whole audit log: entries, hash chain, Merkle tree, checkpoints and their timestamps.

What each check catches:

- the chain (:func:`gateway.audit.chain.verify_rows`): a modified, removed, reordered or inserted
  entry, located at its sequence number;
- the tree against every checkpoint: a log rewritten consistently (chain hashes recomputed) after a
  checkpoint was signed — located to the range between two checkpoints — and a **truncated** log
  (entries removed from the end), which the chain alone cannot see: the latest checkpoint's size
  is larger than the log;
- each checkpoint: its signature, its note against its columns, and (with a trust store) the signer
  chain and the RFC 3161 timestamp over the note — a forged checkpoint or a swapped timestamp;
- consecutive checkpoints: an RFC 9162 consistency proof from the recomputed tree.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gateway.store import Row, Store, Tx

from .chain import verify_rows
from .checkpoints import Checkpoint, CheckpointError, load_checkpoints, verify_checkpoint
from .events import GENESIS
from .merkle import MerkleTree, ProofError, verify_consistency

__all__ = ["LogReport", "verify_log"]

_PAGE = 20000


@dataclass
class LogReport:
    """The verdict. ``first_bad_entry`` is a sequence number, ``first_bad_checkpoint`` a size."""

    entries: int = 0
    checkpoints: int = 0
    first_bad_entry: int | None = None
    first_bad_checkpoint: int | None = None
    problems: list[str] = field(default_factory=list)
    checked: list[dict[str, Any]] = field(default_factory=list)  # one per checkpoint

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.ok:
            return (
                f"audit log intact: {self.entries} entries, {self.checkpoints} checkpoints verified"
            )
        return "audit log FAILED: " + "; ".join(self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "first_bad_entry": self.first_bad_entry,
            "first_bad_checkpoint": self.first_bad_checkpoint,
            "problems": self.problems,
            "checked": self.checked,
        }


def _page(rows: list[Row], start: int, prev: bytes, tree: MerkleTree) -> tuple[bool, int, str]:
    """Check one page of rows and grow the tree with the good ones (runs in a worker thread)."""
    report = verify_rows(rows, start_seq=start, prev=prev)
    good = rows[: report.entries]
    tree.extend(bytes(r["leaf_hash"]) for r in good)
    return report.ok, report.first_bad if report.first_bad is not None else -1, report.problem or ""


async def verify_log(store: Store, trust: Any | None = None) -> LogReport:
    """Check everything; never raises for a bad log (the report says what failed, and where).

    ``trust`` is a :class:`signing.trust.TrustStore`; without it, checkpoint signatures are
    checked with the certificate stored beside them but chains and timestamps are not.
    Raises :class:`gateway.store.StoreError` only if the store cannot be read.
    """
    report = LogReport()
    try:
        checkpoints = await load_checkpoints(store)
    except CheckpointError as exc:
        report.problems.append(f"checkpoint {exc.size}: {exc}")
        report.first_bad_checkpoint = exc.size
        checkpoints = []
    tree = MerkleTree()
    start, prev = 0, GENESIS
    while True:

        def read(tx: Tx, start: int = start) -> list[Row]:
            return tx.all("audit.range", start=start, stop=start + _PAGE)

        rows = await store.read(read)
        if not rows:
            break
        ok, bad, problem = await asyncio.to_thread(_page, rows, start, prev, tree)
        if not ok:
            report.first_bad_entry = bad
            report.problems.append(f"entry {bad}: {problem}")
            break
        start += len(rows)
        prev = bytes(rows[-1]["chain_hash"])
    report.entries = tree.size
    await _check_checkpoints(report, checkpoints, tree, trust)
    return report


async def _check_checkpoints(
    report: LogReport, checkpoints: list[Checkpoint], tree: MerkleTree, trust: Any | None
) -> None:
    previous: Checkpoint | None = None
    chain_broken = report.first_bad_entry is not None
    for cp in checkpoints:
        report.checkpoints += 1
        check = await verify_checkpoint(cp, trust)
        status: dict[str, Any] = {
            "size": cp.size,
            "at": cp.at,
            "signer": check.signer,
            "tsa": check.tsa,
            "timestamp_time": check.timestamp_time,
        }
        problem = check.problem
        if problem is None:
            problem = _against_tree(cp, previous, tree, chain_broken)
        status["ok"] = problem is None
        status["problem"] = problem
        report.checked.append(status)
        if problem is not None:
            report.problems.append(f"checkpoint {cp.size}: {problem}")
            if report.first_bad_checkpoint is None:
                report.first_bad_checkpoint = cp.size
            continue  # a bad checkpoint is no base for the next consistency proof
        previous = cp


def _against_tree(
    cp: Checkpoint, previous: Checkpoint | None, tree: MerkleTree, chain_broken: bool
) -> str | None:
    if cp.size > tree.size:
        if chain_broken:
            return f"covers {cp.size} entries; the log is intact only up to {tree.size}"
        return (
            f"covers {cp.size} entries but the log has {tree.size}: "
            f"entries {tree.size}..{cp.size - 1} were removed (log truncated)"
        )
    if tree.root(cp.size) != cp.root:
        since = previous.size if previous is not None else 0
        return (
            f"root does not match the log: an entry in {since}..{cp.size - 1} "
            "was altered and the chain rewritten"
        )
    if previous is not None:
        proof = tree.consistency_proof(previous.size, cp.size)
        try:
            verify_consistency(previous.size, cp.size, previous.root, cp.root, proof)
        except ProofError as exc:
            return f"not consistent with checkpoint {previous.size}: {exc}"
    return None
