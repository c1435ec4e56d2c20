"""Audit log benchmark: measured side by side in one run, ratios printed, nothing asserted.

1. Appends/s against raw SQLite inserts of the same rows (the entries, hashes and column values
   the log writes for the same events, all made before the clock starts), ``B`` rows per
   transaction, WAL + synchronous=FULL, on one connection (``B`` = the batch size the store's
   group commit reached on line a). Two raw baselines: into the audit table exactly as the store
   creates it (its columns and its four indexes, by time, dossier, document and citizen, which
   the auditor's queries need), and into a bare table of the same columns with no index. Two
   audit lines, both through the real SQLiteStore and the real ``append``:

   a. one unit of work per append, as the gateway's accept path appends: 256 concurrent callers,
      each awaiting its own appends in turn (as 256 request handlers would); the store's group
      commit batches them. This line carries the store's per-unit asyncio cost (a future, a
      queue hand-off, a wake-up), which a raw insert does not have;
   b. ``B`` appends per unit of work, one unit at a time: batched exactly as the raw side is.

   **The ≥ 50 % target is judged on line b against the audit table**: like with like, the same
   rows into the same table, so the ratio is what the log's own work costs (encoding, two
   SHA-256, the chain head, the store's transaction). The bare table's ratio is printed too: it
   also charges the log for its indexes. Events are built before the clock starts, on every line.
   20,000 per line by default: long enough for both sides to pay WAL checkpoints at their steady
   rate.
2. Verification in entries/s: the whole of ``verify_log`` (read, leaf + chain hashes, Merkle
   tree) and its CPU part alone (the log already read, as the pages verify_log reads). Target
   300,000 entries/s.

    .venv/bin/python -m bench.bench_audit [--events 20000] [--verify 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit import AuditEvent, append
from gateway.audit.chain import PAGE_QUERY, verify_page
from gateway.audit.events import GENESIS
from gateway.audit.merkle import MerkleTree
from gateway.audit.verify import verify_log
from gateway.gil import quick_handoffs
from gateway.store import SQLiteStore, Tx
from gateway.store.queries import queries

__all__ = ["main"]


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        action="dossier.accepted",
        member="VN:GOV:000.00.00.H41",
        subsystem="VN:GOV:000.00.00.H41:motcua",
        service="dossiers.submit",
        dossier=f"000.00.00.H41-261122-{i:04d}",
        request_id=f"req-{i:08d}",
        digests={"body": "ab" * 32},
    )


async def _per_unit(folder: Path, events: list[AuditEvent], callers: int) -> tuple[float, float]:
    """Line a. Return (appends/s, mean units per commit)."""
    async with SQLiteStore(folder / "per-unit.db") as store:

        async def caller(mine: list[AuditEvent]) -> None:
            for event in mine:
                await store.transact(lambda tx, e=event: append(tx, e))

        started = time.perf_counter()
        await asyncio.gather(*(caller(events[c::callers]) for c in range(callers)))
        elapsed = time.perf_counter() - started
        return len(events) / elapsed, store.units / max(1, store.commits)


async def _batched(folder: Path, events: list[AuditEvent], batch: int) -> float:
    """Line b: ``batch`` appends per unit of work, one unit after the other."""
    async with SQLiteStore(folder / "batched.db") as store:
        chunks = [events[i : i + batch] for i in range(0, len(events), batch)]

        def work(tx: Tx, chunk: list[AuditEvent]) -> None:
            for event in chunk:
                append(tx, event)

        started = time.perf_counter()
        for chunk in chunks:
            await store.transact(lambda tx, c=chunk: work(tx, c))
        return len(events) / (time.perf_counter() - started)


def _raw_rows(events: list[AuditEvent]) -> list[tuple[Any, ...]]:
    """The rows the audit log writes for ``events``, made before any clock starts: the same JSON
    entries (seq and time first), their two hashes, the same column values."""
    at = "2026-11-22T02:15:00.%06d+00:00"
    rows = []
    chain = b"\x00" * 32
    for seq, e in enumerate(events):
        when = at % (seq % 1_000_000)
        entry = b'{"seq":%d,"at":"%s",' % (seq, when.encode()) + msgspec.json.encode(e)[1:]
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        chain = hashlib.sha256(chain + leaf).digest()
        columns = (e.action, e.member, e.service, e.dossier, e.document, e.citizen)
        rows.append((seq, when, *columns, entry, leaf, chain))
    return rows


def _raw_inserts(folder: Path, rows: list[tuple[Any, ...]], batch: int, *, indexed: bool) -> float:
    """Plain INSERTs of ``rows``, ``batch`` per transaction, WAL + synchronous=FULL, into the
    audit table as the store creates it (``indexed``: its columns and four indexes) or into a
    bare table of the same columns with no index but the primary key."""
    conn = sqlite3.connect(folder / f"raw-{indexed}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    if indexed:
        conn.executescript(queries()["audit.schema"])
    else:
        conn.execute(
            "CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, at TEXT, action TEXT, "
            "member TEXT, service TEXT, dossier TEXT, document TEXT, citizen TEXT, entry BLOB, "
            "leaf_hash BLOB, chain_hash BLOB)"
        )
    chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    started = time.perf_counter()
    for chunk in chunks:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


async def _fill(store: SQLiteStore, n: int) -> None:
    chunk = 2000
    for first in range(0, n, chunk):

        def work(tx: Tx, first: int = first) -> None:
            for i in range(first, min(n, first + chunk)):
                append(tx, _event(i))

        await store.transact(work)


async def _verify(folder: Path, n: int, runs: int) -> tuple[list[float], list[float]]:
    async with SQLiteStore(folder / "verify.db") as store:
        await _fill(store, n)
        full: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            with quick_handoffs():  # as `lienthong audit verify` runs it
                report = await verify_log(store)
            elapsed = time.perf_counter() - started
            assert report.ok and report.entries == n, report.problems  # correctness, not time
            full.append(n / elapsed)
        (page,) = await store.read(lambda tx: tx.tuples(PAGE_QUERY, start=0, stop=n))
    cpu: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        leaves = bytearray()
        checked = verify_page(page, start_seq=0, prev=GENESIS, leaves=leaves)
        tree = MerkleTree()
        tree.extend_packed(leaves)
        tree.root()
        elapsed = time.perf_counter() - started
        assert checked is not None and tree.size == n
        cpu.append(n / elapsed)
    return full, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--verify", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args([] if argv is None else argv)

    events = [_event(i) for i in range(args.events)]
    rows = _raw_rows(events)
    unit, batched, raw, bare, sizes = [], [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
            folder = Path(tmp)
            rate, per_commit = asyncio.run(_per_unit(folder, events, args.concurrency))
            # Raw and line b get the batch size the store reached: the same fsyncs per row.
            size = max(1, round(per_commit))
            unit.append(rate)
            sizes.append(size)
            raw.append(_raw_inserts(folder, rows, size, indexed=True))
            bare.append(_raw_inserts(folder, rows, size, indexed=False))
            batched.append(asyncio.run(_batched(folder, events, size)))

    # Ratios run by run (each pair shares that run's machine noise), then their median.
    def ratio(mine: list[float], base: list[float]) -> float:
        return statistics.median(m / b for m, b in zip(mine, base, strict=True))

    b_ratio = ratio(batched, raw)
    size = round(statistics.median(sizes))
    print(f"cpu count {os.cpu_count()}, {args.runs} runs, medians; {args.events:,} events per line")
    print(f"raw batched inserts of the same rows (synchronous=FULL, ≈{size} per commit):")
    print(f"  into the audit table (its columns, its 4 indexes): {_m(raw)} /s")
    print(f"  into a bare table (same columns, no index):        {_m(bare)} /s")
    print(
        f"(b) audit appends, ≈{size} per unit of work, as raw:    {_m(batched)} /s  "
        f"{b_ratio:4.0%} of raw  <- target >= 50%: {'met' if b_ratio >= 0.5 else 'NOT met'}"
        f"  ({ratio(batched, bare):.0%} of the bare table)"
    )
    print(
        f"(a) audit appends, one unit of work each (gateway):     {_m(unit)} /s  "
        f"{ratio(unit, raw):4.0%} of raw  (+ the store's per-unit asyncio cost; "
        f"≈{size} units per commit; {ratio(unit, bare):.0%} of the bare table)"
    )

    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
        full, cpu = asyncio.run(_verify(Path(tmp), args.verify, args.runs))
    f = statistics.median(full)
    print(
        f"verify_log over {args.verify:,} entries (read + chain + tree): {_m(full)} entries/s "
        f"({f / 300_000:.0%} of the 300,000 target: {'met' if f >= 300_000 else 'NOT met'})"
    )
    print(f"  of which CPU only (pages in memory):                {_m(cpu)} entries/s")


def _m(rates: list[float]) -> str:
    return f"{statistics.median(rates):>10,.0f}"


if __name__ == "__main__":
    main()
