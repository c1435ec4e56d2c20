"""Audit log benchmark: measured side by side in one run, ratios printed, nothing asserted.

1. Appends/s: audit events through the real SQLiteStore (one writer thread, group commit,
   synchronous=FULL), each event its own unit of work as the gateway's accept path does, many in
   flight at once — against raw SQLite inserts of rows of the same size, batched as the store's
   group commit ended up batching them, with synchronous=FULL, on one connection. Target ≥ 50 %.
2. Verification in entries/s: the whole of ``verify_log`` (read, leaf + chain hashes, Merkle
   tree) and its CPU part alone (rows already in memory). Target 300,000 entries/s.

    .venv/bin/python -m bench.bench_audit [--events 5000] [--verify 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from gateway.audit import AuditEvent, append
from gateway.audit.chain import verify_rows
from gateway.audit.merkle import MerkleTree
from gateway.audit.verify import verify_log
from gateway.store import SQLiteStore

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


async def _store_appends(folder: Path, n: int, concurrency: int) -> tuple[float, float]:
    """Return (appends/s, mean units per commit)."""
    async with SQLiteStore(folder / "audit.db") as store:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await store.transact(lambda tx: append(tx, _event(i)))

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        return n / elapsed, store.units / max(1, store.commits)


def _raw_inserts(folder: Path, n: int, batch: int) -> float:
    """Plain INSERTs of a ~same-size row, ``batch`` per transaction, WAL + synchronous=FULL."""
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, at TEXT, action TEXT, member TEXT, "
        "service TEXT, dossier TEXT, entry BLOB, leaf BLOB, chain BLOB)"
    )
    entry = b"x" * 330
    h = b"h" * 32
    started = time.perf_counter()
    for first in range(0, n, batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    "2026-11-22T02:15:00.000000+00:00",
                    "dossier.accepted",
                    "VN:GOV:H41",
                    "dossiers.submit",
                    f"D{i}",
                    entry,
                    h,
                    h,
                )
                for i in range(first, min(n, first + batch))
            ],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


async def _fill(store: SQLiteStore, n: int) -> None:
    chunk = 2000
    for first in range(0, n, chunk):

        def work(tx: object, first: int = first) -> None:
            for i in range(first, min(n, first + chunk)):
                append(tx, _event(i))  # type: ignore[arg-type]

        await store.transact(work)


async def _verify(folder: Path, n: int, runs: int) -> tuple[list[float], list[float], float]:
    async with SQLiteStore(folder / "verify.db") as store:
        started = time.perf_counter()
        await _fill(store, n)
        bulk = n / (time.perf_counter() - started)
        full: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            report = await verify_log(store)
            elapsed = time.perf_counter() - started
            assert report.ok and report.entries == n, report.problems  # correctness, not time
            full.append(n / elapsed)
        rows = await store.read(lambda tx: tx.all("audit.range", start=0, stop=n))
    cpu: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        chain = verify_rows(rows)
        tree = MerkleTree(bytes(r["leaf_hash"]) for r in rows)
        tree.root()
        elapsed = time.perf_counter() - started
        assert chain.ok and tree.size == n
        cpu.append(n / elapsed)
    return full, cpu, bulk


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--verify", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args([] if argv is None else argv)

    audit, raw, batches = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
            rate, per_commit = asyncio.run(_store_appends(Path(tmp), args.events, args.concurrency))
            audit.append(rate)
            batches.append(per_commit)
            # The raw baseline gets the batch size the store reached: same fsyncs per row.
            raw.append(_raw_inserts(Path(tmp), args.events, max(1, round(per_commit))))
    a, r = statistics.median(audit), statistics.median(raw)
    print(f"cpu count {os.cpu_count()}, {args.runs} runs, medians")
    print(
        f"audit appends (SQLiteStore, group commit): {a:>10,.0f} /s "
        f"(≈{statistics.median(batches):.0f} units per commit)"
    )
    print(f"raw batched inserts (synchronous=FULL):    {r:>10,.0f} /s")
    print(f"ratio audit/raw: {a / r:.0%} (target >= 50%)")

    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
        full, cpu, bulk = asyncio.run(_verify(Path(tmp), args.verify, args.runs))
    f, c = statistics.median(full), statistics.median(cpu)
    print(
        f"verify_log over {args.verify:,} entries (read + chain + tree): {f:>10,.0f} entries/s "
        f"({f / 300_000:.0%} of the 300,000 target)"
    )
    print(f"  of which CPU only (rows in memory):            {c:>10,.0f} entries/s")
    # Where append time goes: the same append() with 2000 events per unit of work, i.e. without
    # the per-unit cost (future, SAVEPOINT/RELEASE, thread hand-off) of the accept path.
    print(f"append() alone, 2000 events per unit:           {bulk:>10,.0f} /s")


if __name__ == "__main__":
    main()
