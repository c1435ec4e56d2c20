"""``lienthong demo`` into the output of an earlier one that is a link (a demo-output linked to a
larger disk), or that holds a file this user may not delete: one line, never a traceback, and a
folder the next run still takes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.demo import OutputError, _clear, _write_config

AS_ROOT = os.geteuid() == 0


def _earlier_demo(out: Path) -> None:
    """What a demo leaves (the names that matter here; _write_config is what marks it)."""
    (out / "pki").mkdir(parents=True)
    (out / "pki" / "root.key.pem").write_text("key")
    (out / "artifacts").mkdir()
    (out / "artifacts" / "cong-van-2491.receipt.xml").write_text("<receipt/>")
    (out / "lienthong.db").write_text("old")
    _write_config(out, seed=0)


def test_a_link_to_an_earlier_demos_output_is_cleared_through(tmp_path: Path) -> None:
    """Found by probing: shutil.rmtree refused the link ('Cannot call rmtree on a symbolic
    link'), and the demo ended in a traceback."""
    disk = tmp_path / "disk" / "demo"
    _earlier_demo(disk)
    link = tmp_path / "demo-output"
    link.symlink_to(disk)
    _clear(link)
    assert link.is_symlink() and link.resolve() == disk.resolve()
    assert list(disk.iterdir()) == []


def test_links_inside_the_output_go_and_what_they_point_to_stays(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "demo-output", tmp_path / "big-disk"
    _earlier_demo(out)
    (elsewhere / "sha256").mkdir(parents=True)
    (out / "blobs").symlink_to(elsewhere)
    _clear(out)
    assert list(out.iterdir()) == [] and (elsewhere / "sha256").is_dir()


def _run_bound_by_modes(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` in a process that file modes bind: as root, without the capabilities that let
    root write any folder (as in a container where they are dropped)."""
    command = list(argv)
    if AS_ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root without setpriv: modes bind no process")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner",
                   "--inh-caps=-all", *command]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_a_file_that_may_not_be_deleted_is_one_line_and_the_folder_stays_a_demos(
    tmp_path: Path,
) -> None:
    """Found by probing: rmtree stopped at the first file it could not delete with a traceback,
    after deleting lienthong.toml, and every later run refused the folder as not a demo's."""
    out = tmp_path / "demo-output"
    _earlier_demo(out)
    (out / "artifacts").chmod(0o555)
    try:
        done = _run_bound_by_modes(
            sys.executable, "-c", "from gateway.cli import main; main()",
            "demo", "--output", str(out), "--dossiers", "1",
        )  # fmt: skip
    finally:
        (out / "artifacts").chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"Error: cannot clear {out}: Permission denied: "
        f"{out / 'artifacts' / 'cong-van-2491.receipt.xml'}\n"
    )
    assert (out / "lienthong.toml").is_file()  # deleted last: the folder is still a demo's
    _clear(out)  # and the next run takes it
    assert list(out.iterdir()) == []


def test_a_demo_without_openssl_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    out = tmp_path / "demo-output"
    result = CliRunner().invoke(main, ["demo", "--output", str(out), "--dossiers", "1"])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: cannot make the test PKI in {out / 'pki'}: openssl not found on PATH: it "
        "writes the test PKI's .p12 files (install openssl)\n"
    )


def test_a_demo_killed_while_making_its_pki_leaves_a_folder_the_next_run_takes(
    tmp_path: Path,
) -> None:
    """Found by probing: a demo killed (SIGKILL, the OOM killer, a closed terminal's SIGHUP)
    while it made its test PKI left `.pki.<hex>.partial` in its folder, and every later run
    refused the folder: `holds files a demo did not write (.pki.….partial)`."""
    out = tmp_path / "demo-output"
    argv = [sys.executable, "-c", "from gateway.cli import main; main()",
            "demo", "--output", str(out), "--dossiers", "1"]  # fmt: skip
    for _ in range(20):  # a PKI made before it is seen: cleared, and tried again
        demo = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while demo.poll() is None and not list(out.glob(".pki.*.partial/root.key.pem")):
                time.sleep(0.002)
        finally:
            demo.send_signal(signal.SIGKILL)
            demo.wait()
        if list(out.glob(".pki.*.partial")):
            break
        _clear(out)
    else:
        pytest.fail("every demo made its PKI before it could be killed")
    _clear(out)
    assert list(out.iterdir()) == []


def test_a_folder_beside_a_pki_is_not_a_demos_unless_named_as_the_pki_builds_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo-output"
    _earlier_demo(out)
    (out / ".pki.notours.partial").mkdir()
    with pytest.raises(OutputError, match=r"holds files a demo did not write \(\.pki\.notours"):
        _clear(out)


def _demo_with_log(out: Path, *, counted: int | None, stored: int) -> None:
    """An earlier demo whose summary counted ``counted`` audit entries (None: no summary, a run
    cut short) and whose store now holds ``stored``."""
    _earlier_demo(out)
    (out / "lienthong.db").unlink()
    with sqlite3.connect(out / "lienthong.db") as db:
        db.execute("CREATE TABLE audit_events (seq INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO audit_events VALUES (?)", [(i,) for i in range(stored)])
    db.close()
    if counted is not None:
        summary = {"ok": True, "audit": {"ok": True, "entries": counted}}
        (out / "summary.json").write_text(json.dumps(summary))


def test_an_output_a_gateway_served_since_is_not_cleared(tmp_path: Path) -> None:
    """Found by probing: `serve --config demo-output/lienthong.toml` (as README suggests) took
    documents into the demo's store, and the next `make demo` deleted them without a word."""
    out = tmp_path / "demo-output"
    _demo_with_log(out, counted=5, stored=7)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputError, match=r"holds work done after its demo \(2 audit entries"):
        _clear(out)
    assert sorted(p.name for p in out.iterdir()) == before
    result = CliRunner().invoke(main, ["demo", "--output", str(out)])
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]  # after the demo's banner: one line
    assert last.startswith("Error: ") and "holds work done after its demo" in last


@pytest.mark.parametrize(("counted", "stored"), [(5, 5), (None, 7)])
def test_an_output_as_its_demo_left_it_is_cleared(
    tmp_path: Path, counted: int | None, stored: int
) -> None:
    out = tmp_path / "demo-output"
    _demo_with_log(out, counted=counted, stored=stored)
    _clear(out)
    assert list(out.iterdir()) == []
