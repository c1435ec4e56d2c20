"""Content-addressed blob store."""

from __future__ import annotations

import hashlib
import os
import time
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


# --- sweeping blobs no row names (DocumentHub.sweep drives these three steps) -----------------

DAY = 86400


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _staged(blobs: BlobStore, data: bytes) -> BlobStore:
    staging = blobs.staging()
    staging.put(data)
    return staging


def test_stale_lists_old_blobs_and_clears_old_leftovers(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    old, new = blobs.put(b"old"), blobs.put(b"new")
    _age(old.path, 2 * DAY)
    leftover = blobs.staging()  # a gateway stopped mid-request
    leftover.put(b"half an upload")
    _age(leftover.root, 2 * DAY)
    in_flight = blobs.staging()  # a request going on now
    assert blobs.stale(DAY) == [old.sha256]
    assert not leftover.root.exists() and in_flight.root.exists()
    assert new.path.exists()


def test_adopting_a_blob_that_is_already_there_makes_it_new(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ref = blobs.put(b"an attachment two documents carry")
    _age(ref.path, 2 * DAY)
    assert blobs.stale(DAY) == [ref.sha256]
    blobs.adopt(_staged(blobs, b"an attachment two documents carry"))
    assert blobs.stale(DAY) == []


def test_quarantine_gives_back_a_blob_adopted_after_it_was_listed(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    a, b = blobs.put(b"orphan"), blobs.put(b"adopted meanwhile")
    for ref in (a, b):
        _age(ref.path, 2 * DAY)
    listed = blobs.stale(DAY)
    blobs.adopt(_staged(blobs, b"adopted meanwhile"))  # an intake, between listing and moving
    assert blobs.quarantine(listed, DAY) == [a.sha256]
    assert not a.path.exists() and b.path.read_bytes() == b"adopted meanwhile"


def test_an_intake_adopting_a_quarantined_blob_puts_its_own_copy_in_place(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ref = blobs.put(b"sent again")
    _age(ref.path, 2 * DAY)
    held = blobs.quarantine(blobs.stale(DAY), DAY)
    assert held == [ref.sha256] and not ref.path.exists()
    blobs.adopt(_staged(blobs, b"sent again"))  # the blob is in the trash: this copy goes in
    assert blobs.purge(held) == [ref.sha256]
    assert ref.path.read_bytes() == b"sent again"


def test_purge_deletes_all_but_what_a_row_names_after_all(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    a, b = blobs.put(b"orphan"), blobs.put(b"named by a row committed meanwhile")
    for ref in (a, b):
        _age(ref.path, 2 * DAY)
    held = blobs.quarantine(blobs.stale(DAY), DAY)
    assert sorted(held) == sorted([a.sha256, b.sha256])
    assert blobs.purge(held, keep=[b.sha256]) == [a.sha256]
    assert not a.path.exists() and b.path.read_bytes() == b"named by a row committed meanwhile"
    assert blobs.stale(DAY) == [b.sha256]  # still old: the next sweep asks the store again
    assert not list(blobs.trash_dir.iterdir())


# -- trouble(): what /readyz is told of the folder, without a write ---------------------------


def test_a_writable_folder_with_room_has_no_trouble(tmp_path: Path) -> None:
    assert BlobStore(tmp_path / "b").trouble(min_free_bytes=1) is None


def test_a_folder_with_less_room_than_asked_is_full(tmp_path: Path) -> None:
    # The real file system's free space, asked for more than any disk holds.
    said = BlobStore(tmp_path / "b").trouble(min_free_bytes=2**62)
    assert said is not None and said.startswith(f"{tmp_path / 'b'}: full ("), said


def test_trouble_names_the_missing_folder_and_writes_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "b")
    blobs.tmp_dir.rmdir()
    assert blobs.trouble(min_free_bytes=1) == f"{blobs.tmp_dir}: No such file or directory"
    assert not blobs.tmp_dir.exists()  # not made again: the check only looks
