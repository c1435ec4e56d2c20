"""One store, one blob folder: gateways sharing a store (PostgreSQL: any number of them) must
share its blob folder, or each answers 500 for the documents the others took. A gateway starts
only on its store's folder — marked on first use, adopted where an earlier version left one — and
refuses any other in one line, on either store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.exchange.blobs import MARK_FILE, BlobStore, bind_to_store
from gateway.exchange.errors import BlobError
from gateway.exchange.hub import DocumentHub
from gateway.store import SQLiteStore, Store
from tests.exchange.test_document_ids import _receive, hub, package  # noqa: F401 - fixtures


async def _refused(blobs: BlobStore, store: Store) -> str:
    with pytest.raises(BlobError) as refused:
        await bind_to_store(blobs, store)
    detail = str(refused.value)
    assert detail.startswith(f"[documents] blob_dir {blobs.root} is not this store's blob folder")
    assert "every gateway on one store must share one blob_dir" in detail
    return detail


async def test_a_second_folder_on_a_fresh_store_is_refused(
    hub: DocumentHub,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    await bind_to_store(hub.blobs, hub.store)  # the first gateway: both marked
    await bind_to_store(hub.blobs, hub.store)  # its restart, or another sharing its folder
    assert hub.blobs.mark() is not None
    other = BlobStore(tmp_path / "other-blobs")
    assert f"it has no {MARK_FILE}" in await _refused(other, hub.store)
    assert other.mark() is None  # left as it was


async def test_an_earlier_versions_folder_is_adopted_and_another_refused(
    hub: DocumentHub,  # noqa: F811 - the fixture
    package: Callable[..., bytes],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    # Documents taken before stores and folders were marked, into the hub's folder only.
    await _receive(hub, package())
    await _receive(hub, package(number="1502"))
    other = BlobStore(tmp_path / "other-blobs")
    assert "it lacks the package of the store's document" in await _refused(other, hub.store)
    await bind_to_store(hub.blobs, hub.store)  # it holds the store's documents: adopted
    assert hub.blobs.mark() is not None
    assert "it lacks the package of the store's document" in await _refused(other, hub.store)
    await _receive(hub, package(number="1503"))  # and the adopted folder serves on


async def test_a_folder_of_another_store_is_refused(
    hub: DocumentHub,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    await bind_to_store(hub.blobs, hub.store)
    theirs = BlobStore(tmp_path / "their-blobs")
    async with SQLiteStore(tmp_path / "theirs.db") as another:
        await bind_to_store(theirs, another)
        assert "names another store" in await _refused(hub.blobs, another)
    assert "names another store" in await _refused(theirs, hub.store)


async def test_gateways_starting_at_once_share_a_folder_and_refuse_two(
    hub: DocumentHub,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    shared = [BlobStore(hub.blobs.root) for _ in range(3)]
    await asyncio.gather(*(bind_to_store(b, hub.store) for b in shared))
    apart = [BlobStore(tmp_path / f"apart-{i}") for i in range(2)]
    outcomes = await asyncio.gather(
        *(bind_to_store(b, hub.store) for b in apart), return_exceptions=True
    )
    assert all(isinstance(o, BlobError) for o in outcomes), outcomes


@pytest.mark.parametrize("marked", [False, True], ids=["earlier-version", "marked"])
async def test_a_folder_holding_blobs_is_not_a_fresh_stores(
    hub: DocumentHub,  # noqa: F811 - the fixture
    tmp_path: Path,
    marked: bool,
) -> None:
    # Another store's folder, given to a new, empty store: its sweep would delete the other
    # store's blobs, which it names none of.
    if marked:
        async with SQLiteStore(tmp_path / "theirs.db") as another:
            await bind_to_store(hub.blobs, another)
    hub.blobs.put(b"a package of another store")
    assert ("whose blobs it holds" if marked else "it holds blobs") in await _refused(
        hub.blobs, hub.store
    )


async def test_an_empty_folder_marked_for_no_store_is_taken(
    hub: DocumentHub,  # noqa: F811 - the fixture
) -> None:
    # A first start that stopped between marking the folder and marking the store.
    hub.blobs.take_mark("f" * 32)
    await bind_to_store(hub.blobs, hub.store)
    await bind_to_store(hub.blobs, hub.store)
    assert hub.blobs.mark() == "f" * 32


def test_serve_refuses_a_blob_folder_that_is_not_its_stores(
    hub: DocumentHub,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    asyncio.run(bind_to_store(hub.blobs, hub.store))  # the first gateway on this store
    store = hub.store
    url = getattr(store, "url", None) or f"sqlite:///{store.path}"  # type: ignore[attr-defined]
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
[store]
url = "{url}"
[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "token-0123456789"
rights = ["lookups.citizen"]
[documents]
blob_dir = "own-blobs"
[sandbox]
embedded = true
""",
        "utf-8",
    )
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [
        f"Error: cannot start: [documents] blob_dir {tmp_path / 'own-blobs'} is not this "
        f"store's blob folder: it has no {MARK_FILE}, and the store's folder is marked "
        f"{hub.blobs.mark()} (every gateway on one store must share one blob_dir)"
    ], result.stderr
