"""``lienthong demo --output DIR`` replaces an earlier demo's output, and nothing else."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.demo import OutputError, _clear, _write_config, make_pki


def test_a_folder_with_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    (tmp_path / "lienthong.db").write_bytes(b"an earlier demo's store")
    result = CliRunner().invoke(main, ["demo", "--output", str(tmp_path), "--dossiers", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {tmp_path} holds files a demo did not write (notes.txt): choose another --output"
    )
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert (tmp_path / "lienthong.db").exists()


def test_an_earlier_demos_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    (out / "pki").mkdir(parents=True)
    (out / "artifacts").mkdir()
    for name in ("lienthong.db", "lienthong.db-wal", "lienthong.log", "summary.json"):
        (out / name).write_text("old")
    _write_config(out, seed=0)  # what a demo writes first
    _clear(out)
    assert list(out.iterdir()) == []  # the folder stays (its mode, a link to it)
    _clear(out)  # an empty folder: taken
    out.rmdir()
    _clear(out)  # nothing there: nothing to do
    assert not out.exists()


def test_a_gateways_own_folder_is_refused_and_kept(tmp_path: Path) -> None:
    """Found by probing: only the names at the folder's top were compared with a demo's, and a
    gateway's folder holds the same ones (its lienthong.toml, its store lienthong.db, pki/):
    `demo --output` on it deleted it whole."""
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "gateway.key.pem").write_text("the production key")
    (tmp_path / "lienthong.toml").write_text(
        "# production\n[store]\nurl = 'sqlite:///lienthong.db'\n"
    )
    (tmp_path / "lienthong.db").write_bytes(b"the production store")
    result = CliRunner().invoke(main, ["demo", "--output", str(tmp_path), "--dossiers", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {tmp_path} is not an earlier demo's output (its lienthong.toml is not the one a "
        "demo writes): choose another --output"
    )
    assert (tmp_path / "lienthong.db").read_bytes() == b"the production store"
    assert (tmp_path / "pki" / "gateway.key.pem").read_text() == "the production key"


def test_an_output_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["demo", "--output", str(blocker / "sub")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot make {blocker / 'sub'}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_clear_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        _clear(target)


def test_each_demo_pki_serves_revocation_on_a_port_of_its_own(tmp_path: Path) -> None:
    port = urlsplit(make_pki(tmp_path / "pki").base_url).port
    assert port is not None and port != 8791  # the default every test PKI shares
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free: nothing else listens there


def test_the_demos_log_is_the_gateways_as_serve_writes_it(tmp_path: Path) -> None:
    """Found in review: the demo logged every library at INFO into lienthong.log (fontTools'
    glyph lists, a hundred lines a run, drowned the gateway's own), where serve keeps libraries at
    WARNING and pyHanko silent. Run as a shell runs it: the demo configures the process's
    logging."""
    out = tmp_path / "demo-output"
    done = subprocess.run(
        [sys.executable, "-c", "from gateway.cli import main; main()", "demo", "--json",
         "--output", str(out), "--dossiers", "2"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in (out / "lienthong.log").read_text().splitlines()]
    assert any(e["logger"].startswith("lienthong.") and e["level"] == "info" for e in lines)
    foreign = [e for e in lines if not e["logger"].startswith("lienthong")]
    assert [e for e in foreign if e["level"] in ("debug", "info")] == []
    assert [e for e in foreign if e["logger"].startswith("pyhanko")] == []
