"""Files written for their owner alone, and kept after a power cut: the helpers the signing
package (the throw-away PKI's keys) and the gateway (audit bundles, documents fetched, blobs,
the demo's secrets) share. ``signing`` is the lowest package both may import (DESIGN.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

__all__ = ["fsync_dir", "open_private", "write_private"]

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
