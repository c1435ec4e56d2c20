"""The store holds personal data (applicants' ids, names, phone numbers): the SQLite file a gateway
or a demo creates, and its -wal and -shm (which SQLite gives the store file's mode), are readable
by their owner alone, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import SQLiteStore


@pytest.fixture
def debian_umask() -> Iterator[None]:
    """The umask most accounts have (022): files readable by every local user unless made so."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("debian_umask")
async def test_a_new_store_and_its_wal_files_are_the_owners_alone(tmp_path: Path) -> None:
    db = tmp_path / "lienthong.db"
    async with SQLiteStore(db) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
        files = [db, db.with_name("lienthong.db-wal"), db.with_name("lienthong.db-shm")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


@pytest.mark.usefixtures("debian_umask")
async def test_an_existing_stores_mode_is_left_as_its_owner_set_it(tmp_path: Path) -> None:
    db = tmp_path / "lienthong.db"
    db.touch(mode=0o640)  # an operator's choice (a backup group may read it)
    db.chmod(0o640)
    async with SQLiteStore(db) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    assert _mode(db) == 0o640
