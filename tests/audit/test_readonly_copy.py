"""An auditor's read-only copy of a gateway's store: the reading commands work on it and leave it
exactly as it was; the writing ones refuse it in one line that says it is read-only.

The copy is genuinely read-only: its files and folder cannot be written by the user running the
CLI. Root ignores file modes, so as root the CLI runs as nobody (uid 65534, through setpriv) on a
copy in a folder of its own under /tmp that nobody can reach (pytest's tmp_path is not); as any
other user, the modes are enough. A probe checks that the copy really is read-only to that user:
a test that could not make it so fails rather than vouch for nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, append
from gateway.audit.checkpoints import Checkpointer, key_fingerprint
from gateway.outbox import enqueue
from gateway.store import SQLiteStore, Tx
from signing.testing import TestPKI

ENTRY_POINT = Path(sys.executable).with_name("lienthong")  # the installed console script
NOBODY = 65534
AS_ROOT = os.geteuid() == 0

# How the copy is read-only: "media" (files and folder, a copy on a read-only disk), "files"
# (files an auditor may only read, in a folder they may write), "folder" (a store file they may
# write, in a folder they may not: SQLite cannot make its -wal and -shm files there).
LAYOUTS = ["media", "files", "folder"]


def reader(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the user the copy is read-only to: nobody when we are root."""
    command = [str(a) for a in argv]
    if AS_ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root without setpriv: no user the copy is read-only to")
        command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd="/")


def lienthong(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return reader(ENTRY_POINT, *args)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, by relative path."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        found[str(path.relative_to(folder))] = path.read_bytes() if path.is_file() else None
    return found


def make_read_only(copy: Path, layout: str) -> None:
    files, folders = [p for p in copy.rglob("*") if p.is_file()], [copy]
    if layout in ("media", "files"):
        for f in files:
            f.chmod(0o444)
    if layout == "files":
        copy.chmod(0o777)  # the auditor may write the folder (it is theirs as root's here)
    else:
        for d in folders:
            d.chmod(0o555)
        if layout == "folder" and AS_ROOT:
            os.chown(copy / "gw.db", NOBODY, NOBODY)  # theirs to write, in a folder that is not
    # Check it, as the user who will read it: what may not be written must not be writable.
    db = copy / "gw.db"
    probes = {
        "media": [db, copy / "probe"],
        "files": [db],
        "folder": [copy / "probe"],
    }[layout]
    for target in probes:
        probe = reader(sys.executable, "-c", f"open({str(target)!r}, 'a')")
        if probe.returncode == 0:
            target.unlink(missing_ok=True)
            pytest.fail(f"could not make the copy read-only ({layout}): {target} is writable")
        assert "PermissionError" in probe.stderr, probe.stderr


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder under /tmp that the reader can reach (every parent traversable), removed after."""
    base = Path(tempfile.mkdtemp(prefix="lienthong-ro-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(base)


def _dead_job(tx: Tx) -> None:
    enqueue(tx, kind="flow.step", key="k1", payload={"step": "s1"}, dossier="D1", now=1000.0)
    tx.all("outbox.claim", owner="w/1", now=10**10, lease=1, limit=5)
    tx.execute("outbox.bury", id=1, owner="w/1", now=1001.0, error="PermanentError: said no")


@pytest.fixture
async def store(tmp_path: Path, pki: TestPKI, tsa_url: str) -> Path:
    """A gateway's store: 12 audit events, a signed and timestamped checkpoint, a dead job."""
    path = tmp_path / "gw.db"
    async with SQLiteStore(path) as s:
        for i in range(12):
            event = AuditEvent(action="dossier.accepted", member=f"VN:GOV:M{i % 3}", dossier="D1")
            await s.transact(lambda tx, e=event: append(tx, e))
        await s.transact(_dead_job)
        assert await Checkpointer(s, pki.key("gateway"), tsa_url=tsa_url).checkpoint_now()
    return path


def copy_store(db: Path, pki: TestPKI, scratch: Path, *extra: Path) -> Path:
    """What an auditor receives: the store (with ``extra``: its -wal, -shm), the trust anchor and
    a config naming both, in ``scratch/copy``; and ``scratch/out``, a folder they may write."""
    copy = scratch / "copy"
    copy.mkdir()
    for f in (db, *extra):
        shutil.copyfile(f, copy / f.name)
    shutil.copyfile(pki.root_pem, copy / "root.pem")
    # The gateway's published audit certificate: the key its checkpoints must be signed by.
    shutil.copyfile(pki.cert_path("gateway"), copy / "audit.pem")
    (copy / "lienthong.toml").write_text(
        '[store]\nurl = "sqlite:///gw.db"\n'
        '[signing]\ncert = "audit.pem"\ntrust = ["root.pem"]\nrevocation = "off"\n',
        "utf-8",
    )
    out = scratch / "out"
    out.mkdir()
    out.chmod(0o777)
    return copy


def uncheckpointed(db: Path) -> list[Path]:
    """The -wal and -shm of a store open for writing, its commits still in the -wal."""
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    assert wal.stat().st_size > 0 and shm.is_file()
    return [wal, shm]


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_read_only_copy_is_verified_searched_and_listed_and_left_as_it_was(
    store: Path, pki: TestPKI, scratch: Path, layout: str
) -> None:
    copy = copy_store(store, pki, scratch)
    make_read_only(copy, layout)
    before = snapshot(copy)
    config = copy / "lienthong.toml"

    def run() -> None:
        verify = lienthong("audit", "verify", "--config", config)
        assert verify.returncode == 0, verify.stderr
        assert verify.stdout.splitlines()[0] == (
            "audit log intact: 12 entries, 1 checkpoints verified, "
            f"signed by gateway [key sha256:{key_fingerprint(pki.certificate('gateway'))[:16]}]"
        )

        query = lienthong("audit", "query", "--config", config, "--member", "VN:GOV:M1")
        assert query.returncode == 0, query.stderr
        assert query.stdout.count("dossier.accepted") == 4, query.stdout

        bundle = scratch / "out" / "D1.zip"
        export = lienthong("audit", "export", "--config", config, "--dossier", "D1", bundle)
        assert export.returncode == 0, export.stderr
        checked = lienthong(
            "audit", "verify-bundle", bundle, "--trust", copy / "root.pem",
            "--signer", copy / "audit.pem",
        )  # fmt: skip
        assert checked.returncode == 0 and "bundle verified: 12 events" in checked.stdout

        jobs = lienthong("outbox", "list", "--config", config, "--dead")
        assert jobs.returncode == 0, jobs.stderr
        assert "PermanentError: said no" in jobs.stdout.splitlines()[1]

        # The commands that write say why they cannot, in one line, and change nothing.
        for command in (("outbox", "replay", "1"), ("flows", "resume", "D1")):
            one_line_error(lienthong(*command, "--config", config), "store:", "is read-only")

    await asyncio.to_thread(run)
    assert snapshot(copy) == before  # the same files, the same bytes: no -wal, no -shm


async def test_a_tampered_read_only_copy_is_reported_as_tampered(
    store: Path, pki: TestPKI, scratch: Path
) -> None:
    copy = copy_store(store, pki, scratch)
    conn = sqlite3.connect(copy / "gw.db")
    with conn:
        (entry,) = conn.execute("SELECT entry FROM audit_events WHERE seq = 4").fetchone()
        forged = bytes(entry).replace(b"VN:GOV:M1", b"VN:GOV:M2")
        assert forged != entry
        conn.execute("UPDATE audit_events SET entry = ? WHERE seq = 4", (forged,))
    conn.close()
    make_read_only(copy, "media")
    before = snapshot(copy)

    result = await asyncio.to_thread(
        lienthong, "audit", "verify", "--config", copy / "lienthong.toml"
    )

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout.startswith("audit log FAILED: entry 4"), result.stdout
    assert result.stderr.startswith("Error: entry 4"), result.stderr
    assert snapshot(copy) == before


async def test_a_copy_taken_while_the_gateway_was_writing_is_read_with_its_log(
    tmp_path: Path, pki: TestPKI, scratch: Path
) -> None:
    """Copied with its -wal and -shm while the gateway ran, a store holds commits the file alone
    does not: they are read (through the -wal), and nothing is written beside them."""
    path = tmp_path / "gw.db"
    async with SQLiteStore(path) as live:
        for i in range(5):
            await live.transact(lambda tx, i=i: append(tx, AuditEvent(action=f"a{i}")))
        copy = copy_store(path, pki, scratch, *uncheckpointed(path))
    make_read_only(copy, "media")
    before = snapshot(copy)

    verify = await asyncio.to_thread(
        lienthong, "audit", "verify", "--config", copy / "lienthong.toml"
    )

    assert verify.returncode == 0, verify.stderr
    line = verify.stdout.splitlines()[0]
    assert line.startswith("audit log intact: 5 entries, 0 checkpoints verified; "), line
    assert "entries 0..4 are covered by no signed checkpoint yet (one is due by " in line
    assert snapshot(copy) == before


async def test_a_log_that_cannot_be_read_is_said_so_not_called_another_file(
    tmp_path: Path, pki: TestPKI, scratch: Path
) -> None:
    """A -wal copied without its -shm onto read-only media: SQLite cannot read the commits in
    it, and reading the file alone would hide them; so the command refuses, in one line."""
    path = tmp_path / "gw.db"
    async with SQLiteStore(path) as live:
        await live.transact(lambda tx: append(tx, AuditEvent(action="a")))
        copy = copy_store(path, pki, scratch, Path(f"{path}-wal"))
    make_read_only(copy, "media")

    verify = await asyncio.to_thread(
        lienthong, "audit", "verify", "--config", copy / "lienthong.toml"
    )

    one_line_error(verify, "store: cannot read the store at", "its -wal file can be read only")
    assert "not a SQLite database" not in verify.stderr
