"""Checkpoints: signed, timestamped tree heads of the audit log, written every N events or T seconds.

A checkpoint is a signed note in the style of C2SP ``tlog-checkpoint`` / ``signed-note``::

    lienthong.local/audit               origin
    1234                                tree size
    3q2+7w…=                            base64 RFC 9162 root hash
    time 2026-11-22T02:15:00.000000+00:00
                                        (blank line)
    — lienthong.local/audit AAAA…=      key name, base64(key id (4 bytes) || signature)

The body (first four lines, each ending in a newline) is signed by the gateway's audit key
(SHA-256 with RSA PKCS#1 v1.5 or ECDSA, whatever the key is); the key id is the first 4 bytes of
SHA-256(origin || "\\n" || SubjectPublicKeyInfo DER). The whole note is then timestamped by an
RFC 3161 TSA (imprint SHA-256(note)), so ``openssl ts -verify -data N.note -in N.tsr -token_in``
checks it. A checkpoint is stored only when both are done, and only if the log still holds the
entries it covers: a crash of the store can lose the last events committed without waiting for
the sync (lookups'), after the checkpointer read them.

**Fail closed**: :class:`Checkpointer` retries until a timestamp is had; once it has failed for
longer than ``fail_closed_after_s``, :attr:`Checkpointer.healthy` turns false (with the reason) and
the gateway must stop accepting new work until checkpoints flow again (``0`` disables this).
From the first failure until then, :attr:`Checkpointer.readiness` names it (ready, not "ok"), as
the log does, once when it starts or changes and every ``REPEAT_WARNING_S`` while it lasts.

Exceptions::

    CheckpointError     a checkpoint cannot be made, parsed or does not verify (``.size`` names it)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway.store import QueryError, Row, Store, StoreError, Tx

from .events import GENESIS
from .merkle import RootStack

if TYPE_CHECKING:
    from gateway.metrics import Metrics

__all__ = [
    "CLOCK_TOLERANCE",
    "DEFAULT_ORIGIN",
    "Checkpoint",
    "CheckpointCheck",
    "CheckpointError",
    "Checkpointer",
    "NoteContent",
    "checkpoint_rows",
    "describe_signer",
    "key_fingerprint",
    "key_id",
    "load_checkpoints",
    "make_note_body",
    "parse_note",
    "sign_note",
    "signed_time_problem",
    "verify_checkpoint",
    "verify_note_signature",
]

log = logging.getLogger("lienthong.audit.checkpoints")

DEFAULT_ORIGIN = "lienthong.local/audit"  # [audit] origin's default too (gateway.settings)
_DASH = "\u2014"  # signed-note signature lines start with an em dash
_PAGE = 5000
_NO_LIMIT = 2**63 - 1  # the largest integer SQLite and PostgreSQL take
# A failing checkpoint is retried every poll (a second): its WARNING is repeated this often while
# the reason stays the same (it was one a second, 86,400 lines a day for one condition).
REPEAT_WARNING_S = 600.0


class CheckpointError(Exception):
    """A checkpoint cannot be made, parsed or verified; ``size`` names it when known."""

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


# --- the note ----------------------------------------------------------------------------------


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(origin: str, certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(origin.encode() + b"\n" + _spki(certificate)).digest()[:4]


def key_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, hex: what pins an audit signer (the key,
    so a certificate renewed for the same key still matches). ``openssl x509 -in C -pubkey
    -noout | openssl pkey -pubin -outform DER | sha256sum`` prints the same."""
    return hashlib.sha256(_spki(certificate)).hexdigest()


def describe_signer(certificate: x509.Certificate) -> str:
    """Who signed, for people: the common name and the start of the key's fingerprint."""
    return f"{_cn(certificate)} [key sha256:{key_fingerprint(certificate)[:16]}]"


def make_note_body(origin: str, size: int, root: bytes, at: str) -> bytes:
    """The signed text. Raises CheckpointError on an origin that would break the format."""
    if not origin or "\n" in origin or " " in origin:
        raise CheckpointError(f"bad checkpoint origin {origin!r}")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {at}\n".encode()


def sign_note(key: Any, origin: str, size: int, root: bytes, at: str) -> bytes:
    """Body + blank line + signature line. ``key`` is a :class:`signing.keys.SigningKey` (typed
    loosely so this module does not import the signing package at import time). Blocking: call
    it off the event loop for token keys."""
    body = make_note_body(origin, size, root, at)
    signature = key.sign(body)
    blob = base64.b64encode(key_id(origin, key.certificate) + signature).decode()
    return body + f"\n{_DASH} {origin} {blob}\n".encode()


@dataclass(frozen=True)
class NoteContent:
    origin: str
    size: int
    root: bytes
    at: str
    body: bytes
    key_name: str
    key_id: bytes
    signature: bytes


def parse_note(note: bytes) -> NoteContent:
    """Split a signed note. Raises CheckpointError if it is not one of ours."""
    try:
        text = note.decode("utf-8")
        body, sep, sigs = text.partition("\n\n")
        if not sep:
            raise ValueError("no blank line before the signature")
        lines = body.split("\n")
        if len(lines) != 4 or not lines[3].startswith("time "):
            raise ValueError("the body must be origin, size, root and time")
        origin, size_s, root_b64, time_line = lines
        size = int(size_s)
        if size < 0 or str(size) != size_s:
            raise ValueError("bad tree size")
        root = base64.b64decode(root_b64, validate=True)
        if len(root) != 32:
            raise ValueError("the root is not 32 bytes")
        sig_lines = [ln for ln in sigs.split("\n") if ln]
        if len(sig_lines) != 1:
            raise ValueError("expected exactly one signature line")
        dash, name, blob_b64 = sig_lines[0].split(" ")
        if dash != _DASH:
            raise ValueError("signature line does not start with an em dash")
        blob = base64.b64decode(blob_b64, validate=True)
        if len(blob) < 5:
            raise ValueError("signature too short")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"not a checkpoint note: {exc}") from exc
    return NoteContent(
        origin=origin,
        size=size,
        root=root,
        at=time_line.removeprefix("time "),
        body=(body + "\n").encode(),
        key_name=name,
        key_id=blob[:4],
        signature=blob[4:],
    )


def verify_note_signature(note: bytes, certificate: x509.Certificate) -> NoteContent:
    """Check the note's signature with ``certificate``'s public key (not its chain).

    Raises CheckpointError if the note is malformed, names another key, or the signature fails.
    """
    content = parse_note(note)
    if content.key_name != content.origin:
        raise CheckpointError("signed under another name than its origin", size=content.size)
    if content.key_id != key_id(content.origin, certificate):
        raise CheckpointError(
            "signed by another key than the signer certificate", size=content.size
        )
    pub = certificate.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(content.signature, content.body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(content.signature, content.body, ec.ECDSA(hashes.SHA256()))
        else:
            raise CheckpointError("unsupported signer key type", size=content.size)
    except InvalidSignature as exc:
        raise CheckpointError("checkpoint signature does not verify", size=content.size) from exc
    return content


# --- stored checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: bytes
    at: str
    note: bytes
    signer_chain: tuple[x509.Certificate, ...]  # the audit key's certificate first
    timestamp: bytes  # DER TimeStampToken over SHA-256(note)

    @classmethod
    def from_row(cls, row: Row) -> Checkpoint:
        """Raises CheckpointError if the stored chain is not PEM."""
        try:
            chain = tuple(x509.load_pem_x509_certificates(str(row["signer_chain"]).encode()))
        except ValueError as exc:
            raise CheckpointError("stored signer chain is not PEM", size=row["size"]) from exc
        return cls(
            size=int(row["size"]),
            root=_blob(row["root"]),
            at=str(row["at"]),
            note=_blob(row["note"]),
            signer_chain=chain,
            timestamp=_blob(row["timestamp"]),
        )

    def chain_pem(self) -> str:
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.signer_chain
        ).decode()

    def to_row(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root,
            "at": self.at,
            "note": self.note,
            "signer_chain": self.chain_pem(),
            "timestamp": self.timestamp,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready view (hashes base64, like the note)."""
        return {
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "at": self.at,
            "note": self.note.decode(),
            "signer": _cn(self.signer_chain[0]) if self.signer_chain else None,
            "timestamp": base64.b64encode(self.timestamp).decode(),
        }


def _blob(value: Any) -> bytes:
    # A hand-edited BLOB may come back as TEXT: keep what is stored, whatever its type.
    return value.encode() if isinstance(value, str) else bytes(value)


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


async def load_checkpoints(store: Store) -> list[Checkpoint]:
    """Every checkpoint, smallest first. Raises CheckpointError on an unreadable row (one the
    store cannot hand over too, such as a note edited into text that is not UTF-8: the first one,
    by its size)."""
    try:
        rows = await store.read(lambda tx: tx.all("checkpoints.all"))
    except QueryError as failure:
        raise await _first_unreadable(store, failure) from failure
    return [Checkpoint.from_row(r) for r in rows]


async def checkpoint_rows(
    store: Store, *, before: int = _NO_LIMIT, limit: int = 1
) -> list[Row | CheckpointError]:
    """The rows of up to ``limit`` checkpoints smaller than ``before``, largest first. A row the
    store cannot hand over (SQLite: a text column that is not UTF-8, written around the gateway)
    is, in its place, a CheckpointError naming it; the page's others are then read one by one.
    Raises StoreError if the store fails otherwise."""
    try:
        rows: list[Row | CheckpointError] = list(
            await store.read(lambda tx: tx.all("checkpoints.page", before=before, limit=limit))
        )
        return rows
    except QueryError as failure:
        sizes = await store.read(lambda tx: tx.all("checkpoints.sizes", before=before, limit=limit))
        return await rows_one_by_one(store, [int(r["size"]) for r in sizes], failure)


async def rows_one_by_one(
    store: Store, sizes: list[int], failure: QueryError
) -> list[Row | CheckpointError]:
    """The rows of the checkpoints of ``sizes`` (a page the store could not hand over), read one
    by one, each row it cannot hand over a CheckpointError naming it in one line; raises
    ``failure`` if none fails on its own (the page's failure was not a row's)."""
    out: list[Row | CheckpointError] = []
    for size in sizes:

        def get(tx: Tx, size: int = size) -> Row | None:
            return tx.one("checkpoints.get", size=size)

        try:
            row = await store.read(get)
        except QueryError as exc:
            out.append(_unreadable(size, exc, "checkpoints.get"))
            continue
        if row is not None:  # deleted meanwhile
            out.append(row)
    if not any(isinstance(item, CheckpointError) for item in out):
        raise failure from None
    return out


async def _first_unreadable(store: Store, failure: QueryError) -> CheckpointError:
    """The first checkpoint whose row the store cannot hand over, found by halving the rows;
    raises ``failure`` if no row fails on its own."""
    rows = await store.read(
        lambda tx: tx.all("checkpoints.sizes", before=_NO_LIMIT, limit=_NO_LIMIT)
    )
    sizes = sorted(int(r["size"]) for r in rows)

    async def failing(low: int, high: int) -> QueryError | None:  # the rows of sizes[low:high]
        try:
            await store.read(
                lambda tx: tx.all("checkpoints.page", before=sizes[high - 1] + 1, limit=high - low)
            )
        except QueryError as exc:
            return exc
        return None

    low, high = 0, len(sizes)  # the first unreadable row is in sizes[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if await failing(low, middle) is None else (low, middle)
    if sizes and (exc := await failing(low, low + 1)) is not None:
        return _unreadable(sizes[low], exc, "checkpoints.page")
    raise failure


def _unreadable(size: int, exc: QueryError, query: str) -> CheckpointError:
    # SQLite's message quotes the text it could not decode: a note is several lines, signature
    # bytes among them. The column says enough.
    reason = str(exc).removeprefix(f"{query}: ").partition(" with text ")[0]
    return CheckpointError(f"the store cannot read it ({' '.join(reason.split())})", size=size)


@dataclass(frozen=True)
class CheckpointCheck:
    """What verifying one checkpoint found. ``signer`` is the signer's common name, ``key`` its
    key fingerprint (:func:`key_fingerprint`), ``origin`` the note's, once the signature checked;
    ``revocation`` the weaker of the TSA's and the signer's revocation status, once both chains
    checked (``good``, ``unknown (soft-fail)``, ``not checked``)."""

    size: int
    ok: bool
    problem: str | None = None
    signer: str | None = None
    tsa: str | None = None
    timestamp_time: str | None = None
    key: str | None = None
    origin: str | None = None
    revocation: str | None = None


async def verify_checkpoint(
    cp: Checkpoint,
    trust: Any | None,
    *,
    signers: Sequence[x509.Certificate] | None = None,
    origin: str | None = None,
) -> CheckpointCheck:
    """Check the note against its columns, its signature, and — when ``trust`` (a
    :class:`signing.trust.TrustStore`) is given — the signer's chain and the RFC 3161 timestamp.

    ``signers``: the audit signers' certificates; the checkpoint must be signed by one of their
    keys. Without them, any certificate that chains to an anchor with a signing usage passes (an
    agency's, say): the caller must then see that every checkpoint has the one key it expects.
    ``origin``: the log's name; the note must carry it.

    With ``trust`` the checks run in a thread, on an event loop of their own: the TSA's chain,
    the token and the signer's chain are 20 ms of CPU or more, which an auditor's page of 200
    took from every other request on the gateway's loop. A checkpoint found good is remembered
    by ``trust`` (:meth:`~signing.trust.TrustStore.remember`) for as long as the revocation
    answers it rests on are kept: shown again meanwhile, it is not verified again, and a
    revocation is noticed as soon as for any signer. A checkpoint that failed is checked again.

    Never raises for a bad checkpoint: the answer says what failed.
    """
    if trust is None:
        return await _verify_checkpoint(cp, None, signers=signers, origin=origin)
    remembered = _remembered_as(cp, signers, origin)
    known = trust.recall(remembered)
    if isinstance(known, CheckpointCheck):
        return known
    check = await asyncio.to_thread(
        asyncio.run, _verify_checkpoint(cp, trust, signers=signers, origin=origin)
    )
    if check.ok:
        trust.remember(remembered, check, revocation=check.revocation or "good")
    return check


def _remembered_as(
    cp: Checkpoint, signers: Sequence[x509.Certificate] | None, origin: str | None
) -> tuple[Any, ...]:
    """What a checkpoint's verdict is kept under: everything the row holds, and what it was
    checked against (the trust store that keeps it is the rest)."""
    digest = hashlib.sha256()
    chain = (c.public_bytes(serialization.Encoding.DER) for c in cp.signer_chain)
    for part in (str(cp.size).encode(), cp.root, cp.at.encode(), cp.note, cp.timestamp, *chain):
        digest.update(len(part).to_bytes(8, "big") + part)
    pinned = None if signers is None else tuple(sorted(key_fingerprint(c) for c in signers))
    return ("checkpoint", digest.digest(), pinned, origin)


async def _verify_checkpoint(
    cp: Checkpoint,
    trust: Any | None,
    *,
    signers: Sequence[x509.Certificate] | None = None,
    origin: str | None = None,
) -> CheckpointCheck:
    """What :func:`verify_checkpoint` checks, on the running loop, nothing remembered."""
    leaf, key, note_origin = None, None, None
    try:
        if not cp.signer_chain:
            raise CheckpointError("no signer certificate")
        leaf = cp.signer_chain[0]
        content = verify_note_signature(cp.note, leaf)
        key, note_origin = key_fingerprint(leaf), content.origin
        if (content.size, content.root, content.at) != (cp.size, cp.root, cp.at):
            raise CheckpointError("stored size, root or time differ from the signed note")
        if origin is not None and content.origin != origin:
            raise CheckpointError(f"origin {content.origin!r} is not the log's ({origin!r})")
        if signers is not None and key not in {key_fingerprint(c) for c in signers}:
            pinned = ", ".join(describe_signer(c) for c in signers) or "none"
            raise CheckpointError(
                f"signed by {describe_signer(leaf)}, not by the audit signer ({pinned})"
            )
        if trust is None:
            return CheckpointCheck(cp.size, True, signer=_cn(leaf), key=key, origin=content.origin)
        from signing.errors import SigningError
        from signing.timestamps import verify_timestamp

        try:
            info = await verify_timestamp(cp.timestamp, cp.note, trust)
        except SigningError as exc:
            raise CheckpointError(f"timestamp: {exc}") from exc
        contradiction = signed_time_problem(content.at, info.time)
        if contradiction is not None:
            raise CheckpointError(contradiction)
        try:
            chain = await trust.validate(
                cp.signer_chain[0], cp.signer_chain[1:], usage="signing", moment=info.time
            )
        except SigningError as exc:
            raise CheckpointError(f"signer: {exc}") from exc
    except CheckpointError as exc:
        return CheckpointCheck(
            cp.size,
            False,
            problem=" ".join(str(exc).split()),  # one line: a parser's message may hold several
            signer=_cn(leaf) if leaf is not None and key is not None else None,
            key=key,
            origin=note_origin,
        )
    return CheckpointCheck(
        cp.size,
        True,
        signer=_cn(leaf),
        tsa=info.tsa,
        timestamp_time=info.time.isoformat(),
        key=key,
        origin=content.origin,
        revocation=next((r for r in (info.revocation, chain.revocation) if r != "good"), "good"),
    )


# How far a checkpoint's signed time may be from its timestamp's: the checkpointer asks the TSA
# right after signing (10 s at most), and the two clocks may differ a little. Farther, the gateway's
# clock was wrong when it signed — and when it dated the entries the checkpoint covers. (`audit
# verify` holds the entries no checkpoint covers to its own clock with the same tolerance.)
CLOCK_TOLERANCE = timedelta(minutes=5)


def signed_time_problem(at: str, stamped: datetime) -> str | None:
    """Why a checkpoint's signed time ``at`` (its note's) contradicts ``stamped``, its RFC 3161
    timestamp's time; None when they agree within :data:`CLOCK_TOLERANCE`."""
    try:
        signed = datetime.fromisoformat(at)
    except ValueError:
        return f"signed time {at!r} is not a time"
    if signed.tzinfo is None:
        return f"signed time {at!r} has no time zone"
    if abs(signed - stamped) <= CLOCK_TOLERANCE:
        return None
    return (
        f"signed time {at} contradicts its timestamp ({stamped.isoformat()}): more than "
        f"{CLOCK_TOLERANCE.total_seconds() / 60:g} minutes apart: the gateway's clock was wrong "
        "when it signed"
    )


# --- the background writer -----------------------------------------------------------------------


class _LogLost(Exception):
    """The log no longer holds the entries a checkpoint about to be stored covers."""


class Checkpointer:
    """Writes a checkpoint when ``every`` new events have arrived or ``interval_s`` has passed
    since the last one (and there is something new). Start and stop it with the application.

    ``key`` is a :class:`signing.keys.SigningKey`; ``timestamper`` defaults to
    :func:`signing.timestamps.request_timestamp` against ``tsa_url`` (tests may pass another
    ``async (digest) -> token``). With ``trust`` (a :class:`signing.trust.TrustStore`: the
    gateway's anchors), each token is verified as ``audit verify`` will (imprint, the TSA's chain
    and usage) before the checkpoint is stored: a token that fails is a failed checkpoint, not a
    checkpoint every verification refuses. With ``metrics``, each periodic attempt is counted by
    outcome and the latest checkpoint's size and time are kept as gauges.
    """

    def __init__(
        self,
        store: Store,
        key: Any,
        *,
        tsa_url: str | None = None,
        origin: str = DEFAULT_ORIGIN,
        every: int = 1000,
        interval_s: float = 60.0,
        fail_closed_after_s: float = 300.0,
        poll_s: float | None = None,
        timestamper: Callable[[bytes], Any] | None = None,
        trust: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        if timestamper is None and tsa_url is None:
            raise CheckpointError("a TSA url (audit.tsa_url) is required")
        make_note_body(origin, 0, b"\0" * 32, "x")  # fail early on a bad origin
        self.store, self.key, self.origin = store, key, origin
        self.every, self.interval_s = max(1, every), interval_s
        self.fail_closed_after_s = fail_closed_after_s
        self.poll_s = poll_s if poll_s is not None else min(1.0, interval_s)
        self._tsa_url = tsa_url
        self._timestamper = timestamper
        self._trust = trust
        self._clock = clock
        self._stack = RootStack()
        # The chain hash of the stack's last leaf, computed from the leaves fed (as the log's
        # chain_hash column is): what a checkpoint's insert compares with the log.
        self._chain = GENESIS
        # A store failure may have been a crash that lost entries the stack holds: the next
        # checkpoint reads the stack again from the log first.
        self._stale = False
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_time = clock()
        self._failing_since: float | None = None
        self._warned_at = -float("inf")  # when the last failure was logged (clock())
        self._metrics = metrics
        if metrics is not None:
            for outcome in ("ok", "failed"):  # both series from the start: rate() needs them
                metrics.checkpoints.labels(outcome)
        self._broken: str | None = None  # a condition retrying cannot fix (log ≠ checkpoint)
        # The checkpoints the log must match, smallest first, until the stack has been read up to
        # each one's size and its root compared: the latest stored, and when the log is read
        # again, the one this checkpointer held (see _rebuild).
        self._pending: list[Checkpoint] = []
        self.last_error: str | None = None
        self.latest: Checkpoint | None = None
        # What the checkpoint being made is doing (waiting for), to say so when it is given up
        # (the stop's, after 10 s: a TimeoutError says nothing).
        self.step = "idle"

    # --- lifecycle ---
    async def start(self) -> None:
        """Load the latest checkpoint and the leaves, then run in the background.

        A log shorter than the latest checkpoint (entries removed from its end) leaves the
        checkpointer broken — :attr:`healthy` false, :meth:`checkpoint_now` refused — until the
        log reaches that size again: with the checkpoint's root (the entries were put back) it
        recovers; with another (new entries took the removed ones' places) it stays broken.

        Raises CheckpointError if the stored latest checkpoint is unreadable, or the log does not
        match it (altered entries) or has a gap.
        """
        await self._load()
        self._task = asyncio.create_task(self._run(), name="lienthong-checkpointer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def healthy(self) -> tuple[bool, str]:
        """(ok, reason) for /readyz; false means: stop accepting new work."""
        if self._broken:
            return False, self._broken
        if self._task is None:
            return False, "audit checkpointer not running"
        if self._task.done():
            return False, "audit checkpointer stopped unexpectedly"
        if self._failing_since is not None and self.fail_closed_after_s > 0:
            failing = self._clock() - self._failing_since
            if failing > self.fail_closed_after_s:
                return False, (
                    f"no timestamped audit checkpoint for {failing:.0f}s "
                    f"(limit {self.fail_closed_after_s:.0f}s): {self.last_error}"
                )
        return True, "ok"

    @property
    def readiness(self) -> tuple[bool, str]:
        """(ready, what /readyz says of the audit log). Not ready when :attr:`healthy` is false
        (new work is refused). Ready, but not "ok", while checkpoints fail within
        ``fail_closed_after_s`` (or with no limit), or would fail (the signing certificate ran
        out, and an idle log attempts none): the gateway still takes work its log cannot seal,
        and an operator must hear of it before the limit, or at all."""
        ok, reason = self.healthy
        if not ok:
            return False, reason
        if self._failing_since is not None:
            failing = self._clock() - self._failing_since
            then = (
                f"new work refused after {self.fail_closed_after_s:.0f}s"
                if self.fail_closed_after_s > 0
                else "new work still taken: fail_closed_after_s = 0"
            )
            return True, f"checkpoints failing for {failing:.0f}s ({then}): {self.last_error}"
        from signing.errors import UntrustedSigner
        from signing.trust import check_valid_now

        try:
            check_valid_now((self.key.certificate, *self.key.chain))  # dates only: cheap
        except UntrustedSigner as exc:
            return True, f"cannot sign checkpoints: {exc.reason}"
        return True, "ok"

    # --- work ---
    async def _load(self, held: Checkpoint | None = None) -> None:
        """Read the latest stored checkpoint and the log, checked against it — and against
        ``held``, the checkpoint this checkpointer signed or loaded before, when the log is read
        again: the store holds no smaller checkpoint than that one, and the log its entries."""
        rows = await checkpoint_rows(self.store)  # the latest
        stored = None
        for row in rows:
            if isinstance(row, CheckpointError):  # one the store cannot hand over
                raise CheckpointError(f"checkpoint {row.size}: {row}", size=row.size)
            stored = Checkpoint.from_row(row)
        if held is not None and (
            stored is None
            or stored.size < held.size
            or (stored.size == held.size and stored.root != held.root)
        ):
            # Checkpoints are stored by durable commits, after the entries they cover: no crash
            # of the store takes one, nor those entries, once stored. Someone deleted it (and
            # maybe rewrote the entries it covered: a checkpoint of the log now, checked against
            # an older one, would sign that). The stack is not read: nothing brings this back.
            latest = "none" if stored is None else stored.size
            self._broken = (
                f"checkpoint {held.size}, which this gateway signed or loaded, is no longer "
                f"stored (the latest stored is {latest}): checkpoints were deleted or replaced "
                "in the store, and the entries they covered may have been rewritten; not "
                f"signing the log again (checkpoint {held.size}'s root: "
                f"{base64.b64encode(held.root).decode()})"
            )
            log.error("%s", self._broken)
            return
        self._keep_latest(stored)
        self._pending = [c for c in (held, stored) if c is not None]
        if held is not None and stored is not None and held.size == stored.size:
            self._pending = [stored]  # the same root (above)
        size = await self._catch_up()
        if self._pending and size < self._pending[-1].size:
            # Signing the head now would sign a fork: the next appends reuse the removed
            # entries' sequence numbers, and a checkpoint of them contradicts this one.
            self._broken = (
                f"audit log truncated below checkpoint {self._pending[-1].size}: it has {size} "
                "entries"
            )
            log.error("%s", self._broken)

    async def _catch_up(self) -> int:
        """Feed new leaves into the root stack, up to the log's end when the last page was read;
        return the log size. When the stack reaches the size of the checkpoint loaded at start,
        its root must equal that checkpoint's (else the log was altered)."""
        while True:
            start = self._stack.size

            def page(tx: Tx, start: int = start) -> list[Row]:
                return tx.all("audit.leaves", start=start, stop=start + _PAGE)

            rows = await self.store.read(page)
            if rows:
                # Hashing a page (up to 5,000 leaves) took the loop 5-20 ms, a stall in the tail
                # of every request in flight: off the loop. Callers hold the lock or are starting
                # up, so nothing else touches the stack meanwhile.
                await asyncio.to_thread(self._feed, rows)
            if len(rows) < _PAGE:
                # A short page ended at the log's end as it was then. Reading on until a page
                # came back empty chased a busy gateway's appends: ~20 more reads of a few
                # leaves each per checkpoint, under load.
                return self._stack.size

    def _feed(self, rows: list[Row]) -> None:
        for row in rows:
            if row["seq"] != self._stack.size:
                self._broken = f"audit log has a gap at entry {self._stack.size}"
                self._pending = []  # nothing brings this back
                raise CheckpointError(self._broken)
            leaf = bytes(row["leaf_hash"])
            self._stack.append(leaf)
            self._chain = hashlib.sha256(self._chain + leaf).digest()
            check = self._pending[0] if self._pending else None
            if check is not None and self._stack.size == check.size:
                del self._pending[0]
                if self._stack.root() != check.root:
                    # Nothing brings this back: a later checkpoint the log matches (one signed
                    # over the altered entries by a gateway that never held this one) included.
                    self._pending = []
                    self._broken = (
                        f"audit log does not match checkpoint {check.size}: altered entries"
                    )
                    log.error("%s", self._broken)
                    raise CheckpointError(self._broken, size=check.size)
                if self._broken is not None and not self._pending:
                    # truncated, and now the same entries again
                    log.warning("audit log matches checkpoint %d again", check.size)
                    self._broken = None

    async def checkpoint_now(self) -> Checkpoint | None:
        """Sign and timestamp the current log head, if it grew. Returns the new checkpoint (or
        None if nothing is new). Raises CheckpointError if signing, timestamping or storing fails,
        or if the log no longer holds the entries read (lost in a crash of the store); StoreError
        if the log cannot be read. After a store failure or lost entries, the next call reads the
        whole log again before it signs, and refuses to sign (for good) a log that no longer holds
        the entries of the checkpoint this checkpointer signed or loaded, or a store that no
        longer holds that checkpoint.
        """
        self.step = "waiting for the checkpoint in progress"
        async with self._lock:
            if self._broken:
                raise CheckpointError(f"not signing: {self._broken}")
            try:
                if self._stale:
                    await self._rebuild()
                    if self._broken:  # truncated below the latest checkpoint
                        raise CheckpointError(f"not signing: {self._broken}")
                return await self._sign_head()
            except StoreError:
                self._stale = True
                raise

    async def _rebuild(self) -> None:
        """Drop the stack and read it again from the log, checked against the latest stored
        checkpoint, as at start, and against the one this checkpointer holds: a crash of the
        store loses only entries no stored checkpoint covers, so the store must still hold that
        checkpoint, and the log its entries. Trusting the store alone, a log rewritten under its
        deleted newer checkpoints (consistent with the older ones left) was signed again."""
        log.warning("audit checkpointer: reading the log again (a store failure or lost entries)")
        self.step = "reading the log again"
        self._stack, self._chain, self._pending = RootStack(), GENESIS, []
        await self._load(held=self.latest)
        self._stale = False

    async def _sign_head(self) -> Checkpoint | None:
        self.step = "reading the log"
        size = await self._catch_up()
        if size == 0 or (self.latest is not None and self.latest.size >= size):
            return None
        root, chain = self._stack.root(), self._chain
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        from signing.errors import UntrustedSigner
        from signing.trust import check_valid_now

        try:
            # Checked at start too; a certificate that expired since would sign checkpoints
            # that `audit verify` refuses: failing instead, the gateway says why (/readyz) and,
            # after fail_closed_after_s, stops taking work the log could not seal.
            check_valid_now((self.key.certificate, *self.key.chain))
        except UntrustedSigner as exc:
            raise CheckpointError(f"cannot sign checkpoint: {exc.reason}", size=size) from None
        self.step = "signing with the audit key"
        try:
            note = await asyncio.to_thread(sign_note, self.key, self.origin, size, root, at)
        except Exception as exc:  # a token key may fail in many ways; say so, keep going
            raise CheckpointError(f"cannot sign checkpoint: {exc}", size=size) from exc
        self.step = "waiting for the TSA"
        token = await self._timestamp(hashlib.sha256(note).digest(), size)
        self.step = "verifying the timestamp"
        await self._check_timestamp(token, note, size)
        cp = Checkpoint(
            size=size,
            root=root,
            at=at,
            note=note,
            signer_chain=(self.key.certificate, *self.key.chain),
            timestamp=token,
        )

        def insert(tx: Tx) -> None:
            # Lookups' events are committed without waiting for the sync: a crash of the store
            # (PostgreSQL's server; the OS under SQLite) can lose the last of them after the
            # stack read them, and new events then take their sequence numbers. So the log must
            # still hold what the stack was built from, maybe over several cycles. Each entry's
            # chain_hash is SHA-256(previous chain_hash || leaf_hash), written by its appender
            # from the entry before it; a crash loses a suffix of commits (the WAL is replayed in
            # order), and new entries chain from what is left. So the chain hash stored at
            # size - 1 follows from every leaf 0..size-1, and equals ``chain``, computed the same
            # way from the stack's leaves, only if the log holds exactly the leaves signed (a
            # chain altered by hand fails `audit verify` on its own). The leaf hash at size - 1
            # would not do: the stack may hold lost leaves below one it read after the crash.
            # No audit turn is needed: appends only add entries past the head.
            row = tx.one("audit.get", seq=size - 1)
            if row is None or bytes(row["chain_hash"]) != chain:
                raise _LogLost
            # This commit is durable (transact's default: SQLite commits the batch holding it
            # with synchronous=FULL, which fsyncs the WAL and so every frame before this one;
            # PostgreSQL with the server's synchronous_commit, on unless its operator turned
            # it off, which flushes the WAL in order up to this commit's record). The entries
            # just checked committed before this transaction read them, earlier in the WAL: once
            # the checkpoint is stored, they are on disk too, and no crash can take them from
            # under it. (If a checkpoint of this size is stored already, the insert does nothing
            # and flushes nothing: that one's commit flushed the same entries, checked alike.)
            tx.execute("checkpoints.insert", **cp.to_row())

        self.step = "storing the checkpoint"
        try:
            await self.store.transact(insert)
        except _LogLost:
            self._stale = True
            raise CheckpointError(
                f"checkpoint {size} not stored: the log no longer holds the entries it covers "
                "(lost in a crash of the store?); reading the log again",
                size=size,
            ) from None
        except StoreError as exc:
            self._stale = True
            raise CheckpointError(f"cannot store checkpoint: {exc}", size=size) from exc
        self._keep_latest(cp)
        return cp

    def _keep_latest(self, cp: Checkpoint | None) -> None:
        self.latest = cp
        if self._metrics is None or cp is None:
            return
        self._metrics.checkpoint_size.set(cp.size)
        with contextlib.suppress(ValueError):  # a hand-edited row: the gauge keeps its value
            self._metrics.checkpoint_time.set(datetime.fromisoformat(cp.at).timestamp())

    async def _timestamp(self, digest: bytes, size: int) -> bytes:
        try:
            if self._timestamper is not None:
                return bytes(await self._timestamper(digest))
            from signing.errors import SigningError
            from signing.timestamps import request_timestamp

            assert self._tsa_url is not None
            try:
                return await request_timestamp(self._tsa_url, digest)
            except SigningError as exc:
                raise CheckpointError(str(exc), size=size) from exc
        except CheckpointError:
            raise
        except Exception as exc:  # an injected timestamper is foreign code
            raise CheckpointError(f"timestamp failed: {exc}", size=size) from exc

    async def _check_timestamp(self, token: bytes, note: bytes, size: int) -> None:
        """Verify ``token`` over ``note`` against the anchors, and the note's time against the
        token's, as verify_checkpoint does. A TSA outside them (another CA's, a public one, one
        under a root not added yet) stamped checkpoints that were stored, counted ``ok`` and never
        failed the gateway closed, while every `audit verify` and the API's own ``verified``
        refused them."""
        if self._trust is None:
            return
        from signing.errors import SigningError
        from signing.timestamps import verify_timestamp

        try:
            # Fresh: the TSA's chain is judged now, as the trust store keeps it (a path
            # validation per cache time, not per checkpoint). The rest, ~1 ms of CPU: off the loop.
            info = await asyncio.to_thread(
                asyncio.run, verify_timestamp(token, note, self._trust, fresh=True)
            )
        except SigningError as exc:
            raise CheckpointError(
                f"checkpoint {size} not stored: its timestamp does not verify against the trust "
                f"anchors ([signing] trust): {' '.join(str(exc).split())}",
                size=size,
            ) from exc
        # A clock off the TSA's signs checkpoints (and dates entries) every verification refuses.
        contradiction = signed_time_problem(parse_note(note).at, info.time)
        if contradiction is not None:
            raise CheckpointError(f"checkpoint {size} not stored: {contradiction}", size=size)

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except CheckpointError as exc:
                self._failed(str(exc))
            except Exception as exc:  # keep the loop alive; the reason goes to healthy
                if isinstance(exc, StoreError):  # see checkpoint_now
                    self._stale = True
                self._failed(f"{type(exc).__name__}: {exc}", unexpected=exc)
            await asyncio.sleep(self.poll_s)

    def _failed(self, reason: str, unexpected: Exception | None = None) -> None:
        """Count a failed attempt; log it when failures start, when their reason changes, and
        every REPEAT_WARNING_S while it lasts (``unexpected``: at ERROR, with its traceback)."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if self._metrics is not None:
            self._metrics.checkpoints.labels("failed").inc()
        if reason != self.last_error or now - self._warned_at >= REPEAT_WARNING_S:
            self._warned_at = now
            log.log(
                logging.WARNING if unexpected is None else logging.ERROR,
                "audit checkpoint failed (retrying every %gs; logged again when the reason "
                "changes, or in %.0f min): %s",
                self.poll_s,
                REPEAT_WARNING_S / 60,
                reason,
                exc_info=unexpected,
                extra={"failing_s": round(now - self._failing_since, 1)},
            )
        self.last_error = reason

    async def _tick(self) -> None:
        if self._broken:
            if self._pending:
                # Truncated: follow the log back to the checkpoint's size, where its root says
                # whether the removed entries came back or others took their places.
                async with self._lock:
                    await self._catch_up()
            return
        # The head, not count(*): an index lookup, where count(*) scans the table every poll.
        head = await self.store.read(lambda tx: tx.one("audit.head"))
        size = int(head["seq"]) + 1 if head else 0
        done = self.latest.size if self.latest else 0
        due = size - done >= self.every or (
            size > done and self._clock() - self._last_time >= self.interval_s
        )
        if not due:
            return
        await self.checkpoint_now()
        self._last_time = self._clock()
        if self._metrics is not None:
            self._metrics.checkpoints.labels("ok").inc()
        if self._failing_since is not None:
            log.info("audit checkpoints flowing again")
        self._failing_since = None
        self._warned_at = -float("inf")
        self.last_error = None
