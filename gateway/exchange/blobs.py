"""Content-addressed blob store on disk: ``<root>/sha256/ab/cd/<hex>``.

A blob is written to a temp file in the same file system while its SHA-256 is computed on the fly,
fsync'ed, then renamed into place (atomic), and the directory fsync'ed, so a crash leaves either
the whole blob or nothing under its name. Writing the same content twice is harmless (the second
copy is dropped). The API is synchronous on purpose: callers on the event loop run it through
``asyncio.to_thread``; the streaming parser already runs on a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from gateway.exchange.errors import BlobError, BlobStoreUnavailable, PayloadTooLarge

__all__ = ["BlobRef", "BlobStore", "BlobWriter"]

_HEX = re.compile(r"^[0-9a-f]{64}$")
# No room, or no working disk: the sender may try again later (503), unlike a broken store (500).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _failed(what: str, exc: OSError) -> BlobError:
    return (BlobStoreUnavailable if exc.errno in _NO_ROOM else BlobError)(f"{what}: {exc.strerror}")


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
                _fsync_dir(final.parent)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root``; raises BlobError on I/O failure."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobError(f"cannot create blob directory {self.root}: {exc.strerror}") from exc

    def path(self, sha256: str) -> Path:
        if not _HEX.match(sha256):
            raise BlobError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

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
                if not final.exists():
                    os.replace(path, final)
                    _fsync_dir(final.parent)
                moved.append(path.name)
        except OSError as exc:
            raise _failed("cannot adopt staged blobs", exc) from exc
        return moved

    def discard(self) -> None:
        """Remove this (staging) store and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)
