"""Files written for their owner alone, and kept after a power cut: the helpers the signing
package (the throw-away PKI's keys) and the gateway (audit bundles, documents fetched, blobs,
the demo's secrets) share. ``signing`` is the lowest package both may import (DESIGN.md)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "discard_part",
    "fsync_dir",
    "locked_part",
    "open_locked_part",
    "open_private",
    "remove_abandoned_parts",
    "write_private",
]

_CREATE = {"w": os.O_TRUNC, "x": os.O_EXCL, "a": os.O_APPEND}


def open_private(path: Path, mode: str = "wb", **kw: Any) -> IO[Any]:
    """``path`` opened to write (``mode`` "w", "x" — never over an existing file:
    FileExistsError — or "a", with "b" or not; ``kw`` as for open()), readable by its owner alone
    (0600, whatever the umask): a private key, or a file of personal data."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | _CREATE[mode[0]], 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file written over keeps its mode otherwise
        return open(fd, mode.replace("x", "w"), **kw)
    except BaseException:
        os.close(fd)
        raise


def fsync_dir(path: Path) -> None:
    """Sync the directory ``path``: a file just created or renamed in it keeps its name after a
    power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` readable by its owner alone (0600, whatever the umask)."""
    with open_private(path) as f:
        f.write(data)


# A file written whole or not at all is written first to a part beside it, ``.NAME.<hex>.part``:
# a name of its own for each writer (two writers of NAME at once never share a file), held under
# an flock while it is written. The kernel drops that lock with its process however it ends
# (SIGKILL too), which a pid written in its name cannot tell as surely (pids are reused, and
# differ between containers sharing the folder): a part no process holds locked is abandoned,
# and the next writer removes it.

_PART_TOKEN_BYTES = 8
_PART = re.compile(rf"\.(?P<name>.+)\.[0-9a-f]{{{2 * _PART_TOKEN_BYTES}}}\.part", re.DOTALL)


def _part_of(out: Path) -> Path:
    """A new name for the file ``out`` is written to first: hidden, beside it."""
    return out.with_name(f".{out.name}.{secrets.token_hex(_PART_TOKEN_BYTES)}.part")


def open_locked_part(out: Path) -> tuple[Path, IO[bytes]]:
    """A new part to write ``out`` in (see above), open to write, readable by its owner alone,
    and locked until :func:`discard_part` removes it."""
    while True:
        part = _part_of(out)
        f = open_private(part, "xb")
        try:
            if _lock(f.fileno()) and os.fstat(f.fileno()).st_nlink:
                return part, f
        except BaseException:
            f.close()
            part.unlink(missing_ok=True)
            raise
        # Taken for abandoned by another writer between its creation and its lock (removed, or
        # locked to be removed: that writer's to remove): another name.
        f.close()


def discard_part(part: Path, f: IO[bytes]) -> None:
    """Remove ``part`` (gone already once linked into place), then close it: while still
    locked, so that it is never seen unlocked under its name."""
    try:
        part.unlink(missing_ok=True)
    finally:
        f.close()


@contextlib.contextmanager
def locked_part(out: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """:func:`open_locked_part` for a ``with`` block, discarded at its end."""
    part, f = open_locked_part(out)
    try:
        yield part, f
    finally:
        discard_part(part, f)


def _lock(fd: int) -> bool:
    """Take the flock of ``fd``'s file: False if another process holds it. On a file system
    without locks (ENOLCK) True, unlocked: no writer can lock the file there to remove it either."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno != errno.ENOLCK:
            raise
    return True


def remove_abandoned_parts(folder: Path, of: Callable[[str], bool]) -> None:
    """Remove the parts in ``folder`` of files named as ``of`` accepts whose writers were cut
    short (killed, a power cut): those no process holds locked. Done as well as it can be: what
    it cannot remove is left as it was, and the writer goes on."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if (m := _PART.fullmatch(e.name)) and of(m["name"])]
    except OSError:  # a folder that cannot be listed: writing in it tells what is wrong
        return
    for name in names:
        with contextlib.suppress(OSError):
            _remove_if_abandoned(folder / name)


def _remove_if_abandoned(part: Path) -> None:
    """Remove ``part`` if it is a file no process holds locked (see :func:`open_locked_part`)."""
    fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # no symlink, no FIFO wait
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if its writer is writing it
        if os.path.samestat(held, os.stat(part, follow_symlinks=False)):
            part.unlink()
    finally:
        os.close(fd)
