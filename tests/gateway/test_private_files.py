"""The store holds personal data (applicants' ids, names, phone numbers): the SQLite file a gateway
or a demo creates, and its -wal and -shm (which SQLite gives the store file's mode), are readable
by their owner alone, whatever the umask."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store import SQLiteStore
from tests.conftest import file_mode


@pytest.mark.usefixtures("debian_umask")
async def test_a_new_store_and_its_wal_files_are_the_owners_alone(tmp_path: Path) -> None:
    db = tmp_path / "lienthong.db"
    async with SQLiteStore(db) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
        files = [db, db.with_name("lienthong.db-wal"), db.with_name("lienthong.db-shm")]
        assert {f.name: file_mode(f) for f in files} == {f.name: 0o600 for f in files}


@pytest.mark.usefixtures("debian_umask")
async def test_an_existing_stores_mode_is_left_as_its_owner_set_it(tmp_path: Path) -> None:
    db = tmp_path / "lienthong.db"
    db.touch(mode=0o640)  # an operator's choice (a backup group may read it)
    db.chmod(0o640)
    async with SQLiteStore(db) as store:
        await store.transact(lambda tx: tx.execute("kv.put", k="a", v="1"))
    assert file_mode(db) == 0o640
