"""Evidence bundles: a zip an auditor can check offline with nothing but it and a trust anchor.

Layout::

    README.txt                       how to check it, with the exact openssl commands
    manifest.json                    scope, event sequence numbers, checkpoint sizes, the anchor
    events/<seq>.json                each entry exactly as stored (the bytes that were hashed)
    checkpoints/<size>.note          the signed note (what the TSA timestamped)
    checkpoints/<size>.body / .sig   the signed part of the note and the raw signature
    checkpoints/<size>.chain.pem     the audit signer's certificate and intermediates
    checkpoints/<size>.tsr           RFC 3161 TimeStampToken over SHA-256(<size>.note)
    certs/tsa-chain.pem              the TSA certificates found in the tokens
    proofs/inclusion/<seq>.json      inclusion of each event in the latest checkpoint's tree
    proofs/consistency/<m>-<n>.json  consistency between consecutive checkpoints in the bundle

Nothing else is in a bundle, and ``audit verify-bundle`` refuses anything else: a member outside
this layout (``extra.txt``, ``../evil.txt``) or not listed by the manifest, a member twice, one
missing, and a derived member that is not what the exporter derives — ``README.txt`` from the
manifest, ``certs/tsa-chain.pem`` from the tokens, ``.body`` / ``.sig`` from the note — so that a
verified bundle is exactly what the exporter wrote (but for ``created_at``, which nothing signs).
Changing README.txt's text is therefore a new :data:`BUNDLE_FORMAT`. A member larger than
:data:`MAX_MEMBER` bytes, or members larger than :data:`MAX_TOTAL` together, once decompressed,
are refused unread (a zip bomb): real bundles are small JSON, PEM and DER files.

Only events covered by the latest checkpoint go in (later ones are listed in the manifest as
``pending``). A bundle proves that what it holds is in the signed log, and each event says by its
own fields that it is about the scope (events are selected by indexed columns, which no hash covers:
:func:`scope_test`); it cannot prove that no other event about the dossier exists — the log is not
indexed by dossier in the tree.

Exceptions::

    BundleError         a bundle cannot be built (nothing to export, no checkpoint, log ≠ checkpoint)
    └── BundleTooLarge  it would be larger than verify-bundle accepts: narrow the scope
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import io
import itertools
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization

from gateway.store import QueryError, Row, Store, Tx

from .checkpoints import Checkpoint, CheckpointError, parse_note
from .events import decode_entry
from .merkle import MerkleTree
from .proofs import LogTree
from .query import normalize_time

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_MEMBER",
    "MAX_TOTAL",
    "BundleError",
    "BundleTooLarge",
    "ExportNotReady",
    "NothingToExport",
    "Scope",
    "ScopeInvalid",
    "build_bundle",
    "bundle_json",
    "bundle_members",
    "in_layout",
    "readme_text",
    "scope_test",
    "tsa_certificates",
]

BUNDLE_FORMAT = "lienthong-audit-bundle/1"
MANIFEST_KEYS = ("format", "created_at", "scope", "events", "pending", "checkpoints", "anchor")
MAX_MEMBER = 64 * 2**20  # bytes, decompressed: a manifest listing a million events is ~10 MB
MAX_TOTAL = 512 * 2**20  # bytes, decompressed, all members: ~400,000 events with their proofs

_N = "(?:0|[1-9][0-9]*)"
_LAYOUT = re.compile(
    r"README\.txt|manifest\.json|certs/tsa-chain\.pem"
    rf"|events/{_N}\.json|proofs/inclusion/{_N}\.json|proofs/consistency/{_N}-{_N}\.json"
    rf"|checkpoints/{_N}\.(?:note|body|sig|chain\.pem|tsr)"
)
CHECKPOINT_PARTS = (".note", ".body", ".sig", ".chain.pem", ".tsr")


def in_layout(name: str) -> bool:
    """Whether a member's name is one a bundle can hold (see the module's docstring)."""
    return _LAYOUT.fullmatch(name) is not None


def bundle_members(events: list[int], checkpoints: list[int]) -> set[str]:
    """Every member of the bundle whose manifest lists ``events`` and ``checkpoints``."""
    names = {"README.txt", "manifest.json", "certs/tsa-chain.pem"}
    for seq in events:
        names |= {f"events/{seq}.json", f"proofs/inclusion/{seq}.json"}
    for size in checkpoints:
        names |= {f"checkpoints/{size}{part}" for part in CHECKPOINT_PARTS}
    names |= {f"proofs/consistency/{a}-{b}.json" for a, b in itertools.pairwise(checkpoints)}
    return names


class BundleError(Exception):
    """An evidence bundle cannot be built; the message says why and what to do."""


class BundleTooLarge(BundleError):
    """The bundle would be larger than ``audit verify-bundle`` accepts (:data:`MAX_TOTAL`)."""


class ScopeInvalid(BundleError):
    """The scope asked for is not one (no kind or two, a bad time, an empty range)."""


class NothingToExport(BundleError):
    """No event is about the scope."""


class ExportNotReady(BundleError):
    """No signed checkpoint covers the events (yet), or the log no longer matches the latest."""


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Exactly one of: a dossier, a document, or a time range [start, stop)."""

    dossier: str | None = None
    document: str | None = None
    start: str | None = None
    stop: str | None = None

    def check(self) -> Scope:
        """Normalise the times. Raises BundleError unless exactly one kind of scope is given, or
        for a time range whose start is not before its stop."""
        kinds = [
            self.dossier is not None,
            self.document is not None,
            self.start is not None or self.stop is not None,
        ]
        if sum(kinds) != 1:
            raise ScopeInvalid("give exactly one of: a dossier, a document, or from and to")
        if kinds[2] and (self.start is None or self.stop is None):
            raise ScopeInvalid("a time range needs both from and to")
        try:
            start, stop = normalize_time(self.start), normalize_time(self.stop)
        except ValueError as exc:
            raise ScopeInvalid(str(exc)) from exc
        if start is not None and stop is not None and start >= stop:
            # As the log's times compare (one spelling, UTC): else the range matches nothing
            # and the auditor who typed its ends the wrong way round is told the log is empty.
            raise ScopeInvalid(f"the range is empty: from {start} is not before to {stop}")
        return Scope(dossier=self.dossier, document=self.document, start=start, stop=stop)

    def describe(self) -> dict[str, str]:
        if self.dossier is not None:
            return {"dossier": self.dossier}
        if self.document is not None:
            return {"document": self.document}
        return {"from": self.start or "", "to": self.stop or ""}


def _blob(v: Any) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def tsa_certificates(token: bytes) -> list[bytes]:
    """PEM of every certificate embedded in a TimeStampToken (empty if it is unreadable)."""
    from asn1crypto import cms, pem

    try:
        signed = cms.ContentInfo.load(token)["content"]
        return [pem.armor("CERTIFICATE", c.chosen.dump()) for c in signed["certificates"]]
    except (ValueError, KeyError, TypeError):
        return []


def scope_test(scope: dict[str, Any]) -> Callable[[dict[str, Any]], str | None]:
    """What an event must say to belong to a bundle's scope (:meth:`Scope.describe`), by its own
    fields — the events are selected by the indexed columns, which can be edited to select another
    dossier's: a function of the decoded entry that says why it does not belong, or None. Raises
    ValueError on a scope a bundle cannot have."""
    if set(scope) == {"dossier"} or set(scope) == {"document"}:
        ((field_name, wanted),) = scope.items()
        if not isinstance(wanted, str):
            raise ValueError(f"scope: {field_name} is not a string")

        def about(event: dict[str, Any]) -> str | None:
            found = event.get(field_name)
            return None if found == wanted else f"is about {field_name} {found!r}, not {wanted!r}"

        return about
    if set(scope) == {"from", "to"}:
        start, stop = _when(scope["from"]), _when(scope["to"])

        def during(event: dict[str, Any]) -> str | None:
            try:
                at = _when(event.get("at"))
            except ValueError:
                return f"has no time the scope can place ({event.get('at')!r})"
            if start <= at < stop:
                return None
            return f"is dated {event.get('at')}, outside [{scope['from']}, {scope['to']})"

        return during
    raise ValueError(f"scope: not a dossier, a document or from and to: {scope!r}")


def _when(value: Any) -> datetime:
    """An aware time from ISO 8601 text. Raises ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"no time zone: {value!r}")
    return when


async def _events(store: Store, scope: Scope) -> list[Row]:
    def work(tx: Tx) -> list[Row]:
        if scope.dossier is not None:
            return tx.all("audit.by_dossier", dossier=scope.dossier)
        if scope.document is not None:
            return tx.all("audit.by_document", document=scope.document)
        return tx.all("audit.between", start=scope.start, stop=scope.stop)

    return await store.read(work)


# What each covered event adds to a bundle besides its entry, at the least (bundle_json, indent 1):
# its inclusion proof's fixed part (index, size, leaf hash: ~100 bytes), each hash of its path
# (50 bytes), and its line in the manifest's event list.
_PROOF_BASE = 64
_PATH_HASH = 48


@dataclass(frozen=True)
class _Extent:
    """How many events the scope selects and, of those the anchor covers, a size they cannot
    make a bundle smaller than: read by one aggregate query, before any entry is."""

    events: int
    least_bytes: int


async def _extent(store: Store, scope: Scope, anchor: int) -> _Extent:
    # Leaves left of the tree's first split have an inclusion path of exactly 1 + log2(split)
    # hashes; those right of it at least one. Most of a wide range lies left of it.
    split = 1 << ((anchor - 1).bit_length() - 1) if anchor > 1 else 0
    params = {"anchor": anchor, "split": split}

    def work(tx: Tx) -> Row | None:
        if scope.dossier is not None:
            return tx.one("audit.extent_dossier", dossier=scope.dossier, **params)
        if scope.document is not None:
            return tx.one("audit.extent_document", document=scope.document, **params)
        return tx.one("audit.extent_between", start=scope.start, stop=scope.stop, **params)

    row = await store.read(work)
    if row is None:
        return _Extent(0, 0)
    covered, left = int(row["covered"]), int(row["left_side"])
    path_hashes = left * (split.bit_length() if split else 0) + (covered - left) * (anchor > 1)
    least = int(row["bytes"]) + covered * (_PROOF_BASE + 3) + path_hashes * _PATH_HASH
    return _Extent(int(row["n"]), least)


class _Budget:
    """The bytes a bundle's members may take together, spent as they are made: verify-bundle
    refuses a bundle over :data:`MAX_TOTAL` (or a member over :data:`MAX_MEMBER`), so building
    stops as soon as it would write one, and memory stays within what a bundle may be."""

    def __init__(self, scope: Scope) -> None:
        self.scope, self.limit, self.spent = scope, MAX_TOTAL, 0

    def add(self, files: dict[str, bytes], name: str, data: bytes) -> None:
        self.spent += len(data)
        if len(data) > MAX_MEMBER or self.spent > self.limit:
            raise BundleTooLarge(_too_large(self.scope, f"more than {self.limit} bytes"))
        files[name] = data


def _too_large(scope: Scope, size: str) -> str:
    return (
        f"the bundle for {scope.describe()} would be {size} once decompressed; "
        f"`lienthong audit verify-bundle` accepts at most {MAX_TOTAL}: export a narrower range"
    )


async def build_bundle(store: Store, scope: Scope, *, tree: LogTree | None = None) -> bytes:
    """The zip for ``scope``. Raises BundleError if nothing matches, no checkpoint covers the
    events yet, or the stored log no longer matches the latest checkpoint (run audit verify);
    BundleTooLarge if the bundle would be larger than verify-bundle accepts.

    The size is judged before the entries are read, and again as the members are made; the
    entries are checked, proven and zipped in a worker thread (a wide range is a few hundred
    thousand of each: seconds of CPU the event loop must not wait for)."""
    scope = scope.check()
    (latest,) = await _checkpoints(store, lambda tx: [tx.one("checkpoints.latest")])
    extent = await _extent(store, scope, latest.size if latest is not None else 0)
    if not extent.events:
        raise NothingToExport(f"no audit events for {scope.describe()}")
    if latest is None:
        raise ExportNotReady("no checkpoint yet: wait for the checkpointer and export again")
    if extent.least_bytes > MAX_TOTAL:
        raise BundleTooLarge(_too_large(scope, f"at least {extent.least_bytes} bytes"))
    rows = await _events(store, scope)
    outside = await asyncio.to_thread(_outside, rows, scope)
    if outside:
        raise BundleError(
            f"the index selects entries that are not about {scope.describe()} "
            f"({outside}): the log's columns were edited; run `lienthong audit verify`"
        )
    anchor = latest.size
    covered = await asyncio.to_thread(lambda: [int(r["seq"]) for r in rows if r["seq"] < anchor])
    if not covered:
        raise ExportNotReady(
            "the events are newer than the latest checkpoint: export again shortly"
        )
    tree = tree or LogTree(store)
    if await tree.sync(latest.size) < latest.size or tree.tree.root(latest.size) != latest.root:
        raise ExportNotReady(
            "the stored log does not match the latest checkpoint: run `lienthong audit verify`"
        )
    first_in = await _checkpoints(store, lambda tx: _first_in(tx, covered, anchor))
    included = [c for c in first_in if c is not None] + [latest]
    return await asyncio.to_thread(_assemble, rows, scope, included, tree.tree)


def _first_in(tx: Tx, seqs: list[int], anchor: int) -> list[Row | None]:
    """The checkpoints in which the entries ``seqs`` (in log order) first appear, below ``anchor``:
    one indexed read each, not one per entry nor every checkpoint (a gateway writes ~1,440 a day
    while it has traffic)."""
    found: list[Row | None] = []
    i = 0
    while i < len(seqs):
        row = tx.one("checkpoints.covering", seq=seqs[i])
        if row is None or int(row["size"]) >= anchor:
            break
        found.append(row)
        i = bisect.bisect_left(seqs, int(row["size"]), i)  # the first entry it does not cover
    return found


async def _checkpoints(
    store: Store, read: Callable[[Tx], list[Row | None]]
) -> list[Checkpoint | None]:
    """The checkpoint rows ``read`` selects, parsed in a worker thread (PEM chains: the event
    loop answers every other request meanwhile). Raises ExportNotReady for one that cannot be
    read or parsed."""
    try:
        rows = await store.read(read)
        return await asyncio.to_thread(
            lambda: [Checkpoint.from_row(r) if r is not None else None for r in rows]
        )
    except CheckpointError as exc:
        raise ExportNotReady(f"unreadable checkpoint {exc.size}: {exc}") from exc
    except QueryError as exc:  # SQLite: a text column that is not UTF-8, written around us
        why = " ".join(str(exc).partition(" with text ")[0].split())
        raise ExportNotReady(
            f"a checkpoint cannot be read from the store ({why}): run `lienthong audit verify`"
        ) from exc


def _assemble(rows: list[Row], scope: Scope, included: list[Checkpoint], tree: MerkleTree) -> bytes:
    """The zip of the events in ``rows`` proven against the last of ``included`` (whose tree
    ``tree`` holds), with the checkpoints each first appears in: ``included``, ascending. Runs in
    a worker thread; reads only the part of ``tree`` the latest checkpoint covers, which appends
    beyond it do not change. Raises BundleTooLarge."""
    latest = included[-1]
    covered = [r for r in rows if r["seq"] < latest.size]
    pending = [r["seq"] for r in rows if r["seq"] >= latest.size]

    files: dict[str, bytes] = {}
    budget = _Budget(scope)
    for r in covered:
        seq = int(r["seq"])
        budget.add(files, f"events/{seq}.json", _blob(r["entry"]))
        proof = tree.inclusion_proof(seq, latest.size)
        budget.add(
            files,
            f"proofs/inclusion/{seq}.json",
            bundle_json(
                {
                    "index": seq,
                    "size": latest.size,
                    "leaf_hash": _b64(tree.leaf(seq)),
                    "proof": [_b64(p) for p in proof],
                }
            ),
        )
    tsa_pems: list[bytes] = []
    for c in included:
        for name, data in _checkpoint_files(c).items():
            budget.add(files, name, data)
        for p in tsa_certificates(c.timestamp):
            if p not in tsa_pems:
                tsa_pems.append(p)
    budget.add(files, "certs/tsa-chain.pem", b"".join(tsa_pems))
    for a, b in itertools.pairwise(included):
        budget.add(
            files,
            f"proofs/consistency/{a.size}-{b.size}.json",
            bundle_json(
                {
                    "first": a.size,
                    "second": b.size,
                    "proof": [_b64(p) for p in tree.consistency_proof(a.size, b.size)],
                }
            ),
        )
    manifest = {
        "format": BUNDLE_FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scope": scope.describe(),
        "events": [int(r["seq"]) for r in covered],
        "pending": pending,
        "checkpoints": [c.size for c in included],
        "anchor": latest.size,
    }
    budget.add(files, "manifest.json", bundle_json(manifest))
    budget.add(files, "README.txt", readme_text(manifest).encode())
    return _zip(files)


def _outside(rows: list[Row], scope: Scope) -> str:
    """The entries among ``rows`` whose own fields are not in ``scope``, as "seq N: why"."""
    test = scope_test(scope.describe())
    found = []
    for r in rows:
        try:
            why = test(decode_entry(_blob(r["entry"])))
        except (ValueError, TypeError, AttributeError):
            why = "is not a log entry"
        if why is not None:
            found.append(f"entry {r['seq']} {why}")
    return "; ".join(found[:3]) + ("; …" if len(found) > 3 else "")


def _checkpoint_files(c: Checkpoint) -> dict[str, bytes]:
    content = parse_note(c.note)
    base = f"checkpoints/{c.size}"
    return {
        f"{base}.note": c.note,
        f"{base}.body": content.body,
        f"{base}.sig": content.signature,
        f"{base}.chain.pem": b"".join(
            x.public_bytes(serialization.Encoding.PEM) for x in c.signer_chain
        ),
        f"{base}.tsr": c.timestamp,
    }


def bundle_json(obj: Any) -> bytes:
    """A bundle's JSON member, as the exporter writes it."""
    return json.dumps(obj, indent=1, ensure_ascii=False).encode() + b"\n"


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files, key=lambda n: (n != "README.txt", n)):
            zf.writestr(name, files[name])
    return buf.getvalue()


def readme_text(manifest: dict[str, Any]) -> str:
    """README.txt of the bundle with this manifest."""
    n = manifest["anchor"]
    return f"""lienthong audit evidence bundle ({BUNDLE_FORMAT})
Scope: {json.dumps(manifest["scope"], ensure_ascii=False)}
Events: {len(manifest["events"])} (sequence numbers in manifest.json), proven against
checkpoint {n} (the tree of the first {n} log entries), signed by the gateway's audit key and
timestamped by an RFC 3161 time-stamping authority.

Check everything at once (needs the lienthong tool, the trust anchor, e.g. ROOT.pem, and the
gateway's published audit certificate, e.g. AUDIT.pem: the anchor alone admits any certificate
issued under it, an agency's as well as the gateway's):

    lienthong audit verify-bundle THIS.zip --trust ROOT.pem --signer AUDIT.pem

Or by hand, with standard tools:

1. Each timestamp is over the whole signed note:

    openssl ts -verify -token_in -in checkpoints/{n}.tsr -data checkpoints/{n}.note \\
        -CAfile ROOT.pem -untrusted certs/tsa-chain.pem

   (the same for every checkpoints/<size>.tsr). "Verification: OK" is the expected answer. Once
   the TSA's certificate has expired, add -attime with the token's time in seconds since 1970
   (its "Time stamp:" in `openssl ts -reply -token_in -in checkpoints/{n}.tsr -text`): a token
   is judged as of its own time.

2. The checkpoint signature (SHA-256, RSA PKCS#1 v1.5 or ECDSA) over the note's body:

    openssl verify -CAfile ROOT.pem -untrusted checkpoints/{n}.chain.pem checkpoints/{n}.chain.pem
    openssl x509 -in checkpoints/{n}.chain.pem -pubkey -noout > signer.pub
    openssl dgst -sha256 -verify signer.pub -signature checkpoints/{n}.sig checkpoints/{n}.body

   The body lists: origin, tree size, base64 root hash (RFC 9162), time. signer.pub must be the
   public key of the gateway's audit certificate (compare with
   `openssl x509 -in AUDIT.pem -pubkey -noout`): the chain alone does not say whose key it is.

3. Each event: its leaf hash is SHA-256(0x00 || bytes of events/<seq>.json)
   (e.g. `(printf '\\000'; cat events/7.json) | sha256sum`); proofs/inclusion/<seq>.json is its
   RFC 9162 section 2.1.3 inclusion proof in the tree of size {n}, whose root is in checkpoint {n}.

4. proofs/consistency/<m>-<n>.json are RFC 9162 section 2.1.4 proofs that each earlier checkpoint
   is a prefix of the next one: the log was only ever appended to.

What this proves: these entries are in the signed log, unaltered, at these positions, no later than
the timestamps. What it cannot prove: that no other event about the same dossier or document exists.
Pending events (newer than the checkpoint): {manifest["pending"] or "none"}.
"""
