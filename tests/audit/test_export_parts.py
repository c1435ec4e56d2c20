"""``audit export`` writes its bundle to a hidden ``.part`` beside OUT first. One left by an
exporter killed mid-write (SIGKILL, a power cut) stayed for ever; the next export to OUT now
removes it, but never the ``.part`` of an exporter still writing."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints are parameters here

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from signing import files
from signing.testing import TestPKI
from tests.audit.test_checkpoints import pki, tsa_url  # noqa: F401 - fixtures
from tests.audit.test_verify_cli import _invoke, _listing, config  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]

# `lienthong audit export`, in a process of its own, whose bundle file takes half the bundle,
# says "stalled" on stdout and then waits to be killed: an exporter caught mid-write.
_STALLED_EXPORT = """
import sys, time
from signing import files

real = files.open_private


class Stalled:
    def __init__(self, f):
        self._f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        print("stalled", flush=True)
        time.sleep(3600)


files.open_private = lambda *a, **kw: Stalled(real(*a, **kw))
from gateway.cli import main

main(sys.argv[1:], prog_name="lienthong")
"""


@pytest.fixture
async def stalled_exporter(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child exporting D1 to ``out/D1.zip``, stopped halfway through writing its ``.part``."""
    out_dir = config.parent / "out"
    out_dir.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STALLED_EXPORT,
        "audit",
        "export",
        "--config",
        str(config),
        "--dossier",
        "D1",
        str(out_dir / "D1.zip"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await proc.stdout.readline()
        assert line == b"stalled\n", line + await proc.stderr.read()
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _parts(folder: Path) -> list[str]:
    return [n for n in _listing(folder) if n.endswith(".part")]


async def _exported_whole(pki: TestPKI, out_zip: Path) -> None:
    """``out_zip`` is a whole bundle of D1, verified as an auditor would."""
    code, out = await _invoke("verify-bundle", str(out_zip), "--trust", str(pki.root_pem),
                              "--signer", str(pki.cert_path("gateway")))  # fmt: skip
    assert code == 0 and "bundle verified: 3 events in checkpoint 13" in out, out


async def test_the_part_of_an_exporter_killed_mid_write_is_removed_by_the_next_export(
    config: Path, pki: TestPKI, stalled_exporter: asyncio.subprocess.Process
) -> None:
    out_dir = config.parent / "out"
    out_zip = out_dir / "D1.zip"
    stalled_exporter.send_signal(signal.SIGKILL)
    assert await stalled_exporter.wait() == -signal.SIGKILL
    assert len(_parts(out_dir)) == 1 and not out_zip.exists()  # what the kill left
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0, out
    assert _listing(out_dir) == ["D1.zip"]
    await _exported_whole(pki, out_zip)


async def test_the_part_of_an_exporter_still_writing_is_left_alone(
    config: Path, pki: TestPKI, stalled_exporter: asyncio.subprocess.Process
) -> None:
    out_dir = config.parent / "out"
    out_zip = out_dir / "D1.zip"
    [theirs] = _parts(out_dir)
    written = (out_dir / theirs).read_bytes()
    assert written  # half a bundle, being written
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0, out
    assert stalled_exporter.returncode is None
    assert _listing(out_dir) == sorted(["D1.zip", theirs])
    assert (out_dir / theirs).read_bytes() == written
    await _exported_whole(pki, out_zip)


async def test_only_parts_named_as_an_export_to_out_names_them_are_removed(
    config: Path, tmp_path: Path
) -> None:
    """Files that merely look alike (another program's, a user's) are not the export's to
    remove, nor is the part of an export to another name."""
    out_dir = tmp_path / "mixed"
    out_dir.mkdir()
    others = [
        ".D1.zip.part",
        ".D1.zip.backup.part",
        "D1.zip.0123456789abcdef.part",
        ".D2.zip.0123456789abcdef.part",
        ".D1.zip.0123456789ABCDEF.part",
    ]
    for name in others:
        (out_dir / name).write_bytes(b"not ours")
    (out_dir / ".D1.zip.fedcba9876543210.part").mkdir()  # not a file: left alone
    code, out = await _invoke(
        "export", "--config", str(config), "--dossier", "D1", str(out_dir / "D1.zip")
    )
    assert code == 0, out
    assert _listing(out_dir) == sorted(["D1.zip", ".D1.zip.fedcba9876543210.part", *others])


@pytest.mark.parametrize("remover", ["done", "at-work"])
async def test_a_part_taken_for_abandoned_before_its_exporter_locks_it_is_made_anew(
    config: Path, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remover: str
) -> None:
    """Between a part's creation and its lock another export may take it for abandoned: having
    removed it ("done"), or holding its lock to ("at-work"). The exporter writes to a new one."""
    out_zip = tmp_path / "D1.zip"
    real = files.open_private
    taken: list[int] = []  # the fd the other export holds the part's lock with

    def raced(path: Path, mode: str = "wb", **kw: Any) -> Any:
        f = real(path, mode, **kw)
        if path.name.endswith(".part") and not taken:
            if remover == "done":  # another export, at that very moment
                files.remove_abandoned_parts(out_zip.parent, out_zip.name.__eq__)
                assert not path.exists()
                taken.append(-1)
            else:
                fd = os.open(path, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken.append(fd)
        return f

    monkeypatch.setattr(files, "open_private", raced)
    try:
        code, out = await _invoke(
            "export", "--config", str(config), "--dossier", "D1", str(out_zip)
        )
        assert code == 0, out
        left = [] if remover == "done" else _parts(tmp_path)  # the other export's to remove
        assert taken and [n for n in _listing(tmp_path) if "D1" in n] == sorted(["D1.zip", *left])
        assert len(left) == (remover == "at-work")
        await _exported_whole(pki, out_zip)
    finally:
        for fd in taken:
            if fd >= 0:
                os.close(fd)


async def test_a_file_system_without_locks_exports_and_removes_nothing(
    config: Path, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock fails with ENOLCK (an NFS mount without its lock daemon) the export is written
    as before, and no part is removed: none can be told abandoned there."""
    out_zip = tmp_path / "D1.zip"
    theirs = tmp_path / ".D1.zip.0123456789abcdef.part"
    theirs.write_bytes(b"perhaps being written")

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, out = await _invoke("export", "--config", str(config), "--dossier", "D1", str(out_zip))
    assert code == 0, out
    assert [n for n in _listing(tmp_path) if "D1" in n] == sorted(["D1.zip", theirs.name])
    monkeypatch.undo()
    await _exported_whole(pki, out_zip)
