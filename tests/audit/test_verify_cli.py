"""``lienthong audit …`` through click's runner, on a real store, key and TSA."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit import AuditEvent, append, citizen_hash
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.cli import audit
from gateway.store import SQLiteStore
from signing.testing import TestPKI
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures

KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture
async def config(tmp_path: Path, pki: TestPKI, tsa_url: str) -> Path:
    async with SQLiteStore(tmp_path / "gw.db") as store:
        await add_events(store, 12)
        who = citizen_hash(bytes.fromhex(KEY), "001099012345")
        await store.transact(
            lambda tx: append(
                tx,
                AuditEvent(
                    action="lookup.citizen",
                    member="VN:GOV:M7",
                    service="lookups.citizen",
                    citizen=who,
                ),
            )
        )
        assert await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    cfg = tmp_path / "lienthong.toml"
    cfg.write_text(
        '[store]\nurl = "sqlite:///gw.db"\n'
        f'[signing]\ntrust = ["{pki.root_pem}"]\nrevocation = "off"\n'
        f'[audit]\ncitizen_id_key = "{KEY}"\n'
    )
    return cfg


async def _invoke(*args: str) -> tuple[int, str]:
    # The CLI runs its own event loop (asyncio.run): give it a thread of its own.
    def run() -> tuple[int, str]:
        result = CliRunner().invoke(audit, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return await asyncio.to_thread(run)


async def test_verify_ok_then_tampered(config: Path) -> None:
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 0 and "intact: 13 entries, 1 checkpoints" in out, out
    code, out = await _invoke("verify", "--config", str(config), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["trust_checked"] and doc["checked"][0]["tsa"]
    conn = sqlite3.connect(config.parent / "gw.db")
    with conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 12")
    conn.close()
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 1
    assert "Error: checkpoint 13: covers 13 entries but the log has 12" in out


async def test_query_filters_and_citizen(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = await _invoke("query", "--config", str(config), "--dossier", "D1", "--json")
    assert code == 0 and [e["seq"] for e in json.loads(out)["items"]] == [1, 5, 9]
    monkeypatch.setenv("LIENTHONG_AUDIT_CITIZEN", "001099012345")
    code, out = await _invoke("query", "--config", str(config), "--json")
    items = json.loads(out)["items"]
    assert code == 0 and [e["seq"] for e in items] == [12]
    assert "001099012345" not in out  # the id is never echoed back
    code, out = await _invoke("query", "--config", str(config), "--from", "2026-01-01T00:00:00")
    assert code == 2 and "time zone" in out
    code, out = await _invoke(
        "query", "--config", str(config), "--from", "2026-02-01", "--to", "2026-01-01"
    )
    assert code == 1 and "the window is empty" in out
    monkeypatch.delenv("LIENTHONG_AUDIT_CITIZEN")
    code, out = await _invoke("query", "--config", str(config), "--citizen", "", "--json")
    assert code == 1 and out.strip() == "Error: the personal id to search for is empty"


async def test_export_and_verify_bundle(config: Path, pki: TestPKI, tmp_path: Path) -> None:
    out_zip = tmp_path / "D1.zip"
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0 and out_zip.exists(), out
    written = out_zip.read_bytes()
    store = tmp_path / "gw.db"
    for existing in (out_zip, store):  # never written over: an earlier bundle, the store itself
        before = existing.read_bytes()
        code, out = await _invoke(
            "export", "--config", str(config), "--dossier", "D1", str(existing)
        )
        assert (
            code == 1
            and out.strip() == f"Error: {existing} exists: a bundle is never written over a file"
        )
        assert existing.read_bytes() == before
    assert out_zip.read_bytes() == written
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 0, out
    code, out = await _invoke("verify-bundle", str(out_zip), "--trust", str(pki.root_pem))
    assert code == 0 and "bundle verified: 3 events in checkpoint 13" in out, out
    other = TestPKI.create(tmp_path / "other")
    code, out = await _invoke("verify-bundle", str(out_zip), "--trust", str(other.root_pem))
    assert code == 1 and out.startswith("bundle FAILED") and "Error: checkpoint 13" in out


async def test_one_line_errors(config: Path, tmp_path: Path) -> None:
    code, out = await _invoke("export", "--config", str(config), "--dossier", "NONE", "x.zip")
    assert code == 1 and out.strip() == "Error: no audit events for {'dossier': 'NONE'}"
    code, out = await _invoke("export", "--config", str(config), str(tmp_path / "y.zip"))
    assert code == 1 and "exactly one of" in out
    missing = tmp_path / "nostore.toml"
    missing.write_text('[store]\nurl = "sqlite:///typo.db"\n')
    code, out = await _invoke("verify", "--config", str(missing))
    assert code == 1 and "no store at" in out and not (tmp_path / "typo.db").exists()
