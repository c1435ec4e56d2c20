"""What exports and ``audit verify`` read of the checkpoints: a gateway writes one a minute while it
has traffic (~1,440 a day), and each row is ~6 KB (note, PEM chain, RFC 3161 token).

An export needs only the checkpoints its bundle holds (the anchor, and the one each event first
appears in), read and parsed off the event loop; ``audit verify`` needs them all, but one page at a
time. Before, both read and parsed every checkpoint ever written first, the API on its event loop:
100,000 checkpoints took an export 4 s and the gateway from 124 MB to 1.1 GB, /healthz waiting 2 s.

Real stores (SQLite, and the PostgreSQL server at ``$LIENTHONG_TEST_POSTGRES``), the test PKI and
its TSA over HTTP.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import io
import json
import sqlite3
import threading
import uuid
import weakref
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import psycopg
import pytest

from gateway.audit import verify as verify_module
from gateway.audit.bundle import Scope, build_bundle
from gateway.audit.checkpoints import Checkpoint, Checkpointer
from gateway.audit.verify import verify_bundle, verify_log
from gateway.store import SQLiteStore, Store, open_store
from signing.testing import TestPKI
from tests.audit.test_api import AUDITOR, _Signing, serve_audit_app
from tests.audit.test_checkpoint_crash import POSTGRES_URL, _postgres_admin
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures

Tamper = Callable[..., None]  # run SQL (parameters as ?) on the store, around the gateway


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, pki: TestPKI, tsa_url: str
) -> AsyncIterator[tuple[Store, Tamper]]:
    """25 events (dossiers D0..D3 in turn) with a checkpoint every 3 and one at 25: 3, 6 … 24,
    25; and how to change the store around the gateway."""
    if request.param == "sqlite":
        path = tmp_path / "audit.db"

        def tamper(sql: str, *params: object) -> None:
            conn = sqlite3.connect(path)
            with conn:
                conn.execute(sql, params)
            conn.close()

        async with SQLiteStore(path) as store:
            await _checkpointed(store, pki, tsa_url)
            yield store, tamper
        return
    schema = f"t_{uuid.uuid4().hex}"
    _postgres_admin(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options={quote(f'-c search_path={schema}')}"
    try:

        def tamper(sql: str, *params: object) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.replace("?", "%s").encode(), params)

        async with open_store(url) as store:
            await _checkpointed(store, pki, tsa_url)
            yield store, tamper
    finally:
        _postgres_admin(f'DROP SCHEMA "{schema}" CASCADE')


async def _checkpointed(store: Any, pki: TestPKI, tsa_url: str) -> None:
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    for size in (*range(3, 25, 3), 25):
        await add_events(store, 1 if size == 25 else 3, first=size - (1 if size == 25 else 3))
        assert (await cpr.checkpoint_now()) is not None


def _manifest(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest: dict[str, Any] = json.loads(zf.read("manifest.json"))
    return manifest


async def test_an_export_reads_only_the_checkpoints_its_bundle_holds(
    backend: tuple[Store, Tamper], pki: TestPKI
) -> None:
    """D1's events are 1, 5, 9, 13, 17, 21: first in checkpoints 3, 6, 12, 15, 18 and 24, proven
    against 25. The others (9 and 21) are damaged — their chains no longer PEM — so that an
    export that reads and parses them fails: before, every export did (`unreadable checkpoint 9`),
    whatever its scope."""
    store, tamper = backend
    tamper("UPDATE audit_checkpoints SET signer_chain = 'damaged' WHERE size IN (9, 21)")
    data = await build_bundle(store, Scope(dossier="D1"))
    manifest = _manifest(data)
    assert manifest["events"] == [1, 5, 9, 13, 17, 21]
    assert manifest["checkpoints"] == [3, 6, 12, 15, 18, 24, 25] and manifest["anchor"] == 25
    report = await verify_bundle(data, [pki.root_pem], signers=[pki.certificate("gateway")])
    assert report.ok and report.checkpoints == 7, report.problems
    # Not even read: a row the store cannot hand over (SQLite: text that is not UTF-8).
    if isinstance(store, SQLiteStore):
        tamper("UPDATE audit_checkpoints SET note = CAST(x'ff' || note AS TEXT) WHERE size = 9")
        unreadable = (await verify_log(store, pki.trust(revocation="off"))).checked[2]
        assert unreadable["size"] == 9 and "the store cannot read it" in unreadable["problem"]
        again = await build_bundle(store, Scope(dossier="D1"))
        assert _manifest(again)["checkpoints"] == manifest["checkpoints"]
        assert (await verify_bundle(again, [pki.root_pem])).ok


async def test_an_export_over_the_api_parses_no_checkpoint_on_the_event_loop(
    tmp_path: Path, pki: TestPKI, tsa_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway answers every other request on its event loop meanwhile: parsing checkpoints
    there (their PEM chains) stalled them all, for seconds once there were many."""
    async with SQLiteStore(tmp_path / "api.db") as store:
        await _checkpointed(store, pki, tsa_url)
        loop_thread = threading.get_ident()
        parsed_on: list[int] = []
        from_row = Checkpoint.from_row.__func__  # type: ignore[attr-defined]

        def recording(cls: type[Checkpoint], row: Any) -> Checkpoint:
            parsed_on.append(threading.get_ident())
            result: Checkpoint = from_row(cls, row)
            return result

        monkeypatch.setattr(Checkpoint, "from_row", classmethod(recording))
        signing = _Signing(pki.trust(revocation="off"), pki.key("gateway"))
        async with serve_audit_app(store, {"signing": signing}) as url:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {AUDITOR}"}) as s:
                async with s.post(f"{url}/v1/audit/exports", json={"dossier": "D2"}) as r:
                    assert r.status == 200, await r.text()
                    data = await r.read()
                async with s.post(f"{url}/v1/audit/exports", json={"dossier": "none"}) as r:
                    assert r.status == 404
    assert _manifest(data)["checkpoints"] == [3, 9, 12, 15, 21, 24, 25]
    assert parsed_on and loop_thread not in parsed_on
    assert (await verify_bundle(data, [pki.root_pem])).ok


async def test_verify_holds_one_page_of_checkpoints_at_a_time(
    backend: tuple[Store, Tamper], pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit verify` reads the checkpoints a page at a time, in order, each checked against the
    one before it: at most a page's worth is held at once (9 checkpoints, pages of 2), where it
    loaded all of them first (1.7 GB for 100,000)."""
    store, _ = backend
    monkeypatch.setattr(verify_module, "_CHECKPOINT_PAGE", 2, raising=False)
    alive: weakref.WeakSet[Checkpoint] = weakref.WeakSet()
    most = [0]
    from_row = Checkpoint.from_row.__func__  # type: ignore[attr-defined]

    def tracked(cls: type[Checkpoint], row: Any) -> Checkpoint:
        cp: Checkpoint = from_row(cls, row)
        alive.add(cp)
        most[0] = max(most[0], len(alive))
        return cp

    monkeypatch.setattr(Checkpoint, "from_row", classmethod(tracked))
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.covered) == (25, 9, 25)
    assert [c["size"] for c in report.checked] == [*range(3, 25, 3), 25]
    assert 0 < most[0] <= 2 * 2  # the page checked, and the next one read meanwhile
    # Without --json, nothing is kept of each checkpoint: the same verdict, in no memory.
    lean = await verify_log(store, pki.trust(revocation="off"), keep_checked=False)
    assert lean.ok and lean.checked == [], lean.problems
    assert (lean.entries, lean.checkpoints, lean.covered) == (25, 9, 25)


async def test_verify_judges_no_checkpoint_written_while_it_runs(
    backend: tuple[Store, Tamper], pki: TestPKI, tsa_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit verify` of a running gateway's store: a checkpoint written after the entries were
    read covers entries the verifier has not seen; it is left to the next run, not taken for a
    truncated log."""
    store, _ = backend
    stored_beyond = verify_module._stored_beyond

    async def meanwhile(store_: Store, size: int) -> Any:
        found = await stored_beyond(store_, size)
        await add_events(store, 2, first=25)  # type: ignore[arg-type]
        cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
        assert (await cpr.checkpoint_now()) is not None  # 27
        return found

    monkeypatch.setattr(verify_module, "_stored_beyond", meanwhile)
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.covered) == (25, 9, 25)


async def test_verify_of_a_log_appended_to_meanwhile_passes(
    backend: tuple[Store, Tamper], pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry appended after the verifier read the log's last page, before it looked for rows
    stored past it: that is the log growing, not a row out of sequence (it said `entry 25:
    missing: in its place is seq 25 (inserted or reordered)` of a busy gateway's store)."""
    store, _ = backend
    stored_beyond = verify_module._stored_beyond

    async def appended_first(store_: Store, size: int) -> Any:
        await add_events(store, 2, first=25)  # type: ignore[arg-type]
        return await stored_beyond(store_, size)

    monkeypatch.setattr(verify_module, "_stored_beyond", appended_first)
    report = await verify_log(store, pki.trust(revocation="off"))
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.covered) == (25, 9, 25)
