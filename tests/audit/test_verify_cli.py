"""``lienthong audit …`` through click's runner, on a real store, key and TSA."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.audit import AuditEvent, append, citizen_hash
from gateway.audit import bundle as bundle_module
from gateway.audit.bundle import Scope, build_bundle
from gateway.audit.checkpoints import Checkpointer, key_fingerprint
from gateway.audit.cli import audit
from gateway.store import SQLiteStore
from signing import files
from signing.testing import TestPKI
from tests.audit.test_api import LETTER, file_letter
from tests.audit.test_checkpoints import add_events, pki, tsa_url  # noqa: F401 - fixtures

KEY = "00112233445566778899aabbccddeeff"


def _gateway_config(folder: Path, pki: TestPKI, audit: str = "") -> Path:
    """A gateway's lienthong.toml beside its store ``gw.db`` in ``folder``: the gateway's
    certificate, the test root as the only anchor, and ``audit`` (a section) after them."""
    cfg = folder / "lienthong.toml"
    cfg.write_text(
        '[store]\nurl = "sqlite:///gw.db"\n'
        f'[signing]\ncert = "{pki.cert_path("gateway")}"\ntrust = ["{pki.root_pem}"]\n'
        'revocation = "off"\n' + audit
    )
    return cfg


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
    cfg = _gateway_config(tmp_path, pki, f'[audit]\ncitizen_id_key = "{KEY}"\n')
    return cfg


def _tamper(config: Path, statement: str) -> None:
    """An edit of the gateway's store behind its back, as a forger (or a bad disk) would."""
    conn = sqlite3.connect(config.parent / "gw.db")
    with conn:
        conn.execute(statement)
    conn.close()


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
    _tamper(config, "DELETE FROM audit_events WHERE seq = 12")
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
    assert code == 2 and "the window is empty" in out
    monkeypatch.delenv("LIENTHONG_AUDIT_CITIZEN")
    code, out = await _invoke("query", "--config", str(config), "--citizen", "", "--json")
    assert code == 2 and "Invalid value for '--citizen': is empty" in out, out
    monkeypatch.setenv("LIENTHONG_AUDIT_CITIZEN", "00109901234")  # a digit dropped
    code, out = await _invoke("query", "--config", str(config), "--json")
    assert (code, out.strip()) == (1, "Error: personal id: must be exactly 12 digits"), out


async def test_query_pages_on_with_the_cursor_it_prints(config: Path) -> None:
    # The output offered a "next" cursor but no option took it: past --limit nothing was reachable.
    base = ["query", "--config", str(config), "--limit", "5"]
    seen: list[int] = []
    cursor: list[str] = []
    for _ in range(5):
        code, out = await _invoke(*base, *cursor, "--json")
        page = json.loads(out)
        assert code == 0, out
        seen += [e["seq"] for e in page["items"]]
        if not page["next"]:
            break
        cursor = ["--cursor", page["next"]]
    assert seen == list(range(13))
    code, out = await _invoke(*base)
    hint = out.splitlines()[-1]
    assert code == 0 and "--cursor " in hint, out
    code, out = await _invoke(*base, "--cursor", hint.split("--cursor ")[1].rstrip(")"))
    assert code == 0 and out.splitlines()[0].split()[0] == "5", out
    code, out = await _invoke(*base, "--cursor", "!!")
    assert code == 2 and "Invalid value for '--cursor': malformed cursor" in out, out


async def test_a_letter_is_queried_and_exported_by_its_documentid(
    config: Path, pki: TestPKI, tsa_url: str, tmp_path: Path
) -> None:
    # Found in review: the API and console took a letter's DocumentId, the CLI only the hub's id
    # (the DocumentId found "no event matches" and nothing to export).
    hub_id = "d" + "7" * 32
    async with SQLiteStore(config.parent / "gw.db") as store:
        await store.transact(lambda tx: file_letter(tx, hub_id))
        assert await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    for document in (hub_id, LETTER, "000.00.11.H53,07/12/2026,2491/STC-BCTC"):
        code, out = await _invoke("query", "--config", str(config), "--document", document,
                                  "--json")  # fmt: skip
        items = json.loads(out)["items"]
        assert code == 0 and [e["action"] for e in items] == [
            "document.accepted",
            "document.delivered",
        ], document
        assert {e["document"] for e in items} == {hub_id}
    bundle = tmp_path / "letter.zip"
    code, out = await _invoke("export", "--config", str(config), "--document", LETTER, str(bundle))
    assert code == 0, out
    signer = str(pki.cert_path("gateway"))
    code, out = await _invoke("verify-bundle", str(bundle), "--trust", str(pki.root_pem),
                              "--signer", signer, "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["events"] == 2, out
    unknown = "000.00.11.H53,2026/12/08,2491/STC-BCTC"
    code, out = await _invoke("query", "--config", str(config), "--document", unknown)
    assert (code, out.strip()) == (0, "no event matches")


async def test_query_says_when_nothing_matches(config: Path) -> None:
    code, out = await _invoke("query", "--config", str(config), "--dossier", "NOPE")
    assert (code, out.strip()) == (0, "no event matches")


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
    signer = str(pki.cert_path("gateway"))
    code, out = await _invoke(
        "verify-bundle", str(out_zip), "--trust", str(pki.root_pem), "--signer", signer
    )
    assert code == 0 and "bundle verified: 3 events in checkpoint 13" in out, out
    assert f"signed by gateway [key sha256:{_fp(pki, 'gateway')[:16]}] and timestamped" in out
    other = TestPKI.create(tmp_path / "other")
    code, out = await _invoke(
        "verify-bundle", str(out_zip), "--trust", str(other.root_pem), "--signer", signer
    )
    assert code == 1 and out.startswith("bundle FAILED") and "Error: checkpoint 13" in out


def _contents(bundle: bytes) -> dict[str, Any]:
    """A bundle's files by name, its manifest without ``created_at``: two builds of one scope
    differ only in that and in the zip's file times when a second turns between them."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        files: dict[str, Any] = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(files["manifest.json"])
    manifest.pop("created_at")
    files["manifest.json"] = manifest
    return files


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


class _FullDisk:
    """A file on a disk that fills up halfway through the bundle: half written, then ENOSPC."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def write(self, data: bytes) -> int:
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_an_export_cut_short_leaves_nothing_behind(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk full (or a kill) mid-write once left a cut-off bundle under the bundle's name, which
    the next export refused to write over and an auditor could take for a whole one."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out_zip = out_dir / "D1.zip"
    real = files.open_private  # the export's part is opened by signing.files
    monkeypatch.setattr(files, "open_private", lambda *a, **kw: _FullDisk(real(*a, **kw)))
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert (code, out.strip()) == (1, f"Error: cannot write {out_zip}: No space left on device")
    assert _listing(out_dir) == []  # neither the bundle nor the file it was written to
    monkeypatch.setattr(files, "open_private", real)
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0, out
    async with SQLiteStore(config.parent / "gw.db") as store:
        assert _contents(out_zip.read_bytes()) == _contents(
            await build_bundle(store, Scope(dossier="D1"))
        )
    assert _listing(out_dir) == ["D1.zip"]
    assert out_zip.stat().st_mode & 0o777 == 0o600


async def test_an_export_to_a_disk_without_hard_links(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAT-formatted USB stick (an auditor's) has no hard links: the bundle is written all the
    same, whole, and still never over a file."""

    def no_links(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    out_dir = tmp_path / "usb"
    out_dir.mkdir()
    out_zip = out_dir / "D1.zip"
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0, out
    async with SQLiteStore(config.parent / "gw.db") as store:
        assert _contents(out_zip.read_bytes()) == _contents(
            await build_bundle(store, Scope(dossier="D1"))
        )
    assert _listing(out_dir) == ["D1.zip"]
    assert out_zip.stat().st_mode & 0o777 == 0o600
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert (code, out.strip()) == (
        1,
        f"Error: {out_zip} exists: a bundle is never written over a file",
    )
    assert _listing(out_dir) == ["D1.zip"]


async def test_a_file_made_during_the_export_is_not_written_over(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target is checked when the bundle is put in place, not only before it is built."""
    out_zip = tmp_path / "D1.zip"
    built = bundle_module.build_bundle

    async def meanwhile(*args: Any, **kw: Any) -> bytes:
        data = await built(*args, **kw)
        out_zip.write_bytes(b"someone else's")
        return data

    monkeypatch.setattr(bundle_module, "build_bundle", meanwhile)
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert (code, out.strip()) == (
        1,
        f"Error: {out_zip} exists: a bundle is never written over a file",
    )
    assert out_zip.read_bytes() == b"someone else's"
    assert [n for n in _listing(tmp_path) if "D1" in n] == ["D1.zip"]


def _fp(pki: TestPKI, subject: str) -> str:
    return key_fingerprint(pki.certificate(subject))


async def test_verify_bundle_without_signer_names_the_signer_and_fails(
    config: Path, pki: TestPKI, tmp_path: Path
) -> None:
    """The anchors alone admit any certificate issued under them: without --signer the bundle is
    checked, its signer named, and the command fails saying the signer was not pinned."""
    out_zip = tmp_path / "D1.zip"
    assert (await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip)))[
        0
    ] == 0
    code, out = await _invoke("verify-bundle", str(out_zip), "--trust", str(pki.root_pem))
    assert code == 1, out
    assert "(not pinned)" in out and "note: signer not pinned" in out
    assert out.splitlines()[-1] == (
        "Error: the checkpoint signer is not pinned: the checkpoints are signed by gateway "
        f"[key sha256:{_fp(pki, 'gateway')}]; if that is the gateway's audit key, give its "
        "certificate with --signer"
    )
    code, out = await _invoke("verify-bundle", str(out_zip), "--trust", str(pki.root_pem), "--json")
    doc = json.loads(out[: out.rindex("}") + 1])
    assert code == 1 and doc["ok"] and not doc["signer_pinned"]
    assert doc["signers"] == [
        {"name": "gateway", "key_sha256": _fp(pki, "gateway"), "origin": "lienthong.local/audit"}
    ]


@pytest.fixture
async def forged(tmp_path: Path, pki: TestPKI, tsa_url: str) -> Path:
    """A made-up log, checkpointed by an agency's key: its certificate chains to the same root
    with a signing usage, and the TSA timestamps anything. Config as the gateway's."""
    folder = tmp_path / "forged"
    folder.mkdir()
    async with SQLiteStore(folder / "gw.db") as store:
        await add_events(store, 12)
        agency = pki.key("agency-000.00.11.H53")
        assert await Checkpointer(store, agency, tsa_url=tsa_url).checkpoint_now()
    return _gateway_config(folder, pki)


async def test_a_log_signed_by_another_anchored_key_is_refused(
    forged: Path, pki: TestPKI, tmp_path: Path
) -> None:
    code, out = await _invoke("verify", "--config", str(forged))
    assert code == 1, out
    assert out.splitlines()[-1] == (
        "Error: checkpoint 12: signed by agency-000.00.11.H53 "
        f"[key sha256:{_fp(pki, 'agency-000.00.11.H53')[:16]}], not by the audit signer "
        f"(gateway [key sha256:{_fp(pki, 'gateway')[:16]}])"
    )
    # Its bundle, checked offline against the gateway's published certificate: refused too.
    bundle = tmp_path / "forged.zip"
    code, out = await _invoke("export", "--config", str(forged), "--dossier", "D1", str(bundle))
    assert code == 0, out
    args = ["verify-bundle", str(bundle), "--trust", str(pki.root_pem)]
    code, out = await _invoke(*args, "--signer", str(pki.cert_path("gateway")))
    assert code == 1 and out.startswith("bundle FAILED: checkpoint 12: signed by agency"), out
    assert "not by the audit signer (gateway" in out
    # Without --signer it is not called verified either, and the forger is named.
    code, out = await _invoke(*args)
    assert code == 1 and "signed by agency-000.00.11.H53" in out.splitlines()[-1], out
    # --signer replaces the configured key (an auditor names the key they were given).
    code, out = await _invoke(
        "verify", "--config", str(forged), "--signer", str(pki.cert_path("agency-000.00.11.H53"))
    )
    assert code == 0 and "signed by agency-000.00.11.H53" in out, out


async def test_a_log_under_another_origin_is_refused(
    config: Path, pki: TestPKI, tsa_url: str
) -> None:
    async with SQLiteStore(config.parent / "gw.db") as store:
        await add_events(store, 2, first=13)
        cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url, origin="other/log")
        assert await cpr.checkpoint_now()
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 1, out
    assert out.splitlines()[-1] == (
        "Error: checkpoint 15: origin 'other/log' is not the log's ('lienthong.local/audit')"
    )


async def test_no_configured_key_means_no_pin(config: Path, pki: TestPKI, tmp_path: Path) -> None:
    """An auditor's config without the gateway's key or certificate: the log is checked, its
    signer named, and the command fails until --signer names the expected one."""
    bare = tmp_path / "bare.toml"
    bare.write_text(
        '[store]\nurl = "sqlite:///gw.db"\n'
        f'[signing]\ntrust = ["{pki.root_pem}"]\nrevocation = "off"\n'
        "[sandbox]\nembedded = false\n"
    )
    code, out = await _invoke("verify", "--config", str(bare))
    assert code == 1 and "Error: the checkpoint signer is not pinned" in out, out
    assert "signed by gateway" in out
    code, out = await _invoke("verify", "--config", str(bare), "--json")
    doc = json.loads(out[: out.rindex("}") + 1])
    assert code == 1 and doc["ok"] and not doc["signer_pinned"]
    code, out = await _invoke(
        "verify", "--config", str(bare), "--signer", str(pki.cert_path("gateway"))
    )
    assert code == 0 and "intact: 13 entries" in out, out


async def test_one_line_errors(config: Path, tmp_path: Path) -> None:
    code, out = await _invoke("export", "--config", str(config), "--dossier", "NONE", "x.zip")
    assert code == 1 and out.strip() == "Error: no audit events for {'dossier': 'NONE'}"
    code, out = await _invoke("export", "--config", str(config), str(tmp_path / "y.zip"))
    assert code == 2 and "give exactly one scope" in out
    missing = tmp_path / "nostore.toml"
    missing.write_text('[store]\nurl = "sqlite:///typo.db"\n')
    code, out = await _invoke("verify", "--config", str(missing))
    assert code == 1 and "no store at" in out and not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    "section",
    [
        '[signing]\nkey = "{pki}/gateway.key.pem"\n',  # the certificate beside the key
        '[signing]\nkey = "{pki}/gateway.p12"\n',  # the certificate in the PKCS#12 file
        '[sandbox]\npki = "{pki}"\n',  # the development PKI's gateway, when it exists
    ],
    ids=["pem-key", "p12", "dev-pki"],
)
async def test_the_configured_key_pins_the_signer(
    config: Path, pki: TestPKI, tmp_path: Path, section: str
) -> None:
    cfg = tmp_path / "other.toml"
    cfg.write_text('[store]\nurl = "sqlite:///gw.db"\n' + section.format(pki=pki.directory))
    code, out = await _invoke("verify", "--config", str(cfg), "--trust", str(pki.root_pem))
    assert code == 0 and "signed by gateway" in out and "not pinned" not in out, out


@pytest.fixture
async def old_log(tmp_path: Path, pki: TestPKI, tsa_url: str) -> Path:
    """Six events logged two hours ago, then checkpointed: a gateway's store as an auditor gets
    it. Config as the gateway's: a checkpoint every 500 entries or 5 s."""
    folder = tmp_path / "old"
    folder.mkdir()
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    async with SQLiteStore(folder / "gw.db") as store:
        for i in range(6):
            await store.transact(
                lambda tx, i=i: append(
                    tx, AuditEvent(action="dossier.accepted", dossier=f"D{i}"), at=at
                )
            )
        assert await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    return _gateway_config(
        folder, pki, "[audit]\ncheckpoint_every = 500\ncheckpoint_interval_s = 5\n"
    )


async def test_a_log_no_signed_checkpoint_vouches_for_is_not_intact(old_log: Path) -> None:
    """Its checkpoint deleted (or the whole log rewritten, every hash recomputed, and the
    checkpoints deleted): the chain is perfect, but nothing signed vouches for it."""
    code, out = await _invoke("verify", "--config", str(old_log))
    assert code == 0 and "intact: 6 entries, 1 checkpoints verified" in out, out
    assert "covered by no signed checkpoint" not in out
    _tamper(old_log, "DELETE FROM audit_checkpoints")
    code, out = await _invoke("verify", "--config", str(old_log))
    assert code == 1, out
    error = out.splitlines()[-1]
    assert error.startswith(
        "Error: entries 0..5 are covered by no signed checkpoint: one was due by "
    ), out
    assert "(the gateway signs one every 500 entries or 5 s, 60 s of grace) and it is now " in error
    code, out = await _invoke("verify", "--config", str(old_log), "--json")
    doc = json.loads(out[: out.rindex("}") + 1])
    assert code == 1 and not doc["ok"] and doc["uncovered"] == [0, 5] and doc["covered"] == 0


async def test_a_fresh_log_before_its_first_checkpoint_verifies(config: Path) -> None:
    _tamper(config, "DELETE FROM audit_checkpoints")
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 0, out
    assert out.splitlines()[0].startswith(
        "audit log intact: 13 entries, 0 checkpoints verified; entries 0..12 are covered by no "
        "signed checkpoint yet (one is due by "
    ), out


async def test_an_unparsable_timestamp_is_told_in_one_line(config: Path) -> None:
    _tamper(config, "UPDATE audit_checkpoints SET timestamp = x'3000'")
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 1, out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["audit log FAILED", "Error"], out
    assert lines[1].startswith("Error: checkpoint 13: timestamp: malformed timestamp token: ")


async def test_a_bundle_file_too_large_is_refused_unread(tmp_path: Path, pki: TestPKI) -> None:
    huge = tmp_path / "huge.zip"
    with huge.open("wb") as f:  # sparse: nothing is written to disk
        f.truncate(600 * 2**20)
    code, out = await _invoke("verify-bundle", str(huge), "--trust", str(pki.root_pem))
    assert code == 1 and out.splitlines() == [
        f"Error: {huge}: refused unread: {600 * 2**20} bytes; a bundle is at most 536870912 "
        "once decompressed"
    ], out


def _lienthong(*args: str) -> tuple[int, str]:
    """The root command, as a shell runs it: usage errors are told in its one-line form."""
    from gateway.cli import main

    result = CliRunner().invoke(main, list(args), prog_name="lienthong")
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "give exactly one scope: --dossier, --document, or --from and --to"),
        (
            ["--dossier", "D1", "--document", "DOC1"],
            "give exactly one scope: --dossier, --document, or --from and --to (given: "
            "--dossier, --document)",
        ),
        (["--from", "2026-01-01"], "--from needs --to: a time range has both ends"),
        (["--to", "2026-01-01"], "--to needs --from: a time range has both ends"),
        (
            ["--from", "yesterday", "--to", "2026-01-01"],
            "Invalid value for '--from': not an ISO 8601 time: 'yesterday'",
        ),
        (
            ["--from", "2026-01-01", "--to", "2026-01-02T00:00"],
            "Invalid value for '--to': time '2026-01-02T00:00' needs a time zone (e.g. +07:00 "
            "or Z)",
        ),
        (
            ["--dossier", ""],
            "Invalid value for '--dossier': is empty: a filter must name something (leave the "
            "option out to match all)",
        ),
        (  # it matched nothing: "no audit events", as if the log held none
            ["--from", "2026-12-08", "--to", "2026-12-07T23:00:00+07:00"],
            "the window is empty: --from 2026-12-07T17:00:00.000000+00:00 is not before --to "
            "2026-12-07T16:00:00.000000+00:00",
        ),
    ],
    ids=[
        "no-scope",
        "two-scopes",
        "from-alone",
        "to-alone",
        "from-yesterday",
        "no-zone",
        "empty",
        "backwards",
    ],
)
def test_export_usage_errors_are_exit_2_naming_the_option(
    config: Path, tmp_path: Path, args: list[str], reason: str
) -> None:
    out_zip = tmp_path / "x.zip"
    code, out = _lienthong("audit", "export", "--config", str(config), *args, str(out_zip))
    assert (code, out.splitlines()) == (
        2,
        [
            f"Error: lienthong audit export: {reason} (see 'lienthong audit export --help')",
        ],
    )
    assert not out_zip.exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--from", "yesterday"], "Invalid value for '--from': not an ISO 8601 time: 'yesterday'"),
        (["--to", "soon"], "Invalid value for '--to': not an ISO 8601 time: 'soon'"),
        *(
            (
                [option, ""],
                f"Invalid value for '{option}': is empty: a filter must name "
                "something (leave the option out to match all)",
            )
            for option in (
                "--dossier",
                "--document",
                "--member",
                "--service",
                "--from",
                "--citizen",
            )
        ),
        (
            ["--from", "2026-12-08", "--to", "2026-12-08"],
            "the window is empty: --from 2026-12-07T17:00:00.000000+00:00 is not before --to "
            "2026-12-07T17:00:00.000000+00:00",
        ),
    ],
    ids=[
        "from-yesterday",
        "to-soon",
        "dossier",
        "document",
        "member",
        "service",
        "from-empty",
        "citizen-empty",
        "backwards",
    ],
)
def test_query_usage_errors_are_exit_2_naming_the_option(
    config: Path, args: list[str], reason: str
) -> None:
    code, out = _lienthong("audit", "query", "--config", str(config), *args)
    assert (code, out.splitlines()) == (
        2,
        [f"Error: lienthong audit query: {reason} (see 'lienthong audit query --help')"],
    )


def test_an_empty_citizen_variable_matches_no_one(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Click takes an empty variable for an unset one: the search would answer with every
    event."""
    monkeypatch.setenv("LIENTHONG_AUDIT_CITIZEN", "")
    code, out = _lienthong("audit", "query", "--config", str(config), "--json")
    assert (code, out.strip()) == (
        2,
        "Error: lienthong audit query: Invalid value for '--citizen': is empty: a filter must "
        "name something (leave the option out to match all) (see 'lienthong audit query --help')",
    )


async def test_a_swapped_timestamp_is_told_in_one_line_by_the_installed_command(
    config: Path, pki: TestPKI, tsa_url: str
) -> None:
    """Found by probing: pyHanko logs a warning of its own for a token over other data; the
    command configures no logging, so Python printed it to stderr, a line per checkpoint, before
    the error. Run as a shell runs it (pytest's log capture would hide it in-process)."""
    async with SQLiteStore(config.parent / "gw.db") as store:
        await add_events(store, 2, first=13)
        assert await Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    _tamper(
        config,
        "UPDATE audit_checkpoints SET timestamp = (SELECT timestamp FROM audit_checkpoints "
        "WHERE size = 15) WHERE size = 13",
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).with_name("lienthong")),
            "audit",
            "verify",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        "Error: checkpoint 13: timestamp: timestamp imprint does not match the signed data"
    ], done.stderr


async def test_a_checkpoint_the_store_cannot_read_is_named_in_one_line(config: Path) -> None:
    """A checkpoint's note edited into text that is not UTF-8: the store cannot hand the row
    over. `audit verify` stopped with `Error: store: checkpoints.all: Could not decode …` and
    the raw note over six lines (its signature bytes too), naming no checkpoint; it now names
    the checkpoint, in one line, as it names an entry the store cannot read. (SQLite alone: a
    PostgreSQL column holds no such text.)"""
    _tamper(config, "UPDATE audit_checkpoints SET note = x'ff' || note")
    code, out = await _invoke("verify", "--config", str(config))
    assert code == 1
    unreadable = "checkpoint 13: the store cannot read it (Could not decode to UTF-8 column 'note')"
    assert out.splitlines() == [f"audit log FAILED: {unreadable}", f"Error: {unreadable}"], out
    code, out = await _invoke("verify", "--config", str(config), "--json")
    report, error = out.split("\nError: ")
    doc = json.loads(report)
    assert code == 1 and doc["problems"] == [unreadable] and doc["first_bad_checkpoint"] == 13
    assert error == f"{unreadable}\n"
