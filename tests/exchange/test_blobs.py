"""Content-addressed blob store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.exchange.blobs import BlobStore
from gateway.exchange.errors import BlobError, BlobStoreUnavailable, PayloadTooLarge


def test_write_is_named_by_digest_and_deduplicated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = "Công văn 2491/STC-BCTC".encode()
    with store.writer() as w:
        for i in range(0, len(data), 5):
            w.write(data[i : i + 5])
        ref = w.commit()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.path == store.path(ref.sha256) and ref.path.read_bytes() == data
    assert store.put(data) == ref
    assert store.exists(ref.sha256)
    assert not list(store.tmp_dir.iterdir())


def test_abort_and_cap_leave_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"half")
        raise RuntimeError
    with pytest.raises(PayloadTooLarge), store.writer(max_bytes=3) as w:
        w.write(b"four")
    assert not list(store.tmp_dir.iterdir())
    assert not (tmp_path / "sha256").exists()


def test_errors(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError):
        store.path("../etc/passwd")
    with pytest.raises(BlobError):
        store.read("0" * 64)
    w = store.writer()
    w.commit()
    with pytest.raises(BlobError):
        w.write(b"x")


def test_a_full_disk_is_unavailable_not_a_broken_store(tmp_path: Path) -> None:
    """The sender of a refused document retries on 503, not on 500: a full disk must say so.
    /dev/full is the kernel's own full disk: every write to it fails with ENOSPC."""
    blobs = BlobStore(tmp_path)
    with blobs.writer() as w:
        w._file.close()
        w._file = open("/dev/full", "wb", buffering=0)  # the writer closes it
        with pytest.raises(BlobStoreUnavailable, match="No space left on device") as info:
            w.write(b"x" * 1024)
        assert (info.value.status, info.value.slug) == (503, "store-unavailable")
    assert list((tmp_path / "tmp").iterdir()) == []  # the temp file went with the writer
