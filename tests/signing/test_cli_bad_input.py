"""Bad input to ``sign``, ``verify``, ``pki`` and ``tsa``: one line on stderr and a non-zero exit,
never a traceback, never a silent success that destroys data (the CLI's rule)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signing.cli import pki as pki_group
from signing.cli import sign, tsa, verify
from signing.errors import SigningError
from signing.testing import SAMPLE_XML, TestPKI, free_port, sample_pdf

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(result: Result, code: int, *words: str) -> str:
    """The command failed with ``code`` and said why in one line on stderr, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def usage_error(result: Result, *words: str) -> None:
    """click's own refusal of an option value (exit 2, the value named on the Error line)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def _copy_pki(pki: TestPKI, to: Path, base_url: str) -> Path:
    shutil.copytree(pki.directory, to)
    index = json.loads((to / "index.json").read_text())
    index["base_url"] = base_url
    (to / "index.json").write_text(json.dumps(index))
    return to


@contextlib.contextmanager
def _cli(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``lienthong ARGS`` in its own process; interrupted (Ctrl-C) at the end if still running."""
    with subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _interrupted(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C: the exit code and what the process wrote on stderr."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


# ---- 1. pki init never overwrites a PKI, nor writes into the current folder -------------------
def test_pki_init_refuses_an_existing_pki(pki: TestPKI) -> None:
    root_before = pki.root_pem.read_bytes()
    key_before = (pki.directory / "root.key.pem").read_bytes()
    result = CliRunner().invoke(
        pki_group, ["init", str(pki.directory), "--base-url", "http://127.0.0.1:9"]
    )
    one_line_error(result, 2, str(pki.directory), "is not empty", "never overwritten")
    assert pki.root_pem.read_bytes() == root_before
    assert (pki.directory / "root.key.pem").read_bytes() == key_before


def test_pki_init_refuses_any_non_empty_folder_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path)])
    one_line_error(result, 2, "is not empty", "choose another folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path / "notes.txt")])
    one_line_error(result, 2, "notes.txt", "is not a folder")


def test_pki_init_refuses_an_empty_directory_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    one_line_error(CliRunner().invoke(pki_group, ["init", ""]), 2, "DIRECTORY is empty")
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_pki_init_fills_an_existing_empty_folder(tmp_path: Path) -> None:
    port = free_port()
    result = CliRunner().invoke(
        pki_group, ["init", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "root.pem").exists() and (tmp_path / "gateway.p12").exists()
    assert TestPKI.load(tmp_path).base_url == f"http://127.0.0.1:{port}"


def test_pki_init_failure_leaves_no_half_pki(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(directory: Path, *, base_url: str) -> TestPKI:
        (directory / "crl").mkdir(parents=True)
        (directory / "root.pem").write_text("half")
        raise SigningError("openssl pkcs12 failed for gateway: boom\nsecond line")

    monkeypatch.setattr(TestPKI, "create", broken)
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path / "new")])
    one_line_error(result, 2, "cannot create the test PKI", "openssl pkcs12 failed", "second line")
    assert not (tmp_path / "new").exists()  # a folder it made itself: removed again
    (tmp_path / "mine").mkdir()
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path / "mine")])
    one_line_error(result, 2, "cannot create the test PKI")
    assert (tmp_path / "mine").is_dir()  # a folder it was given: kept


# ---- 2. pki init --base-url must be http://HOST[:PORT] ----------------------------------------
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("notaurl", ["'notaurl'", "absolute http:// URL"]),
        ("", ["''", "absolute http:// URL"]),
        ("https://127.0.0.1:8791", ["absolute http:// URL"]),
        ("http://:8791", ["absolute http:// URL with a host"]),
        ("http://[::1", ["Invalid IPv6 URL"]),
        ("http://127.0.0.1:99999", ["Port out of range"]),
        ("http://127.0.0.1:x", ["not a URL"]),
        ("http://127.0.0.1:0", ["port 0"]),
        ("http://127.0.0.1:8791/pki", ["without user, path"]),
        ("http://127.0.0.1:8791\n", ["control characters"]),
    ],
)
def test_pki_init_refuses_a_bad_base_url(tmp_path: Path, url: str, words: list[str]) -> None:
    result = CliRunner().invoke(pki_group, ["init", str(tmp_path / "p"), "--base-url", url])
    one_line_error(result, 2, "--base-url", *words)
    assert not (tmp_path / "p").exists()


# ---- 3. sign: an OUT that cannot be written ---------------------------------------------------
@pytest.mark.parametrize("kind", ["xml", "pdf"])
def test_sign_refuses_an_unwritable_out(pki: TestPKI, tmp_path: Path, kind: str) -> None:
    infile = tmp_path / f"in.{kind}"
    infile.write_bytes(SAMPLE_XML if kind == "xml" else sample_pdf())
    key = str(pki.key_path("gateway"))
    runner = CliRunner()
    missing = tmp_path / "nowhere" / f"o.{kind}"
    result = runner.invoke(sign, [kind, str(infile), str(missing), "--key", key])
    one_line_error(result, 2, f"cannot write {missing}", "does not exist")
    result = runner.invoke(sign, [kind, str(infile), str(tmp_path), "--key", key])
    one_line_error(result, 2, f"cannot write {tmp_path}", "folder")
    result = runner.invoke(sign, [kind, str(infile), "", "--key", key])
    one_line_error(result, 2, "OUT is empty")
    out = tmp_path / f"out.{kind}"
    result = runner.invoke(sign, [kind, str(infile), str(out), "--key", key])
    assert result.exit_code == 0 and out.stat().st_size > infile.stat().st_size


def test_sign_reports_a_failed_write(
    pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    (tmp_path / "o.xml").write_bytes(b"an earlier, good OUT")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = CliRunner().invoke(
        sign,
        [
            "xml",
            str(tmp_path / "in.xml"),
            str(tmp_path / "o.xml"),
            "--key",
            str(pki.key_path("gateway")),
        ],
    )
    one_line_error(result, 2, "cannot write", "o.xml", "No space left on device")
    # Neither half a signed document nor the earlier OUT cut short.
    assert (tmp_path / "o.xml").read_bytes() == b"an earlier, good OUT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xml", "o.xml"]


def test_sign_interrupted_while_writing_leaves_no_part(
    pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between the ``.OUT.part`` being opened and its rename: the earlier OUT as it was,
    and no ``.o.xml.part`` beside it (only an OSError removed it)."""
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    (tmp_path / "o.xml").write_bytes(b"an earlier, good OUT")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    result = CliRunner().invoke(
        sign,
        [
            "xml",
            str(tmp_path / "in.xml"),
            str(tmp_path / "o.xml"),
            "--key",
            str(pki.key_path("gateway")),
        ],
    )
    assert result.exit_code == 1  # CliRunner: click's Abort; lienthong's own exit is 130
    assert (tmp_path / "o.xml").read_bytes() == b"an earlier, good OUT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xml", "o.xml"]


def test_a_file_name_in_bytes_that_are_not_utf8_is_shown_escaped(
    pki: TestPKI, tmp_path: Path
) -> None:
    """Found by probing: ``sign xml $'\\xff.xml' …`` said ``error: \\udcff.xml …``, Python's
    surrogate for the byte, where ``docs`` shows it as ``\\xff``."""
    name = os.fsdecode(b"\xff.xml")  # the str Python makes of that file name: '\udcff.xml'
    (tmp_path / name).write_bytes(b"<a/>")
    result = CliRunner().invoke(
        sign,
        [
            "pdf",
            str(tmp_path / name),
            str(tmp_path / "o.pdf"),
            "--key",
            str(pki.key_path("gateway")),
        ],
    )
    line = one_line_error(result, 2, "\\xff.xml is not a PDF")
    assert "udcff" not in line


# ---- 7. input that is not an XML / PDF document at all ----------------------------------------
@pytest.mark.parametrize(
    ("kind", "content", "words"),
    [
        ("xml", b"", ["is not well-formed XML", "Document is empty"]),
        ("xml", os.urandom(300).replace(b"<", b"x"), ["is not well-formed XML"]),
        ("xml", b"<a><b></a>", ["is not well-formed XML", "mismatch"]),
        ("xml", b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', ["has a DOCTYPE, refused"]),
        ("xml", b"\xff\xfe\x00", ["is not well-formed XML"]),
        ("pdf", b"", ["is not a PDF"]),
        ("pdf", SAMPLE_XML, ["is not a PDF"]),
        ("pdf", b"%PDF-1.4\nbroken", ["is not a readable PDF"]),
    ],
)
def test_verify_and_sign_refuse_what_is_not_a_document(
    pki: TestPKI, tmp_path: Path, kind: str, content: bytes, words: list[str]
) -> None:
    infile = tmp_path / f"in.{kind}"
    infile.write_bytes(content)
    result = CliRunner().invoke(verify, [kind, str(infile), "--trust", str(pki.root_pem)])
    one_line_error(result, 2, str(infile), *words)
    out = tmp_path / f"out.{kind}"
    result = CliRunner().invoke(
        sign, [kind, str(infile), str(out), "--key", str(pki.key_path("gateway"))]
    )
    one_line_error(result, 2, str(infile), *words)
    assert not out.exists()


def test_verify_still_reports_an_unsigned_or_tampered_document_as_invalid(
    pki: TestPKI, tmp_path: Path
) -> None:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    runner = CliRunner()
    result = runner.invoke(verify, ["xml", str(tmp_path / "in.xml"), "--trust", str(pki.root_pem)])
    assert result.exit_code == 1 and "INVALID" in result.stdout and result.stderr == ""
    key = str(pki.key_path("gateway"))
    signed = tmp_path / "signed.xml"
    assert (
        runner.invoke(sign, ["xml", str(tmp_path / "in.xml"), str(signed), "--key", key]).exit_code
        == 0
    )
    text = signed.read_bytes()
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(text.replace("Nguyễn Thị Lan".encode(), "Nguyễn Thị Lâm".encode()))
    result = runner.invoke(verify, ["xml", str(tampered), "--trust", str(pki.root_pem)])
    assert result.exit_code == 1 and "INVALID" in result.stdout and result.stderr == ""


# ---- 8. --tsa (and --trust) without the level that uses them ----------------------------------
@pytest.mark.parametrize(
    ("kind", "level", "words"),
    [
        ("xml", None, ["--tsa needs --level B-T", "XMLDSig"]),
        ("xml", "B-B", ["--tsa needs --level B-T", "B-B"]),
        ("pdf", None, ["--tsa needs --level B-T or B-LT", "B-B"]),
    ],
)
def test_sign_refuses_a_tsa_it_would_ignore(
    pki: TestPKI, tmp_path: Path, kind: str, level: str | None, words: list[str]
) -> None:
    infile = tmp_path / f"in.{kind}"
    infile.write_bytes(SAMPLE_XML if kind == "xml" else sample_pdf())
    out = tmp_path / f"out.{kind}"
    args = [kind, str(infile), str(out), "--key", str(pki.key_path("gateway"))]
    args += ["--tsa", "http://127.0.0.1:9/"] + (["--level", level] if level else [])
    one_line_error(CliRunner().invoke(sign, args), 2, *words)
    assert not out.exists()


@pytest.mark.parametrize(("kind", "level"), [("xml", "B-T"), ("pdf", "B-T"), ("pdf", "B-LT")])
def test_sign_refuses_a_timestamped_level_without_tsa(
    pki: TestPKI, tmp_path: Path, kind: str, level: str
) -> None:
    infile = tmp_path / f"in.{kind}"
    infile.write_bytes(SAMPLE_XML if kind == "xml" else sample_pdf())
    args = [kind, str(infile), str(tmp_path / "o"), "--key", str(pki.key_path("gateway"))]
    result = CliRunner().invoke(sign, [*args, "--level", level])
    one_line_error(result, 2, f"--level {level} needs --tsa URL")


@pytest.mark.parametrize(
    ("kind", "level", "refusal"),
    [
        ("xml", "B-LT", "XML signatures support XMLDSig, B-B and B-T"),
        ("pdf", "XMLDSig", "PDF signatures support B-B, B-T and B-LT"),
    ],
)
def test_sign_help_says_which_level_a_kind_refuses(
    pki: TestPKI, tmp_path: Path, kind: str, level: str, refusal: str
) -> None:
    """Found by probing: ``sign --help`` offered ``--level B-LT`` to XML too, which refuses it."""
    infile = tmp_path / f"in.{kind}"
    infile.write_bytes(SAMPLE_XML if kind == "xml" else sample_pdf())
    args = [kind, str(infile), str(tmp_path / "o"), "--key", str(pki.key_path("gateway"))]
    one_line_error(CliRunner().invoke(sign, [*args, "--level", level]), 2, refusal)
    shown = " ".join(CliRunner().invoke(sign, ["--help"]).output.split())
    [said] = [part for part in shown.split(";") if f" {kind.upper()}: " in f" {part}"]
    assert f"(not {level})" in said, shown


def test_sign_refuses_trust_without_b_lt(pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "in.pdf").write_bytes(sample_pdf())
    args = ["pdf", str(tmp_path / "in.pdf"), str(tmp_path / "o.pdf")]
    args += ["--key", str(pki.key_path("gateway")), "--trust", str(pki.root_pem)]
    one_line_error(CliRunner().invoke(sign, args), 2, "--trust needs --level B-LT")


def test_sign_b_t_with_a_running_tsa_still_works(pki: TestPKI, tmp_path: Path) -> None:
    with _cli("tsa", "serve", "--pki", str(pki.directory), "--port", "0") as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("TSA at http://127.0.0.1:"), line
        url = line.split()[-1]
        (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
        out = tmp_path / "o.xml"
        args = ["xml", str(tmp_path / "in.xml"), str(out), "--key", str(pki.key_path("gateway"))]
        result = CliRunner().invoke(sign, [*args, "--level", "B-T", "--tsa", url])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(
            verify, ["xml", str(out), "--trust", str(pki.root_pem), "--revocation", "off"]
        )
        assert result.exit_code == 0 and "XAdES-B-T" in result.stdout, result.stdout
        assert _interrupted(process) == (0, "")


# ---- 4. tsa serve: port range, addresses it cannot listen on ----------------------------------
@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_tsa_serve_refuses_a_port_out_of_range(pki: TestPKI, port: str) -> None:
    result = CliRunner().invoke(tsa, ["serve", "--pki", str(pki.directory), "--port", port])
    usage_error(result, "--port", port, "0<=x<=65535")


def test_tsa_serve_cannot_listen(pki: TestPKI, held_port: int) -> None:
    runner = CliRunner()
    pki_dir = str(pki.directory)
    result = runner.invoke(tsa, ["serve", "--pki", pki_dir, "--port", str(held_port)])
    # Exit 1, as serve and sandbox serve: a runtime failure, not bad input (2 for those).
    one_line_error(result, 1, f"cannot listen on 127.0.0.1:{held_port}", "address already in use")
    result = runner.invoke(tsa, ["serve", "--pki", pki_dir, "--host", "nosuch.invalid"])
    one_line_error(result, 1, "cannot listen on nosuch.invalid", "unknown host")
    result = runner.invoke(tsa, ["serve", "--pki", pki_dir, "--host", "192.0.2.1"])  # TEST-NET-1
    one_line_error(result, 1, "cannot listen on 192.0.2.1:8792", "address not available")
    one_line_error(runner.invoke(tsa, ["serve", "--pki", str(pki.directory / "nope")]), 2, "nope")


def test_tsa_serve_in_use_in_a_real_process(pki: TestPKI, held_port: int) -> None:
    with _cli("tsa", "serve", "--pki", str(pki.directory), "--port", str(held_port)) as process:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and out == ""
    assert err == f"error: cannot listen on 127.0.0.1:{held_port}: address already in use\n"


# ---- 4, 5. pki serve: what is not a PKI, a bad base URL, a port in use ------------------------
def test_pki_serve_refuses_what_is_not_a_pki(tmp_path: Path) -> None:
    runner = CliRunner()
    one_line_error(runner.invoke(pki_group, ["serve", str(tmp_path / "nonexist")]), 2,
                   "nonexist is not a test PKI")  # fmt: skip
    one_line_error(runner.invoke(pki_group, ["serve", ""]), 2, "DIRECTORY is empty")
    (tmp_path / "index.json").write_text("[]")
    one_line_error(runner.invoke(pki_group, ["serve", str(tmp_path)]), 2, "is not a test PKI")
    (tmp_path / "index.json").write_text('{"base_url": "http://127.0.0.1:9", "subjects": {}}')
    one_line_error(
        runner.invoke(pki_group, ["serve", str(tmp_path)]), 2, "is not a usable test PKI"
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1", ["unusable base URL", "Invalid IPv6 URL"]),
        ("notaurl", ["unusable base URL", "absolute http:// URL"]),
        ("http://127.0.0.1:70000", ["unusable base URL", "Port out of range"]),
    ],
)
def test_pki_serve_refuses_a_bad_base_url(
    pki: TestPKI, tmp_path: Path, url: str, words: list[str]
) -> None:
    made = _copy_pki(pki, tmp_path / "p", url)
    one_line_error(CliRunner().invoke(pki_group, ["serve", str(made)]), 2, *words)


def test_pki_serve_port_in_use(pki: TestPKI, tmp_path: Path, held_port: int) -> None:
    made = _copy_pki(pki, tmp_path / "p", f"http://127.0.0.1:{held_port}")
    result = CliRunner().invoke(pki_group, ["serve", str(made)])
    one_line_error(result, 1, f"cannot listen on 127.0.0.1:{held_port}", "address already in use")


def test_pki_serve_still_serves(pki: TestPKI, tmp_path: Path) -> None:
    port = free_port()
    made = _copy_pki(pki, tmp_path / "p", f"http://127.0.0.1:{port}")
    with _cli("pki", "serve", str(made)) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == f"CRLs and OCSP at http://127.0.0.1:{port}\n"
        assert _interrupted(process) == (0, "")
