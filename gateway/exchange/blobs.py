"""Content-addressed blob store on disk: ``<root>/sha256/ab/cd/<hex>``.

A blob is written to a temp file in the same file system while its SHA-256 is computed on the fly,
fsync'ed, then renamed into place (atomic), and the directory fsync'ed, so a crash leaves either
the whole blob or nothing under its name. Writing the same content twice is harmless (the second
copy is dropped). The API is synchronous on purpose: callers on the event loop run it through
``asyncio.to_thread``; the streaming parser already runs on a worker thread. The one coroutine,
:func:`bind_to_store`, asks the store whether this folder is its own (a gateway's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from gateway.exchange.errors import BlobError, BlobStoreUnavailable, PayloadTooLarge
from signing.files import fsync_dir

__all__ = ["MARK_FILE", "BlobRef", "BlobStore", "BlobWriter", "bind_to_store"]

_HEX = re.compile(r"^[0-9a-f]{64}$")
# No room, no working disk, or a folder gone or unwritable (an unmounted volume, its owner or
# mode changed): nothing of the request was kept, and once the operator has seen to it (told by
# the log) the same request succeeds: the sender may try again later (503), as when the database
# is unavailable. Any other error is a broken store (500).
_UNAVAILABLE = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EACCES,
        errno.EPERM,
    }
)
# The id of the store a blob folder belongs to: in the folder, and under this key in the store.
MARK_FILE = "store-id"
MARK_KEY = "blob_folder"


def _failed(what: str, exc: OSError) -> BlobError:
    if exc.errno in _UNAVAILABLE:
        # Logged, never answered (see gateway.problems.store_unavailable): the path tells the
        # operator which folder to see to.
        where = f" ({exc.filename})" if exc.filename else ""
        return BlobStoreUnavailable(f"{what}: {exc.strerror}{where}")
    return BlobError(f"{what}: {exc.strerror}")


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str
    size: int
    path: Path


class BlobWriter:
    """Streams bytes to a temp file, hashing as it goes; ``commit()`` names it by its digest.

    Used as a context manager: leaving the block without ``commit()`` (or with an exception)
    removes the temp file. ``max_bytes`` raises PayloadTooLarge as soon as it is exceeded.
    """

    def __init__(self, store: BlobStore, max_bytes: int | None = None) -> None:
        self._store = store
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        try:
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-")
        except OSError as exc:
            raise _failed("cannot create a temp file", exc) from exc
        self._tmp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self.ref: BlobRef | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None:
            raise BlobError("write after commit or abort")
        self.size += len(data)
        if self._max is not None and self.size > self._max:
            raise PayloadTooLarge(f"more than {self._max} bytes", max_bytes=self._max)
        self._hash.update(data)
        try:
            self._file.write(data)
        except OSError as exc:
            raise _failed("cannot write a blob", exc) from exc

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> BlobRef:
        """Make the blob durable under its digest. Raises BlobError."""
        if self._file is None:
            raise BlobError("commit twice or after abort")
        digest = self._hash.hexdigest()
        final = self._store.path(digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                self._tmp.unlink()
            else:
                os.replace(self._tmp, final)
                fsync_dir(final.parent)
        except OSError as exc:
            self.abort()
            raise _failed(f"cannot store blob {digest}", exc) from exc
        self.ref = BlobRef(digest, self.size, final)
        return self.ref

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ref is None:
            self.abort()


class BlobStore:
    """Blobs under ``root``; raises BlobError on I/O failure."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.trash_dir = self.tmp_dir / "trash"  # blobs a sweep is about to delete
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobError(f"cannot create blob directory {self.root}: {exc.strerror}") from exc

    def trouble(self, min_free_bytes: int) -> str | None:
        """Why no blob can be written here now (naming the folder), or None. Writes nothing:
        /readyz asks at every poll. A stat and an access(2) of the folder and its temp area
        (where every intake is staged), and the room left on their file system."""
        for folder in (self.root, self.tmp_dir):
            try:
                if not stat.S_ISDIR(os.stat(folder).st_mode):
                    return f"{folder}: not a directory"
                # access(2) answers EROFS for a read-only mount, even to root.
                if not os.access(folder, os.W_OK | os.X_OK):
                    return f"{folder}: not writable by this process"
            except OSError as exc:
                return f"{folder}: {exc.strerror}"
        try:
            fs = os.statvfs(self.tmp_dir)
        except OSError as exc:
            return f"{self.tmp_dir}: {exc.strerror}"
        # Root may write into the blocks the file system keeps back from everyone else.
        free = (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize
        if free < min_free_bytes:
            return f"{self.root}: full ({free} bytes free, less than {min_free_bytes})"
        return None

    def path(self, sha256: str) -> Path:
        if not _HEX.match(sha256):
            raise BlobError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    # -- the mark: which store's blobs these are (see bind_to_store) ---------------------------

    def mark(self) -> str | None:
        """The id of the store this folder belongs to; None while unmarked. Raises BlobError."""
        try:
            return (self.root / MARK_FILE).read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise BlobError(f"cannot read {self.root / MARK_FILE}: {exc}") from exc

    def take_mark(self, store_id: str) -> str:
        """Mark this folder as ``store_id``'s, unless it is marked already; return its mark.

        The mark is linked into place whole, and only where none is: of the gateways sharing
        the folder that start at once, the first one's stands. Raises BlobError."""
        try:
            fd, temp = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-")  # swept if left
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(store_id.encode("ascii"))
                    f.flush()
                    os.fsync(f.fileno())
                os.link(temp, self.root / MARK_FILE)
                fsync_dir(self.root)
            finally:
                os.unlink(temp)
        except FileExistsError:
            pass  # marked already: that mark stands
        except OSError as exc:
            raise _failed(f"cannot write {self.root / MARK_FILE}", exc) from exc
        marked = self.mark()
        if marked is None:
            raise BlobError(f"{self.root / MARK_FILE} vanished as it was written")
        return marked

    def holds_blobs(self) -> bool:
        """Whether any blob is here. Raises BlobError."""
        try:
            return next((self.root / "sha256").glob("*/*/*"), None) is not None
        except OSError as exc:
            raise _failed("cannot list blobs", exc) from exc

    def writer(self, max_bytes: int | None = None) -> BlobWriter:
        return BlobWriter(self, max_bytes)

    def put(self, data: bytes) -> BlobRef:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def read(self, sha256: str) -> bytes:
        """The whole blob (small blobs only). Raises BlobError if it is missing."""
        try:
            return self.path(sha256).read_bytes()
        except OSError as exc:
            raise BlobError(f"blob {sha256} unreadable: {exc.strerror}") from exc

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path(sha256).open("rb")
        except OSError as exc:
            raise BlobError(f"blob {sha256} unreadable: {exc.strerror}") from exc

    # -- staging: a request's blobs stay apart until the request is accepted -----------------

    def staging(self) -> BlobStore:
        """A private store inside this one's temp area (same file system: adoption is a rename).

        Raises BlobError.
        """
        try:
            path = tempfile.mkdtemp(dir=self.tmp_dir, prefix="stage-")
        except OSError as exc:
            raise _failed("cannot create a staging area", exc) from exc
        return BlobStore(path)

    def adopt(self, staging: BlobStore) -> list[str]:
        """Move every blob of ``staging`` into this store (durably); return their digests.

        Raises BlobError.
        """
        moved = []
        base = staging.root / "sha256"
        try:
            for path in sorted(base.rglob("*")) if base.exists() else []:
                if not path.is_file():
                    continue
                final = self.path(path.name)
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    # Already here (another document's, or an orphan): touched, so a sweep
                    # that finds it takes it for new and leaves it (see quarantine()).
                    os.utime(final)
                except FileNotFoundError:
                    os.replace(path, final)
                    fsync_dir(final.parent)
                moved.append(path.name)
        except OSError as exc:
            raise _failed("cannot adopt staged blobs", exc) from exc
        return moved

    def discard(self) -> None:
        """Remove this (staging) store and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)

    # -- sweeping: blobs no row names -------------------------------------------------------
    # A document's blobs are adopted just before the transaction that names them; when that
    # transaction fails (the database unavailable, the same package racing in) they stay,
    # named by nothing. The hub sweeps them in three steps, asking the store in between, so
    # that a blob an intake adopts meanwhile (touched by adopt()) is never taken.

    def stale(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Digests of the blobs not written or adopted for ``older_than_s``; removes temp files,
        staging areas and trash as old (left by a gateway that stopped mid-request or
        mid-sweep; a blob's move to the trash sets its ctime). Raises BlobError."""
        cutoff = (time.time() if now is None else now) - older_than_s
        found = []
        try:
            for entry in self.tmp_dir.iterdir():
                if entry.lstat().st_mtime < cutoff and entry.name.startswith(("blob-", "stage-")):
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            for entry in self.trash_dir.iterdir() if self.trash_dir.exists() else []:
                if entry.lstat().st_ctime < cutoff:
                    entry.unlink(missing_ok=True)
            base = self.root / "sha256"
            for path in base.glob("*/*/*") if base.exists() else []:
                if _HEX.match(path.name) and path.lstat().st_mtime < cutoff:
                    found.append(path.name)
        except OSError as exc:
            raise _failed("cannot list blobs", exc) from exc
        return sorted(found)

    def quarantine(self, digests: Iterable[str], older_than_s: float) -> list[str]:
        """Move each blob to the trash, unless it was touched within ``older_than_s`` (adopted
        since stale() listed it: it goes back). Returns the digests now in the trash."""
        moved = []
        try:
            self.trash_dir.mkdir(exist_ok=True)
            for digest in digests:
                held = self.trash_dir / digest
                try:
                    os.replace(self.path(digest), held)
                except FileNotFoundError:
                    continue
                # An adopt() that touched the blob before the move shows here; one after it
                # finds no blob and puts its own copy in place.
                if held.stat().st_mtime >= time.time() - older_than_s:
                    self._restore(held, digest)
                else:
                    moved.append(digest)
        except OSError as exc:
            raise _failed("cannot quarantine blobs", exc) from exc
        return moved

    def purge(self, digests: Iterable[str], *, keep: Collection[str] = ()) -> list[str]:
        """Delete the quarantined blobs, but put back those in ``keep`` (named by a row after
        all). Returns the digests deleted."""
        deleted = []
        try:
            for digest in digests:
                held = self.trash_dir / digest
                if digest in keep:
                    self._restore(held, digest)
                else:
                    held.unlink(missing_ok=True)
                    deleted.append(digest)
        except OSError as exc:
            raise _failed("cannot purge blobs", exc) from exc
        return deleted

    def _restore(self, held: Path, digest: str) -> None:
        final = self.path(digest)
        if final.exists():  # an intake put its own copy back meanwhile: the same bytes
            held.unlink(missing_ok=True)
        else:
            os.replace(held, final)


# -- one store, one blob folder ------------------------------------------------------------------
# Every gateway on a store must use one blob folder: a document's rows are the store's, its
# blobs are in the folder of the gateway that took it. The folder and the store each keep the id
# the first gateway gave them (MARK_FILE, kv MARK_KEY); a gateway starts only where they match,
# or where the folder can take the store's id: it holds the store's first document, or the store
# holds none and the folder nothing either.


async def bind_to_store(blobs: BlobStore, store: Any) -> None:
    """Check that ``blobs`` is the blob folder of ``store`` (a gateway.store.Store), marking
    both the first time. Raises BlobError (naming ``[documents] blob_dir`` and why), StoreError.
    """

    def look(tx: Any) -> tuple[str | None, dict[str, Any] | None]:
        return _store_mark(tx), tx.one("documents.first")

    store_mark, first = await store.read(look)
    folder_mark = await asyncio.to_thread(blobs.mark)
    if store_mark is not None and store_mark == folder_mark:
        return
    why = await asyncio.to_thread(_not_the_stores, blobs, store_mark, folder_mark, first)
    if why is None:
        # The folder first: a gateway sharing it that starts at the same moment takes its mark.
        marked = await asyncio.to_thread(
            blobs.take_mark, folder_mark or store_mark or uuid.uuid4().hex
        )
        if await store.transact(lambda tx: _claim(tx, marked)) != marked:
            why = "another gateway on this store marked another folder as this one started"
    if why is not None:
        raise BlobError(
            f"[documents] blob_dir {blobs.root} is not this store's blob folder: {why} "
            "(every gateway on one store must share one blob_dir)"
        )


def _store_mark(tx: Any) -> str | None:
    row = tx.one("kv.get", k=MARK_KEY)
    return None if row is None else str(row["v"])


def _claim(tx: Any, mark: str) -> str | None:
    """Give the store ``mark`` unless it has one; return the one it has."""
    tx.execute("kv.add", k=MARK_KEY, v=mark)
    return _store_mark(tx)


def _not_the_stores(
    blobs: BlobStore, store_mark: str | None, folder_mark: str | None, first: dict[str, Any] | None
) -> str | None:
    """Why ``blobs`` cannot be (or become) the blob folder of the store whose mark and first
    document are given; None if it can. Raises BlobError."""
    if store_mark is not None and folder_mark is not None:
        return f"its {MARK_FILE} names another store ({folder_mark}; this one is {store_mark})"
    if first is not None:
        if blobs.exists(first["package_sha256"]):
            return None
        return f"it lacks the package of the store's document {first['id']}"
    if store_mark is not None:
        return f"it has no {MARK_FILE}, and the store's folder is marked {store_mark}"
    if blobs.holds_blobs():  # and the store holds no document: another store's blobs
        if folder_mark is not None:
            return f"its {MARK_FILE} names another store ({folder_mark}), whose blobs it holds"
        return "it holds blobs, and the store no document: another store's folder"
    # An empty folder marked for no store: a first start that stopped before marking the store.
    return None
