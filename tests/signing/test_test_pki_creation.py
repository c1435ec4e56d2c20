"""A test PKI (`pki init`, the demo, `[sandbox] pki`) is made whole or not at all: one whose creation
fails (no openssl on PATH, a full disk) leaves the folder as it was, so that a later creation
succeeds there; a missing openssl is named. Its private keys are readable by their owner alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.keys import signing_setup
from gateway.settings import SettingsError, settings_from_mapping
from signing.cli import pki as pki_group
from signing.errors import SigningError
from signing.testing import TestPKI
from tests.conftest import file_mode

BASE = "http://127.0.0.1:9"


@pytest.fixture
def no_openssl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without openssl, as on a machine where it is not installed."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.usefixtures("debian_umask")
def test_private_keys_are_the_owners_alone(tmp_path: Path) -> None:
    pki = TestPKI.create(tmp_path / "pki", base_url=BASE)
    keys = sorted(pki.directory.glob("*.key.pem"))
    assert {k.name for k in keys} >= {"root.key.pem", "intermediate.key.pem", "gateway.key.pem"}
    assert {k.name: file_mode(k) for k in keys} == {k.name: 0o600 for k in keys}
    p12s = sorted(pki.directory.glob("*.p12"))
    assert {p.name: file_mode(p) for p in p12s} == {p.name: 0o600 for p in p12s}
    assert (file_mode(pki.root_pem), file_mode(pki.cert_path("gateway"))) == (0o644, 0o644)
    assert file_mode(pki.directory) == 0o755  # a folder as any other: its certificates are public


@pytest.mark.parametrize("existed", [False, True], ids=["new-folder", "empty-folder"])
def test_a_failed_creation_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    folder = tmp_path / "etc" / "pki"
    if existed:
        folder.mkdir(parents=True, mode=0o750)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "no-such-bin"))
        with pytest.raises(SigningError) as info:
            TestPKI.create(folder, base_url=BASE)
    assert str(info.value).startswith("openssl not found on PATH: ")
    assert sorted(p.name for p in folder.parent.iterdir()) == (["pki"] if existed else [])
    if existed:
        assert list(folder.iterdir()) == [] and file_mode(folder) == 0o750
    made = TestPKI.create(folder, base_url=BASE)  # openssl back: the same folder takes it
    assert TestPKI.load(folder).subjects == made.subjects
    assert sorted(p.name for p in folder.parent.iterdir()) == ["pki"]
    if existed:
        assert file_mode(folder) == 0o750


def test_a_pki_in_a_link_to_an_empty_folder_is_made_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "disk").mkdir()
    (tmp_path / "pki").symlink_to(tmp_path / "disk")
    TestPKI.create(tmp_path / "pki", base_url=BASE)
    assert (tmp_path / "pki").is_symlink()
    assert (tmp_path / "disk" / "index.json").is_file()


@pytest.mark.usefixtures("no_openssl")
def test_pki_init_names_the_missing_openssl(tmp_path: Path) -> None:
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path / "pki")])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: cannot create the test PKI in {tmp_path / 'pki'}: openssl not found on PATH: "
        "it writes the test PKI's .p12 files (install openssl)\n"
    )
    assert not (tmp_path / "pki").exists()


def test_the_sandbox_pki_is_made_at_the_start_after_one_that_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by probing: serve without openssl left a half-made pki/, and every later start said
    '[sandbox] pki: …/pki is not a test PKI (no index.json)'."""
    settings = settings_from_mapping({"sandbox": {"pki": "pki"}}, base_dir=tmp_path, environ={})
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "no-such-bin"))
        with pytest.raises(SettingsError) as info:
            signing_setup(settings)
    assert str(info.value).startswith("[sandbox] pki: openssl not found on PATH: ")
    assert not (tmp_path / "pki").exists()
    setup = signing_setup(settings)
    assert setup.pki is not None and setup.pki.directory == tmp_path / "pki"


def _kill_while_building(folder: Path) -> Path:
    """Start a creation of a test PKI in ``folder`` in another process and SIGKILL it once its
    root key is written in the folder it builds in; that folder, left behind."""
    code = "import sys; from signing.testing import TestPKI; TestPKI.create(sys.argv[1])"
    for _ in range(20):  # a creation that ends before it is seen is tried again
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder)])
        try:
            while proc.poll() is None:
                building = [p for p in folder.parent.glob(f".{folder.name}.*.partial")]
                if building and (building[0] / "root.key.pem").exists():
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return building[0]
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    pytest.fail("every creation ended before it could be killed")


def test_a_creation_killed_midway_leaves_nothing_once_the_pki_is_made(tmp_path: Path) -> None:
    """Found by probing: `serve` (or the demo) killed while it made the sandboxes' PKI left
    `.pki.<hex>.partial` beside it, the CA's private keys in it, for good: the next start made
    the PKI and kept the half-made one."""
    folder = tmp_path / "pki"
    left = _kill_while_building(folder)
    assert not folder.exists() and (left / "root.key.pem").is_file()
    TestPKI.create(folder, base_url=BASE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pki"]
    assert (folder / "index.json").is_file()


def test_creations_side_by_side_do_not_take_each_others_folders(tmp_path: Path) -> None:
    """Another process's creation in progress is left alone: only one that was killed is taken."""
    code = "import sys; from signing.testing import TestPKI; TestPKI.create(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / name)])
        for name in ("pki", "pki", "other")
    ]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 0, 1]  # of two creations of one folder, the second finds it made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "pki"]
    assert TestPKI.load(tmp_path / "pki").subjects == TestPKI.load(tmp_path / "other").subjects
