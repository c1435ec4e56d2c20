"""Evidence bundles: built from the real store, checked offline by verify_bundle and by openssl."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.audit import leaf_hash
from gateway.audit import verify as verify_module
from gateway.audit.bundle import BundleError, Scope, build_bundle, bundle_json, readme_text
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.verify import verify_bundle
from gateway.store import SQLiteStore
from signing.testing import TestPKI
from tests.audit.test_checkpoints import add_events, pki, store, tamper, tsa_url  # noqa: F401 - fixtures


@pytest.fixture
async def logged(store: SQLiteStore, pki: TestPKI, tsa_url: str) -> SQLiteStore:
    """25 events with checkpoints at 10, 20 and 25; then 2 events no checkpoint covers yet."""
    cpr = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    tamper(store, "DELETE FROM audit_events WHERE seq >= 10")
    for first, n in ((10, 10), (20, 5)):
        assert await cpr.checkpoint_now() is not None
        await add_events(store, n, first=first)
    assert await cpr.checkpoint_now() is not None
    await add_events(store, 2, first=25)
    return store


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return buf.getvalue()


async def test_dossier_bundle_verifies(logged: SQLiteStore, pki: TestPKI) -> None:
    data = await build_bundle(logged, Scope(dossier="D1"))
    files = _files(data)
    manifest = json.loads(files["manifest.json"])
    assert manifest["events"] == [1, 5, 9, 13, 17, 21] and manifest["pending"] == [25]
    assert manifest["checkpoints"] == [10, 20, 25] and manifest["anchor"] == 25
    assert "openssl ts -verify" in files["README.txt"].decode()
    # The entries exactly as stored.
    rows = await logged.read(lambda tx: tx.all("audit.by_dossier", dossier="D1"))
    assert files["events/13.json"] == bytes(rows[3]["entry"])
    report = await verify_bundle(data, [pki.root_pem])
    assert report.ok, report.problems
    assert (report.events, report.checkpoints, report.anchor) == (6, 3, 25)


async def test_document_and_time_scopes(logged: SQLiteStore, pki: TestPKI) -> None:
    doc = await build_bundle(logged, Scope(document="DOC2"))
    assert json.loads(_files(doc)["manifest.json"])["events"] == [2, 7, 12, 17, 22]
    rows = await logged.read(lambda tx: tx.all("audit.range", start=0, stop=30))
    start = json.loads(rows[3]["entry"])["at"]
    stop = json.loads(rows[6]["entry"])["at"]
    ranged = await build_bundle(logged, Scope(start=start, stop=stop))
    assert json.loads(_files(ranged)["manifest.json"])["events"] == [3, 4, 5]
    assert (await verify_bundle(ranged, [pki.root_pem])).ok


@pytest.mark.parametrize(
    "scope",
    [
        Scope(),
        Scope(dossier="D1", document="X"),
        Scope(start="2026-01-01T00:00:00Z"),
        Scope(start="yesterday", stop="today"),
    ],
)
async def test_bad_scopes(logged: SQLiteStore, scope: Scope) -> None:
    with pytest.raises(BundleError):
        await build_bundle(logged, scope)


async def test_refusals(store: SQLiteStore, logged: SQLiteStore) -> None:
    with pytest.raises(BundleError, match="no audit events"):
        await build_bundle(logged, Scope(dossier="NOPE"))
    # Events newer than the latest checkpoint only.
    await add_events(logged, 1, first=27)
    rows = await logged.read(lambda tx: tx.all("audit.range", start=27, stop=28))
    with pytest.raises(BundleError, match="newer than the latest checkpoint"):
        await build_bundle(
            logged, Scope(start=json.loads(rows[0]["entry"])["at"], stop="2999-01-01T00:00:00Z")
        )
    # A log that no longer matches its checkpoint is not exported as if it were evidence.
    tamper(logged, "UPDATE audit_events SET leaf_hash = zeroblob(32) WHERE seq = 2")
    with pytest.raises(BundleError, match="audit verify"):
        await build_bundle(logged, Scope(dossier="D1"))


async def test_no_checkpoint_yet(store: SQLiteStore) -> None:
    with pytest.raises(BundleError, match="no checkpoint"):
        await build_bundle(store, Scope(dossier="D1"))


# --- tampering with the bundle ------------------------------------------------------------------


def _modify(files: dict[str, bytes]) -> None:
    files["events/13.json"] = files["events/13.json"].replace(b"D1", b"D3")


def _delete(files: dict[str, bytes]) -> None:
    del files["events/9.json"]


def _reorder(files: dict[str, bytes]) -> None:
    files["events/5.json"], files["events/9.json"] = files["events/9.json"], files["events/5.json"]


def _insert(files: dict[str, bytes]) -> None:
    files["events/6.json"] = b'{"action":"evil","at":"2026-01-01T00:00:00+00:00","seq":6}'


def _insert_listed(files: dict[str, bytes]) -> None:
    # A forger adds the entry to the manifest and a proof of their own: the proof cannot hold.
    _insert(files)
    m = json.loads(files["manifest.json"])
    m["events"].append(6)
    files["manifest.json"] = json.dumps(m).encode()
    files["proofs/inclusion/6.json"] = files["proofs/inclusion/5.json"].replace(
        b'"index": 5', b'"index": 6'
    )


def _forge_checkpoint(files: dict[str, bytes]) -> None:
    files["checkpoints/20.note"] = files["checkpoints/20.note"].replace(b"\n20\n", b"\n21\n")


def _swap_timestamp(files: dict[str, bytes]) -> None:
    files["checkpoints/25.tsr"] = files["checkpoints/10.tsr"]


def _junk_signature(files: dict[str, bytes]) -> None:
    # The copy an auditor checks with openssl (README.txt), not the note's own signature.
    files["checkpoints/25.sig"] = os.urandom(64)


def _manifest(**changes: object) -> Callable[[dict[str, bytes]], None]:
    def change(files: dict[str, bytes]) -> None:
        files["manifest.json"] = json.dumps(
            {**json.loads(files["manifest.json"]), **changes}
        ).encode()  # json.dumps writes float("inf") as Infinity, as a forger's file may

    return change


def _no_events(files: dict[str, bytes]) -> None:
    """Every event and its proof taken out, the manifest and README made to match: what it
    would prove is nothing, and audit export never writes one."""
    for name in [n for n in files if n.startswith(("events/", "proofs/inclusion/"))]:
        del files[name]
    manifest = json.loads(files["manifest.json"])
    manifest["events"] = []
    files["manifest.json"] = bundle_json(manifest)
    files["README.txt"] = readme_text(manifest).encode()


def _truncate(files: dict[str, bytes]) -> None:
    # Drop the latest checkpoint (and claim an earlier anchor): the proofs no longer fit.
    for ext in ("note", "tsr", "chain.pem", "body", "sig"):
        del files[f"checkpoints/25.{ext}"]


def _put(name: str, body: bytes = b"x") -> Callable[[dict[str, bytes]], None]:
    def put(files: dict[str, bytes]) -> None:
        files[name] = body

    return put


def _drop(name: str) -> Callable[[dict[str, bytes]], None]:
    def drop(files: dict[str, bytes]) -> None:
        del files[name]

    return drop


def _edit(name: str, old: bytes, new: bytes) -> Callable[[dict[str, bytes]], None]:
    def edit(files: dict[str, bytes]) -> None:
        assert old in files[name]
        files[name] = files[name].replace(old, new, 1)

    return edit


def _append(name: str, tail: bytes) -> Callable[[dict[str, bytes]], None]:
    def append(files: dict[str, bytes]) -> None:
        files[name] += tail

    return append


def _forged_leaf_hash(files: dict[str, bytes]) -> None:
    doc = json.loads(files["proofs/inclusion/13.json"])
    doc["leaf_hash"] = base64.b64encode(b"\0" * 32).decode()
    files["proofs/inclusion/13.json"] = json.dumps(doc, indent=1).encode() + b"\n"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_modify, "events/13.json: not in checkpoint 25"),
        (_delete, "events/9.json: missing"),
        (_reorder, "events/5.json: the entry says it is 9"),
        (_insert, "events/6.json: not listed in the manifest"),
        (_insert_listed, "events/6.json: not in checkpoint 25"),
        (_forge_checkpoint, "checkpoint 20: "),
        (_swap_timestamp, "checkpoint 25: timestamp"),
        (_truncate, "checkpoint 25: missing"),
        (_junk_signature, "checkpoint 25: checkpoints/25.sig differs from the signed note"),
        (_manifest(events=[float("inf")]), "not an evidence bundle: manifest events"),
        (_manifest(anchor=25.5), "not an evidence bundle: manifest anchor"),
        (_manifest(checkpoints=[True, 25]), "not an evidence bundle: manifest checkpoints"),
        (
            _manifest(scope={"dossier": "D2"}),
            "events/1.json: not in the bundle's scope: the event is about dossier 'D1', not 'D2'",
        ),
        (
            _manifest(scope={"document": "DOC2"}),
            "events/1.json: not in the bundle's scope: the event is about document 'DOC1'",
        ),
        (
            _manifest(scope={"from": "2020-01-01T00:00:00+00:00", "to": "2020-01-02T00:00:00Z"}),
            "events/1.json: not in the bundle's scope: the event is dated 20",
        ),
        (_manifest(scope={}), "not an evidence bundle: scope: not a dossier, a document"),
        (_no_events, "manifest: the bundle holds no event"),
        (_manifest(scope="D1"), "not an evidence bundle: "),
        # Nothing but the layout, exactly as the exporter wrote it.
        (_put("extra.txt"), "'extra.txt': not a bundle member (not in the bundle's layout)"),
        (_put("../evil.txt"), "'../evil.txt': a path out of the bundle's folder"),
        (_put("/etc/evil.txt"), "'/etc/evil.txt': a path out of the bundle's folder"),
        (_put("checkpoints/7.note"), "checkpoints/7.note: not listed in the manifest (added)"),
        (_put("proofs/inclusion/2.json"), "proofs/inclusion/2.json: not listed in the manifest"),
        (_edit("README.txt", b"openssl", b"0penssl"), "README.txt: not what the exporter writes"),
        (_drop("README.txt"), "README.txt: missing"),
        (_append("certs/tsa-chain.pem", b"\n"), "certs/tsa-chain.pem: not what the exporter"),
        (_drop("certs/tsa-chain.pem"), "certs/tsa-chain.pem: missing"),
        (_drop("checkpoints/25.body"), "checkpoint 25: checkpoints/25.body is missing"),
        (_drop("checkpoints/10.sig"), "checkpoint 10: checkpoints/10.sig is missing"),
        (_append("checkpoints/20.chain.pem", b"note\n"), "checkpoint 20: checkpoints/20.chain.pem"),
        (_forged_leaf_hash, "proofs/inclusion/13.json: not as the exporter writes it"),
        (_manifest(), "manifest.json: not as the exporter writes it (edited)"),
        (_manifest(format="x/2"), "manifest.json: format 'x/2'"),
        (_manifest(extra=1), "manifest.json: not as the exporter writes it (edited)"),
        (_edit("proofs/consistency/10-20.json", b"\n", b" \n"), "proofs/consistency/10-20.json:"),
    ],
    ids=[
        "modify",
        "delete",
        "reorder",
        "insert",
        "insert-listed",
        "forged-checkpoint",
        "swapped-timestamp",
        "truncated",
        "junk-openssl-signature",
        "infinite-seq",
        "fractional-anchor",
        "boolean-size",
        "another-dossier",
        "another-document",
        "another-time",
        "no-scope",
        "no-events",
        "scope-not-an-object",
        "extra-member",
        "path-traversal",
        "absolute-path",
        "unlisted-checkpoint",
        "unlisted-proof",
        "edited-readme",
        "removed-readme",
        "edited-tsa-chain",
        "removed-tsa-chain",
        "removed-body",
        "removed-sig",
        "text-after-the-chain",
        "forged-leaf-hash",
        "reformatted-manifest",
        "another-format",
        "manifest-key-added",
        "reformatted-proof",
    ],
)
async def test_tampered_bundle_is_located(
    logged: SQLiteStore, pki: TestPKI, mutate: object, expected: str
) -> None:
    files = _files(await build_bundle(logged, Scope(dossier="D1")))
    mutate(files)  # type: ignore[operator]
    report = await verify_bundle(_zip(files), [pki.root_pem])
    assert not report.ok
    assert any(p.startswith(expected) for p in report.problems), report.problems


async def test_untrusted_anchor(logged: SQLiteStore, pki: TestPKI, tmp_path: Path) -> None:
    other = TestPKI.create(tmp_path / "other")
    report = await verify_bundle(await build_bundle(logged, Scope(dossier="D1")), [other.root_pem])
    assert not report.ok and all("checkpoint" in p or "events/" in p for p in report.problems)


async def test_not_a_bundle(pki: TestPKI) -> None:
    report = await verify_bundle(b"PK not really", [pki.root_pem])
    assert not report.ok and "not an evidence bundle" in report.problems[0]


# --- interop: the real openssl binary checks the timestamps and the signatures -----------------


@pytest.mark.interop
async def test_openssl_checks_the_bundle(logged: SQLiteStore, pki: TestPKI, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of the toolchain"
    out = tmp_path / "bundle"
    with zipfile.ZipFile(io.BytesIO(await build_bundle(logged, Scope(dossier="D1")))) as zf:
        zf.extractall(out)
    shutil.copy(pki.root_pem, out / "ROOT.pem")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [openssl, *args], cwd=out, capture_output=True, text=True, check=False
        )

    for size in (10, 20, 25):
        # Exactly the command README.txt gives.
        ts = run(
            "ts",
            "-verify",
            "-token_in",
            "-in",
            f"checkpoints/{size}.tsr",
            "-data",
            f"checkpoints/{size}.note",
            "-CAfile",
            "ROOT.pem",
            "-untrusted",
            "certs/tsa-chain.pem",
        )
        assert ts.returncode == 0 and "Verification: OK" in ts.stdout, ts.stdout + ts.stderr
        chain = run(
            "verify",
            "-CAfile",
            "ROOT.pem",
            "-untrusted",
            f"checkpoints/{size}.chain.pem",
            f"checkpoints/{size}.chain.pem",
        )
        assert chain.returncode == 0, chain.stdout + chain.stderr
        pub = run("x509", "-in", f"checkpoints/{size}.chain.pem", "-pubkey", "-noout")
        (out / "signer.pub").write_text(pub.stdout)
        sig = run(
            "dgst",
            "-sha256",
            "-verify",
            "signer.pub",
            "-signature",
            f"checkpoints/{size}.sig",
            f"checkpoints/{size}.body",
        )
        assert sig.returncode == 0 and "Verified OK" in sig.stdout, sig.stdout + sig.stderr
    # And openssl says no when the note was changed after timestamping.
    note = out / "checkpoints" / "25.note"
    note.write_bytes(note.read_bytes().replace(b"\n25\n", b"\n24\n"))
    bad = run(
        "ts",
        "-verify",
        "-token_in",
        "-in",
        "checkpoints/25.tsr",
        "-data",
        "checkpoints/25.note",
        "-CAfile",
        "ROOT.pem",
        "-untrusted",
        "certs/tsa-chain.pem",
    )
    assert bad.returncode != 0 and "Verification: OK" not in bad.stdout
    # The leaf-hash recipe in README.txt matches ours.
    entry = (out / "events" / "13.json").read_bytes()
    assert leaf_hash(entry).hex() == __import__("hashlib").sha256(b"\0" + entry).hexdigest()


async def test_a_bundle_signed_by_another_anchored_key_is_refused(
    store: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    """A made-up log checkpointed by an agency's key (same root, signing usage) makes a bundle
    that passes the anchors; the gateway's published audit certificate refuses it."""
    agency = Checkpointer(store, pki.key("agency-000.00.11.H53"), tsa_url=tsa_url)
    assert await agency.checkpoint_now() is not None
    data = await build_bundle(store, Scope(dossier="D1"))
    report = await verify_bundle(data, [pki.root_pem], signers=[pki.certificate("gateway")])
    assert not report.ok and report.signer_pinned
    assert (
        report.problems[0].startswith("checkpoint 25: signed by agency-000.00.11.H53 [key sha256:")
        and "not by the audit signer (gateway [key sha256:" in report.problems[0]
    )
    unpinned = await verify_bundle(data, [pki.root_pem])
    assert unpinned.ok and not unpinned.signer_pinned
    assert [s["name"] for s in unpinned.signers] == ["agency-000.00.11.H53"]
    assert "(not pinned)" in unpinned.describe()
    assert unpinned.notes[-1].startswith("signer not pinned")


async def test_one_bundle_one_signer_when_not_pinned(
    logged: SQLiteStore, pki: TestPKI, tsa_url: str
) -> None:
    agency = Checkpointer(logged, pki.key("agency-000.00.11.H53"), tsa_url=tsa_url)
    assert await agency.checkpoint_now() is not None  # 27, by another key than 10, 20 and 25
    await add_events(logged, 1, first=27)  # dossier D3
    data = await build_bundle(logged, Scope(dossier="D1"))
    report = await verify_bundle(data, [pki.root_pem])
    assert not report.ok
    assert report.problems[0].startswith("checkpoint 27: signed by agency-000.00.11.H53")
    assert "a log has one audit signer" in report.problems[0]
    both = [pki.certificate("gateway"), pki.certificate("agency-000.00.11.H53")]
    assert (await verify_bundle(data, [pki.root_pem], signers=both)).ok


async def test_a_bundle_is_not_built_from_edited_columns(logged: SQLiteStore) -> None:
    """Two of D1's events given D2 in the dossier column: D2's query now selects them, but their
    entries say D1; the export refuses (and verify_bundle would refuse such a bundle)."""
    tamper(logged, "UPDATE audit_events SET dossier = 'D2' WHERE seq IN (5, 9)")
    with pytest.raises(BundleError) as info:
        await build_bundle(logged, Scope(dossier="D2"))
    assert str(info.value) == (
        "the index selects entries that are not about {'dossier': 'D2'} (entry 5 is about "
        "dossier 'D1', not 'D2'; entry 9 is about dossier 'D1', not 'D2'): the log's columns "
        "were edited; run `lienthong audit verify`"
    )


async def test_an_exported_bundle_is_exactly_what_the_verifier_expects(
    logged: SQLiteStore, pki: TestPKI
) -> None:
    """Every derived member re-derived and compared: nothing is reported on a bundle as written,
    through several checkpoints (10, 20, 25) and their consistency proofs."""
    data = await build_bundle(logged, Scope(document="DOC2"))
    report = await verify_bundle(data, [pki.root_pem], signers=[pki.certificate("gateway")])
    assert report.ok and report.checkpoints == 3, report.problems


async def test_a_member_twice_is_refused(logged: SQLiteStore, pki: TestPKI) -> None:
    files = _files(await build_bundle(logged, Scope(dossier="D1")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("events/13.json", files["events/13.json"])
    report = await verify_bundle(buf.getvalue(), [pki.root_pem])
    assert "events/13.json: twice in the zip" in report.problems, report.problems


@pytest.mark.parametrize("name", ["events/5.json", "manifest.json"])
async def test_a_zip_bomb_is_refused_unread(
    logged: SQLiteStore, pki: TestPKI, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that decompresses past the cap (65 MiB of zeros, 65 KiB in the zip) is refused
    before anything is decompressed: nothing is read."""
    files = _files(await build_bundle(logged, Scope(dossier="D1")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, body in files.items():
            zf.writestr(member, bytes(65 * 2**20) if member == name else body)
    assert len(buf.getvalue()) < 2**20
    monkeypatch.setattr(zipfile.ZipFile, "open", _never_opened)
    report = await verify_bundle(buf.getvalue(), [pki.root_pem])
    assert report.problems == [
        f"refused unread: {name!r} is {65 * 2**20} bytes once decompressed; a bundle member is "
        "at most 67108864 (a zip bomb?)"
    ]


async def test_members_too_large_together_are_refused_unread(
    logged: SQLiteStore, pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = await build_bundle(logged, Scope(dossier="D1"))
    total = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    monkeypatch.setattr(verify_module, "MAX_TOTAL", total - 1)
    monkeypatch.setattr(zipfile.ZipFile, "open", _never_opened)
    report = await verify_bundle(data, [pki.root_pem])
    assert report.problems == [
        f"refused unread: its members are {total} bytes once decompressed; a bundle is at most "
        f"{total - 1} (a zip bomb?)"
    ]


def _never_opened(*args: object, **kwargs: object) -> None:
    raise AssertionError("a member was decompressed")


async def test_a_member_compressed_otherwise_than_deflate_is_refused_unread(
    logged: SQLiteStore, pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: zipfile decompresses a bzip2 or LZMA member whole, whatever size it
    declares, before the size is checked (a 22 KB bundle took 3.2 GB). The exporter deflates:
    anything else is refused before a member is opened."""
    files = _files(await build_bundle(logged, Scope(dossier="D1")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, body in files.items():
            method = zipfile.ZIP_BZIP2 if member == "events/5.json" else zipfile.ZIP_DEFLATED
            zf.writestr(member, body, compress_type=method)
    monkeypatch.setattr(zipfile.ZipFile, "open", _never_opened)
    report = await verify_bundle(buf.getvalue(), [pki.root_pem])
    assert report.problems == [
        "refused unread: 'events/5.json' is compressed with method 12; a bundle's members are "
        "stored or deflated"
    ]
