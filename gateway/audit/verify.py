"""Verify the whole audit log (entries, chain, tree, checkpoints, timestamps) and evidence bundles.

What each check catches:

- the chain (:func:`gateway.audit.chain.verify_rows`): a modified, removed, reordered or inserted
  entry, located at its sequence number, and an entry whose indexed columns (what queries, exports
  and the access report select by) differ from its own fields, or whose rows of the index of the
  people it disclosed (``audit_discloses``) differ from its ``discloses``; and a row of that index
  naming no entry;
- the tree against every checkpoint: a log rewritten consistently (chain hashes recomputed) after a
  checkpoint was signed — located to the range between two checkpoints — and a **truncated** log
  (entries removed from the end), which the chain alone cannot see: the latest checkpoint's size
  is larger than the log;
- each checkpoint: its signature, its note against its columns, and (with a trust store) the signer
  chain and the RFC 3161 timestamp over the note — a forged checkpoint or a swapped timestamp;
- who signed: with ``signers`` (the audit signers' certificates) every checkpoint must be signed by
  one of their keys, and with ``origin`` carry the log's name. Trust anchors alone do not say whose
  key signs the log: an agency's certificate chains to the same national root. Without ``signers``
  the report says the signer was not pinned, names who signed, and every checkpoint must carry the
  same key and origin as the first (a log has one signer) — the caller must compare that signer
  with the gateway's published audit certificate;
- consecutive checkpoints: an RFC 9162 consistency proof from the recomputed tree;
- coverage: a log is only as good as the signed checkpoints that cover it. Entries past the latest
  good checkpoint are named in the report (``uncovered``), and they fail the log once the
  gateway's checkpoint policy (:class:`CheckpointPolicy`: ``[audit] checkpoint_every``,
  ``checkpoint_interval_s``, and ``fail_closed_after_s`` or a minute of grace) says a checkpoint
  should have covered them: judged against the log's newest entry when a checkpoint covers part
  of the log (an auditor's copy verified days later still passes), against the verifier's clock
  when none does (nothing signed vouches for any of it: only a gateway whose first checkpoint is
  not yet due passes). A log rewritten whole with its checkpoints deleted fails here. One whose
  later checkpoints were deleted fails only when the entries past the latest one left span more
  than the policy allows (judged against the newest entry): the newest checkpoint deleted, and
  entries only it covered rewritten with their hashes, pass — only a copy of that checkpoint
  kept elsewhere shows it. Nothing signed vouches for those entries' times either: the due time
  runs from the oldest of them, and one dated after the verifier's clock (beyond
  :data:`~gateway.audit.checkpoints.CLOCK_TOLERANCE`) fails the log by itself;
- checkpoints are read a page at a time (:data:`_CHECKPOINT_PAGE`), in order: only those stored
  when the verification started (a running gateway's later ones cover entries it may not have
  read).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import zipfile
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.store import QueryError, Row, Store, StoreError, Tx

from .bundle import (
    BUNDLE_FORMAT,
    MANIFEST_KEYS,
    MAX_MEMBER,
    MAX_TOTAL,
    bundle_json,
    bundle_members,
    in_layout,
    readme_text,
    scope_test,
    tsa_certificates,
)
from .chain import (
    DISCLOSES_OUTSIDE,
    PAGE_QUERY,
    VERIFY_QUERY,
    discloses_outside,
    out_of_sequence,
    verify_page,
    verify_rows,
)
from .checkpoints import (
    CLOCK_TOLERANCE,
    Checkpoint,
    CheckpointCheck,
    CheckpointError,
    parse_note,
    rows_one_by_one,
    verify_checkpoint,
)
from .events import GENESIS, decode_entry, leaf_hash
from .merkle import MerkleTree, ProofError, verify_consistency, verify_inclusion

__all__ = ["BundleReport", "CheckpointPolicy", "LogReport", "verify_bundle", "verify_log"]

_PAGE = 4000  # entries per read: small enough that the first read, which nothing overlaps, is short
_AHEAD = 2  # pages read ahead: the store's readers


_UNPINNED = (
    "signer not pinned (checked against the trust anchors only, which any certificate issued "
    "under them satisfies): signed by "
)


@dataclass
class _Signers:
    """Who signed the good checkpoints seen so far; without pins, the one-signer rule."""

    pinned: bool  # the caller named the signers' keys
    origin_pinned: bool
    seen: list[dict[str, str]] = field(default_factory=list)  # name, key_sha256, origin
    first: tuple[int, str, str] | None = None  # size, key, origin of the first good checkpoint

    def check(self, size: int, check: CheckpointCheck) -> str | None:
        """Record a verified checkpoint's signer; say why it breaks the rule, if it does."""
        key, origin = check.key or "", check.origin or ""
        if self.first is None:
            self.first = (size, key, origin)
        first, first_key, first_origin = self.first
        if not self.pinned and key != first_key:
            return (
                f"signed by {_who(check.signer, key)}, checkpoint {first} by another key "
                f"(sha256:{first_key[:16]}): a log has one audit signer; pin the signers to "
                "accept several"
            )
        if not self.origin_pinned and origin != first_origin:
            return f"origin {origin!r} differs from checkpoint {first}'s ({first_origin!r})"
        signer = {"name": check.signer or "", "key_sha256": key, "origin": origin}
        if signer not in self.seen:
            self.seen.append(signer)
        return None

    def describe(self) -> str:
        return ", ".join(_who(s["name"], s["key_sha256"]) for s in self.seen)

    def tell(self, report: LogReport | BundleReport) -> None:
        """Put who signed in ``report``, with a note when no signer was pinned."""
        report.signers = self.seen
        if self.seen and not self.pinned:
            report.notes.append(_UNPINNED + self.describe())


def _who(name: str | None, key: str) -> str:
    return f"{name} [key sha256:{key[:16]}]"


def _line(text: str) -> str:
    """One line: a problem quoting a parser (asn1crypto's "while parsing …") may hold several."""
    return " ".join(text.split())


@dataclass(frozen=True, kw_only=True)
class CheckpointPolicy:
    """How soon the gateway signs a checkpoint over new entries: when ``every`` entries have
    arrived or ``interval_s`` has passed (``[audit] checkpoint_every``, ``checkpoint_interval_s``),
    give or take ``grace_s`` (polling, signing, the TSA; ``[audit] fail_closed_after_s`` when that
    is longer, as the gateway keeps working that long without checkpoints)."""

    every: int = 1000
    interval_s: float = 60.0
    grace_s: float = 60.0

    @classmethod
    def from_settings(cls, audit: Any) -> CheckpointPolicy:
        """From ``settings.audit`` (:class:`gateway.settings.AuditSettings`)."""
        return cls(
            every=audit.checkpoint_every,
            interval_s=audit.checkpoint_interval_s,
            grace_s=max(60.0, float(audit.fail_closed_after_s)),
        )

    def describe(self) -> str:
        return (
            f"the gateway signs one every {self.every} entries or {self.interval_s:g} s, "
            f"{self.grace_s:g} s of grace"
        )


@dataclass
class LogReport:
    """The verdict. ``first_bad_entry`` is a sequence number, ``first_bad_checkpoint`` a size.
    ``signers``: who signed the good checkpoints (name, key_sha256, origin); ``signer_pinned``:
    whether they were checked against the expected audit signers or only against the anchors."""

    entries: int = 0
    checkpoints: int = 0
    first_bad_entry: int | None = None
    first_bad_checkpoint: int | None = None
    problems: list[str] = field(default_factory=list)
    checked: list[dict[str, Any]] = field(default_factory=list)  # one per checkpoint, if asked
    signers: list[dict[str, str]] = field(default_factory=list)
    signer_pinned: bool = False
    notes: list[str] = field(default_factory=list)
    covered: int = 0  # entries 0..covered-1 are in a good checkpoint's tree
    uncovered: tuple[int, int] | None = None  # first and last entry no good checkpoint covers
    checkpoint_due_by: str | None = None  # when the policy wants them covered

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.ok:
            text = (
                f"audit log intact: {self.entries} entries, {self.checkpoints} checkpoints verified"
            )
            if self.signers:
                who = ", ".join(_who(s["name"], s["key_sha256"]) for s in self.signers)
                text += f", signed by {who}" + ("" if self.signer_pinned else " (not pinned)")
            if self.uncovered is not None:
                first, last = self.uncovered
                text += (
                    f"; entries {first}..{last} are covered by no signed checkpoint yet "
                    f"(one is due by {self.checkpoint_due_by})"
                )
            return text
        return "audit log FAILED: " + "; ".join(_line(p) for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "first_bad_entry": self.first_bad_entry,
            "first_bad_checkpoint": self.first_bad_checkpoint,
            "problems": self.problems,
            "checked": self.checked,
            "signers": self.signers,
            "signer_pinned": self.signer_pinned,
            "notes": self.notes,
            "covered": self.covered,
            "uncovered": list(self.uncovered) if self.uncovered is not None else None,
            "checkpoint_due_by": self.checkpoint_due_by,
        }


def _fast(page: Sequence[Any], start: int, prev: bytes, tree: MerkleTree) -> bytes | None:
    """Check a page read with PAGE_QUERY and grow the tree with it; the chain hash of its last
    entry, or None if it must be checked row by row (runs in a worker thread)."""
    leaves = bytearray()
    last = verify_page(page, start_seq=start, prev=prev, leaves=leaves)
    if last is not None:
        tree.extend_packed(leaves)
    return last


async def _unreadable(store: Store, start: int, failure: QueryError) -> int:
    """The first entry of the page at ``start`` whose row the store cannot read (SQLite: a text
    column that is not UTF-8, written around the gateway), found by halving the page; raises
    ``failure`` if no row fails on its own."""

    async def readable(first: int, stop: int) -> bool:
        try:
            await store.read(lambda tx: tx.tuples(VERIFY_QUERY, start=first, stop=stop))
        except QueryError:
            return False
        return True

    low, high = start, start + _PAGE  # the first unreadable row is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if await readable(low, middle) else (low, middle)
    if await readable(low, low + 1):
        raise failure
    return low


def _rows(
    rows: list[tuple[Any, ...]], start: int, prev: bytes, tree: MerkleTree
) -> tuple[bool, int, str]:
    """Check one page of rows and grow the tree with the good ones (runs in a worker thread)."""
    leaves = bytearray()
    report = verify_rows(rows, start_seq=start, prev=prev, leaves=leaves)
    tree.extend_packed(leaves)
    return report.ok, report.first_bad if report.first_bad is not None else -1, report.problem or ""


async def verify_log(
    store: Store,
    trust: Any | None = None,
    *,
    signers: Sequence[x509.Certificate] | None = None,
    origin: str | None = None,
    policy: CheckpointPolicy | None = None,
    now: datetime | None = None,
    keep_checked: bool = True,
) -> LogReport:
    """Check everything; never raises for a bad log (the report says what failed, and where).

    ``trust`` is a :class:`signing.trust.TrustStore`; without it, checkpoint signatures are
    checked with the certificate stored beside them but chains and timestamps are not.
    ``signers``: the certificates of the audit keys (the configured one, and any it replaced);
    ``origin``: the log's name (``[audit] origin``). See the module's docstring for what is
    checked without them. ``policy``: when the gateway checkpoints (default: the settings'
    defaults), which says how long entries may go uncovered; ``now``: the verifier's clock (a
    log no checkpoint covers is judged against it). ``keep_checked``: keep each checkpoint's verdict
    in :attr:`LogReport.checked` (``--json`` prints them), about 1 KB each; without it, the
    checkpoints take no memory beyond the page being checked, however many there are. Raises
    :class:`gateway.store.StoreError` only if the store cannot be read.
    """
    report = LogReport(signer_pinned=signers is not None)
    # The checkpoints stored now cover entries stored now: a running gateway's later ones may
    # cover entries appended after the walk below read the log's end (it would read as truncated).
    newest = await store.read(lambda tx: tx.one("checkpoints.newest_size"))
    upto = -1 if newest is None or newest["size"] is None else int(newest["size"])
    tree = MerkleTree()
    start, prev = 0, GENESIS

    def read(query: str, first: int) -> Awaitable[list[tuple[Any, ...]]]:
        return store.read(lambda tx: tx.tuples(query, start=first, stop=first + _PAGE))

    def failed(entry: int, problem: str) -> None:
        report.first_bad_entry = entry
        report.problems.append(_line(f"entry {entry}: {problem}"))

    async def row_by_row() -> tuple[int, bytes] | None:
        """Check the page at ``start`` row by row, growing the tree with its good entries: how
        many it holds and the last one's chain hash, or None when one failed (reported)."""
        unreadable = None
        try:
            rows = await read(VERIFY_QUERY, start)
        except QueryError as exc:  # a row the store cannot hand over: the rows before it first
            bad = await _unreadable(store, start, exc)
            rows = await store.read(lambda tx: tx.tuples(VERIFY_QUERY, start=start, stop=bad))
            unreadable = (bad, f"the store cannot read it ({exc})")
        ok, bad, problem = await asyncio.to_thread(_rows, rows, start, prev, tree)
        if not ok:
            failed(bad, problem)
            return None
        if unreadable is not None:
            failed(*unreadable)
            return None
        return len(rows), bytes(rows[-1][3]) if rows else prev

    # The store builds a page without holding the GIL, so the next pages are read while this one
    # is checked: _AHEAD of them at once, as the store has readers, since each read also waits
    # for the GIL the check holds (to start, and to hand its row over).
    ahead: deque[asyncio.Future[list[tuple[Any, ...]]]] = deque()
    requested = 0  # the first entry of the next page to ask for

    def read_ahead() -> None:
        nonlocal requested
        while len(ahead) < _AHEAD:
            ahead.append(asyncio.ensure_future(read(PAGE_QUERY, requested)))
            requested += _PAGE

    try:
        read_ahead()
        while True:
            try:
                (page,) = await ahead.popleft()  # an aggregate: one row, even past the end
            except StoreError:  # a column the store cannot write as JSON (a blob): row by row
                page = None
            read_ahead()
            if page is not None and not page[0]:
                break  # past the log's end
            if page is not None and (
                last := await asyncio.to_thread(_fast, page, start, prev, tree)
            ):
                n = page[0]
            else:
                # Something in this page failed, or cannot be checked in one piece: the
                # row-by-row check says what, and where (or raises if the store cannot be read).
                checked = await row_by_row()
                if checked is None:
                    break
                n, last = checked
            if n < _PAGE:
                break  # the log's end, when this page was read
            start, prev = start + n, last
    finally:
        await asyncio.gather(*ahead, return_exceptions=True)  # no read outlives the verifier
    if report.first_bad_entry is None:
        # The pages end at the first short one: a row stored past a gap there was never read.
        beyond = await _stored_beyond(store, tree.size)
        if beyond is not None:
            failed(*beyond)
        else:
            outside = await store.read(lambda tx: tx.one(DISCLOSES_OUTSIDE, size=tree.size))
            if (orphan := discloses_outside(outside, tree.size)) is not None:
                failed(*orphan)
    report.entries = tree.size
    who = _Signers(pinned=signers is not None, origin_pinned=origin is not None)
    pages = _checkpoints(store, upto)
    await _check_checkpoints(report, pages, tree, trust, who, signers, origin, keep=keep_checked)
    who.tell(report)
    if report.first_bad_entry is None and report.entries > report.covered:
        await _coverage(report, store, policy or CheckpointPolicy(), now or datetime.now(UTC))
    return report


async def _stored_beyond(store: Store, size: int) -> tuple[int, str] | None:
    """A row stored outside entries 0..size-1 (after a gap, or before 0): where, and why. Entry
    ``size`` itself is no such row: a running gateway appended it after the last page was read."""
    row = await store.read(lambda tx: tx.one("audit.count"))
    if (int(row["n"]) if row is not None else 0) == size:
        return None
    filters = dict.fromkeys(("start", "stop", "member", "service", "dossier", "document"))

    def first_after(after: int) -> Callable[[Any], list[Any]]:
        return lambda tx: tx.all("audit.query", after=after, limit=1, citizen=None, **filters)

    after = await store.read(first_after(size - 1))
    if after and int(after[0]["seq"]) != size:
        return size, out_of_sequence(size, int(after[0]["seq"]))
    before = await store.read(first_after(-(2**63)))
    if before and int(before[0]["seq"]) < 0:
        return int(before[0]["seq"]), "stored before entry 0 (inserted out of sequence)"
    return None


# Checkpoints read at a time (~6 KB each as stored, a few times that parsed): what `audit verify`
# holds of them at once, where it read every one first (100,000 of them, 69 days at the default
# interval, took 1.7 GB).
_CHECKPOINT_PAGE = 500


async def _checkpoints(
    store: Store, upto: int
) -> AsyncIterator[list[Checkpoint | CheckpointError]]:
    """The checkpoints up to size ``upto``, smallest first, a page at a time, each parsed (in a
    worker thread) or, for a row that cannot be, the CheckpointError that names it."""
    after = -1
    while after < upto:

        def page(tx: Tx, after: int = after) -> list[Row]:
            return tx.all("checkpoints.after", after=after, upto=upto, limit=_CHECKPOINT_PAGE)

        try:
            rows: list[Row | CheckpointError] = list(await store.read(page))
        except QueryError as failure:  # a row the store cannot hand over: the others one by one
            rows = await _one_by_one(store, after, upto, failure)
        if not rows:
            return
        last = rows[-1]
        if isinstance(last, CheckpointError):
            assert last.size is not None  # _one_by_one names each row it could not read
            after = last.size
        else:
            after = int(last["size"])
        yield await asyncio.to_thread(_parsed, rows)
        del rows


def _parsed(rows: list[Row | CheckpointError]) -> list[Checkpoint | CheckpointError]:
    out: list[Checkpoint | CheckpointError] = []
    for row in rows:
        try:
            out.append(row if isinstance(row, CheckpointError) else Checkpoint.from_row(row))
        except CheckpointError as exc:
            out.append(exc)
    return out


async def _one_by_one(
    store: Store, after: int, upto: int, failure: QueryError
) -> list[Row | CheckpointError]:
    """The page after ``after`` read row by row (checkpoints.rows_one_by_one)."""
    sizes = await store.read(
        lambda tx: tx.all("checkpoints.sizes_after", after=after, upto=upto, limit=_CHECKPOINT_PAGE)
    )
    return await rows_one_by_one(store, [int(r["size"]) for r in sizes], failure)


@dataclass
class _Times:
    """What the times of the entries no checkpoint covers say, read so far."""

    oldest: datetime | None = None
    newest: datetime | None = None
    nth: datetime | None = None  # the every-th's
    untimed: int | None = None  # the first entry without a time (with its zone)
    future: tuple[int, str] | None = None  # the first dated after the verifier's clock, and when


def _scan_times(rows: list[tuple[Any, ...]], nth: int, latest: datetime, found: _Times) -> bool:
    """Fold a page of (seq, at) into ``found``; False at the first entry with no time, or one
    dated after ``latest`` (runs in a worker thread: a log no checkpoint covers may be long)."""
    for seq, at in rows:
        try:
            when = datetime.fromisoformat(str(at))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            found.untimed = seq
            return False
        if when > latest:
            found.future = (seq, str(at))
            return False
        if found.oldest is None or when < found.oldest:
            found.oldest = when
        if found.newest is None or when > found.newest:
            found.newest = when
        if seq == nth:
            found.nth = when
    return True


async def _coverage(
    report: LogReport, store: Store, policy: CheckpointPolicy, now: datetime
) -> None:
    """Name the entries no good checkpoint covers; fail the log if one should have by now.

    Nothing signed vouches for their times: each is read. One dated after the verifier's clock
    (beyond :data:`CLOCK_TOLERANCE`) was not written then, and fails the log: it put the due time
    off (a log rewritten whole, its first entry dated 2099, passed). The checkpoint was due
    ``interval_s`` after the oldest of them (not the first's own claim), or at the every-th."""
    first, last = report.covered, report.entries - 1
    report.uncovered = (first, last)
    what = f"entries {first}..{last} are covered by no signed checkpoint"
    nth = first + policy.every - 1
    found, start = _Times(), first
    while start <= last:
        stop = min(start + _PAGE, last + 1)

        def page(tx: Tx, a: int = start, b: int = stop) -> list[tuple[Any, ...]]:
            return tx.tuples("audit.times", start=a, stop=b)

        rows = await store.read(page)
        if not rows or not await asyncio.to_thread(
            _scan_times, rows, nth, now + CLOCK_TOLERANCE, found
        ):
            break
        start = stop
    clock = f"it is now {now.astimezone(UTC).isoformat(timespec='seconds')}"
    if found.future is not None:
        seq, at = found.future
        report.first_bad_entry = seq
        report.problems.append(
            f"entry {seq}: dated {at}, after the verifier's clock ({clock}, "
            f"{CLOCK_TOLERANCE.total_seconds() / 60:g} minutes of tolerance): no entry is written "
            f"after it is verified; no signed checkpoint covers entries {first}..{last}"
        )
        return
    if found.untimed is not None or found.oldest is None or found.newest is None:
        bad = found.untimed if found.untimed is not None else start
        report.problems.append(f"{what}, and entry {bad} has no time to judge them by")
        return
    due = found.oldest + timedelta(seconds=policy.interval_s)
    if found.nth is not None:
        due = min(due, found.nth)
    due += timedelta(seconds=policy.grace_s)
    report.checkpoint_due_by = due.astimezone(UTC).isoformat(timespec="seconds")
    newest = found.newest
    if report.covered:
        # A checkpoint vouches for the log up to it: judge the rest by the log's own clock, so
        # that a copy of a live store, verified later, still passes.
        reference, against = newest, f"the log runs to {newest.isoformat(timespec='seconds')}"
    else:
        # Nothing signed vouches for any of it: only a gateway whose first checkpoint is not due
        # yet may have such a log.
        reference, against = max(now, newest), clock
    if reference > due:
        report.problems.append(
            f"{what}: one was due by {report.checkpoint_due_by} ({policy.describe()}) and {against}"
        )


async def _check_checkpoints(
    report: LogReport,
    pages: AsyncIterator[list[Checkpoint | CheckpointError]],
    tree: MerkleTree,
    trust: Any | None,
    who: _Signers,
    signers: Sequence[x509.Certificate] | None,
    origin: str | None,
    *,
    keep: bool,
) -> None:
    previous: Checkpoint | None = None
    chain_broken = report.first_bad_entry is not None
    async for page in pages:
        for cp in page:
            report.checkpoints += 1
            if isinstance(cp, CheckpointError):  # a row that could not be read or parsed
                _checked(report, {"size": cp.size, **dict.fromkeys(_STATUS)}, str(cp), keep)
                continue
            check = await verify_checkpoint(cp, trust, signers=signers, origin=origin)
            status: dict[str, Any] = {
                "size": cp.size,
                "at": cp.at,
                "signer": check.signer,
                "key_sha256": check.key,
                "origin": check.origin,
                "tsa": check.tsa,
                "timestamp_time": check.timestamp_time,
            }
            problem = check.problem
            if problem is None:
                problem = who.check(cp.size, check)
            if problem is None:
                problem = _against_tree(cp, previous, tree, chain_broken)
            _checked(report, status, problem, keep)
            if problem is None:  # a bad checkpoint is no base for the next consistency proof
                previous = cp
                report.covered = cp.size
        del page  # not held while the next page is read


_STATUS = ("at", "signer", "key_sha256", "origin", "tsa", "timestamp_time")


def _checked(report: LogReport, status: dict[str, Any], problem: str | None, keep: bool) -> None:
    """Record one checkpoint's verdict: ``status`` in ``checked`` if ``keep``, and ``problem``
    if it failed."""
    problem = _line(problem) if problem is not None else None
    status["ok"] = problem is None
    status["problem"] = problem
    if keep:
        report.checked.append(status)
    if problem is not None:
        report.problems.append(f"checkpoint {status['size']}: {problem}")
        if report.first_bad_checkpoint is None:
            report.first_bad_checkpoint = status["size"]


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


# --- evidence bundles ----------------------------------------------------------------------------


@dataclass
class BundleReport:
    """The verdict on a bundle; each problem names the file, event or checkpoint that failed."""

    events: int = 0
    checkpoints: int = 0
    anchor: int | None = None
    scope: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signers: list[dict[str, str]] = field(default_factory=list)  # as LogReport's
    signer_pinned: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.ok:
            who = ", ".join(_who(s["name"], s["key_sha256"]) for s in self.signers)
            return (
                f"bundle verified: {self.events} events in checkpoint {self.anchor}, "
                f"{self.checkpoints} checkpoints signed by {who}"
                + ("" if self.signer_pinned else " (not pinned)")
                + " and timestamped"
            )
        return "bundle FAILED: " + "; ".join(self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "anchor": self.anchor,
            "scope": self.scope,
            "problems": self.problems,
            "notes": self.notes,
            "signers": self.signers,
            "signer_pinned": self.signer_pinned,
        }


async def verify_bundle(
    data: bytes,
    trust_pem_paths: Sequence[str | Path],
    *,
    trust: Any | None = None,
    signers: Sequence[x509.Certificate] | None = None,
    origin: str | None = None,
) -> BundleReport:
    """Check an evidence bundle offline against the given trust anchors (PEM files).

    ``signers``: the certificates of the gateway's audit keys, as the gateway publishes them; the
    checkpoints must be signed by one of them. Without them the report names who signed, says
    the signer was not pinned, and requires one key and one origin for all checkpoints.
    Revocation is not checked (offline: the report says so). Never raises for a bad bundle; raises
    :class:`signing.errors.SigningError` only if the anchors cannot be read.
    """
    from signing.trust import TrustStore

    if trust is None:
        trust = TrustStore.from_pem_files(trust_pem_paths, revocation="off")
    report = BundleReport(signer_pinned=signers is not None)
    report.notes.append("certificate revocation not checked (offline verification)")
    who = _Signers(pinned=signers is not None, origin_pinned=origin is not None)
    await _verify_bundle(data, trust, report, who, signers, origin)
    who.tell(report)
    return report


async def _verify_bundle(
    data: bytes,
    trust: Any,
    report: BundleReport,
    who: _Signers,
    signers: Sequence[x509.Certificate] | None,
    origin: str | None,
) -> None:
    try:
        files, strays = await asyncio.to_thread(_unzip, data)
    except _Refused as exc:
        report.problems.append(_line(str(exc)))
        return
    try:
        manifest = json.loads(files["manifest.json"])
        seqs = _whole_numbers(manifest["events"], "events")
        sizes = _whole_numbers(manifest["checkpoints"], "checkpoints")
        (anchor,) = _whole_numbers([manifest["anchor"]], "anchor")
        pending = _whole_numbers(manifest["pending"], "pending")
        report.scope = dict(manifest["scope"])
        in_scope = scope_test(report.scope)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        report.problems.append(_line(f"not an evidence bundle: {exc}"))
        return
    report.anchor = anchor
    report.problems.extend(strays)
    if not sizes or sizes[-1] != anchor or sizes != sorted(set(sizes)):
        report.problems.append("manifest: checkpoints must be ascending and end at the anchor")
        return
    if not seqs:  # what it proves would be nothing: audit export never writes one
        report.problems.append("manifest: the bundle holds no event")
    if seqs != sorted(set(seqs)) or any(s >= anchor for s in seqs):
        report.problems.append(f"manifest: events must be ascending and in checkpoint {anchor}")
    if any(s < anchor for s in pending):
        report.problems.append(f"manifest: pending events must be newer than checkpoint {anchor}")
    form = {k: manifest.get(k) for k in MANIFEST_KEYS}
    if manifest.get("format") != BUNDLE_FORMAT:
        report.problems.append(
            f"manifest.json: format {manifest.get('format')!r}, not {BUNDLE_FORMAT!r}"
        )
    elif list(manifest) != list(MANIFEST_KEYS) or files["manifest.json"] != bundle_json(form):
        report.problems.append("manifest.json: not as the exporter writes it (edited)")
    _members(files, bundle_members(seqs, sizes), set(seqs), report)
    roots = await _bundle_checkpoints(files, sizes, trust, report, who, signers, origin)
    for a, b in itertools.pairwise(sizes):
        name = f"proofs/consistency/{a}-{b}.json"
        try:
            doc = json.loads(files[name])
            if (doc["first"], doc["second"]) != (a, b):
                raise ProofError("proof is for other sizes")
            if a in roots and b in roots:
                verify_consistency(a, b, roots[a], roots[b], _hashes(doc["proof"]))
                _exact(files, name, {"first": a, "second": b, "proof": doc["proof"]})
        except (KeyError, ValueError, TypeError) as exc:
            report.problems.append(_line(f"{name}: {exc}"))
    for seq in seqs:
        _bundle_event(files, seq, anchor, roots.get(anchor), report, in_scope)
    _derived(files, manifest, sizes, report)


class _Refused(Exception):
    """A zip the verifier does not read at all (the message says why, in one line)."""


def _unzip(data: bytes) -> tuple[dict[str, bytes], list[str]]:
    """The members a bundle may hold, by name, and what is wrong with the others (outside the
    layout, twice in the zip): read only after every size was found within the caps. Raises
    _Refused for a zip that is not one, or too large once decompressed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = 0
            for info in infos:
                # The exporter deflates. bzip2 and LZMA members are decompressed whole, whatever
                # size they declare, before the size is checked: 3 GB from a 22 KB bundle.
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise _Refused(
                        f"refused unread: {info.filename!r} is compressed with method "
                        f"{info.compress_type}; a bundle's members are stored or deflated"
                    )
                if info.file_size > MAX_MEMBER:
                    raise _Refused(
                        f"refused unread: {info.filename!r} is {info.file_size} bytes once "
                        f"decompressed; a bundle member is at most {MAX_MEMBER} (a zip bomb?)"
                    )
                total += info.file_size
            if total > MAX_TOTAL:
                raise _Refused(
                    f"refused unread: its members are {total} bytes once decompressed; a "
                    f"bundle is at most {MAX_TOTAL} (a zip bomb?)"
                )
            files: dict[str, bytes] = {}
            strays: list[str] = []
            for info in infos:
                name = info.filename
                if not in_layout(name):
                    parts = name.replace("\\", "/").split("/")
                    escape = ".." in parts or name.startswith(("/", "\\")) or ":" in parts[0]
                    why = "a path out of the bundle's folder" if escape else "not a bundle member"
                    strays.append(_line(f"{name!r}: {why} (not in the bundle's layout)"))
                elif name in files:
                    strays.append(f"{name}: twice in the zip")
                else:
                    with zf.open(info) as member:  # stops at the declared size (then the CRC)
                        files[name] = member.read(MAX_MEMBER + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise _Refused(_line(f"not an evidence bundle: {exc}")) from None
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise _Refused(_line(f"not an evidence bundle: a damaged zip ({exc})")) from None
    return files, strays


def _members(files: dict[str, bytes], expected: set[str], seqs: set[int], report: Any) -> None:
    """Members the manifest does not account for (the missing ones are named where checked)."""
    for name in sorted(set(files) - expected):
        if name.startswith("events/"):
            report.problems.append(f"{name}: not listed in the manifest (inserted)")
        else:
            report.problems.append(f"{name}: not listed in the manifest (added)")


def _exact(files: dict[str, bytes], name: str, doc: dict[str, Any]) -> None:
    """Raise ValueError unless member ``name`` is ``doc`` as the exporter writes it."""
    if files[name] != bundle_json(doc):
        raise ValueError("not as the exporter writes it (edited)")


def _derived(
    files: dict[str, bytes], manifest: dict[str, Any], sizes: list[int], report: BundleReport
) -> None:
    """README.txt and certs/tsa-chain.pem: what the exporter derives from the rest."""
    for name in ("README.txt", "certs/tsa-chain.pem"):
        if name not in files:
            report.problems.append(f"{name}: missing (removed from the bundle)")
            continue
        try:
            want = (
                readme_text(manifest).encode() if name == "README.txt" else _tsa_chain(files, sizes)
            )
        except (KeyError, ValueError, TypeError):
            want = None
        if files[name] != want:
            report.problems.append(f"{name}: not what the exporter writes for this bundle (edited)")


def _tsa_chain(files: dict[str, bytes], sizes: list[int]) -> bytes:
    pems: list[bytes] = []
    for size in sizes:
        for pem in tsa_certificates(files.get(f"checkpoints/{size}.tsr", b"")):
            if pem not in pems:
                pems.append(pem)
    return b"".join(pems)


def _whole_numbers(values: Any, what: str) -> list[int]:
    """``values`` if it is a list of non-negative ints: JSON's 77.5, 1e3, Infinity and true are
    not sequence numbers (int() would round them, or overflow)."""
    if not isinstance(values, list) or not all(type(v) is int and v >= 0 for v in values):
        raise ValueError(f"manifest {what}: not whole numbers")
    return values


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _hashes(items: list[str]) -> list[bytes]:
    return [base64.b64decode(x, validate=True) for x in items]


async def _bundle_checkpoints(
    files: dict[str, bytes],
    sizes: list[int],
    trust: Any,
    report: BundleReport,
    who: _Signers,
    signers: Sequence[x509.Certificate] | None,
    origin: str | None,
) -> dict[int, bytes]:
    """Verify each checkpoint; return the roots of those that passed."""
    roots: dict[int, bytes] = {}
    for size in sizes:
        base = f"checkpoints/{size}"
        try:
            note = files[f"{base}.note"]
            chain = tuple(x509.load_pem_x509_certificates(files[f"{base}.chain.pem"]))
            token = files[f"{base}.tsr"]
            content = parse_note(note)
        except (KeyError, ValueError, CheckpointError) as exc:
            report.problems.append(_line(f"checkpoint {size}: missing or unreadable file: {exc}"))
            continue
        cp = Checkpoint(
            size=content.size,
            root=content.root,
            at=content.at,
            note=note,
            signer_chain=chain,
            timestamp=token,
        )
        check = await verify_checkpoint(cp, trust, signers=signers, origin=origin)
        if check.ok and content.size != size:
            check = CheckpointCheck(size, False, f"the note is for size {content.size}")
        for part, value in ((".body", content.body), (".sig", content.signature)):
            # Copies of the note's parts for openssl (README.txt): they must say the same.
            if check.ok and base + part not in files:
                check = CheckpointCheck(size, False, f"{base}{part} is missing")
            elif check.ok and files[base + part] != value:
                check = CheckpointCheck(size, False, f"{base}{part} differs from the signed note")
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        if check.ok and files[f"{base}.chain.pem"] != pem:
            check = CheckpointCheck(
                size, False, f"{base}.chain.pem holds more than its certificates (edited)"
            )
        problem = check.problem if not check.ok else who.check(size, check)
        if problem is not None:
            report.problems.append(_line(f"checkpoint {size}: {problem}"))
            continue
        report.checkpoints += 1
        roots[size] = content.root
    return roots


def _bundle_event(
    files: dict[str, bytes],
    seq: int,
    anchor: int,
    root: bytes | None,
    report: BundleReport,
    in_scope: Callable[[dict[str, Any]], str | None],
) -> None:
    name = f"events/{seq}.json"
    try:
        entry = files[name]
    except KeyError:
        report.problems.append(f"{name}: missing (removed from the bundle)")
        return
    try:
        event = decode_entry(entry)
        claimed = event["seq"]
    except (ValueError, KeyError, TypeError):
        report.problems.append(f"{name}: not a log entry")
        return
    if claimed != seq:
        report.problems.append(f"{name}: the entry says it is {claimed} (moved or reordered)")
        return
    if root is None:
        report.problems.append(f"{name}: no verified checkpoint {anchor} to prove it against")
        return
    try:
        doc = json.loads(files[f"proofs/inclusion/{seq}.json"])
        if (doc["index"], doc["size"]) != (seq, anchor):
            raise ProofError("proof is for another position or tree")
        verify_inclusion(seq, anchor, leaf_hash(entry), _hashes(doc["proof"]), root)
    except ProofError as exc:
        report.problems.append(f"{name}: not in checkpoint {anchor} as it stands ({exc})")
        return
    except (KeyError, ValueError, TypeError) as exc:
        report.problems.append(_line(f"{name}: inclusion proof missing or unreadable: {exc}"))
        return
    proof_name = f"proofs/inclusion/{seq}.json"
    want = {
        "index": seq,
        "size": anchor,
        "leaf_hash": _b64(leaf_hash(entry)),
        "proof": doc["proof"],
    }
    if files[proof_name] != bundle_json(want):
        report.problems.append(f"{proof_name}: not as the exporter writes it (edited)")
        return
    # In the log as it stands, but is it about what the bundle says? The exporter selected it by
    # the indexed columns, which no hash covers.
    outside = in_scope(event)
    if outside is not None:
        report.problems.append(f"{name}: not in the bundle's scope: the event {outside}")
        return
    report.events += 1
