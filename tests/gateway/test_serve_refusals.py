"""``lienthong serve``: what it cannot start with is one line, never a traceback, naming what is
wrong and leaving what it was given as it was; and the URL of its listen address (IPv6 in
brackets)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main


def _config(
    tmp_path: Path, gateway: str = "", sections: str = "", *, store: str = "sqlite:///gw.db"
) -> Path:
    path = tmp_path / "lienthong.toml"
    path.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
{gateway}
[store]
url = "{store}"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "token-0123456789"
rights = ["lookups.citizen"]

[sandbox]
embedded = true
{sections}
""",
        "utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("gateway", "sections", "message"),
    [
        ('tls_cert = "missing.pem"\ntls_key = "missing.key"', "", "[gateway] tls_cert "),
        ('tls_cert = "junk.pem"\ntls_key = "junk.pem"', "", "[gateway] tls_cert "),
        ("", '[documents]\nblob_dir = "file/blobs"', "cannot start: cannot create blob directory"),
    ],
    ids=["missing-tls-files", "junk-tls-files", "blob-dir-under-a-file"],
)
def test_serve_refuses_in_one_line(
    tmp_path: Path, gateway: str, sections: str, message: str
) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    (tmp_path / "file").write_text("a file, not a folder")
    config = _config(tmp_path, gateway, sections)
    assert message in _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))


def _one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        (":8080", "http://127.0.0.1:8080"),
        ("::1:8080", "http://[::1]:8080"),
        ("gw.tinh.gov.vn:443", "http://gw.tinh.gov.vn:443"),
    ],
)
def test_the_url_of_a_listen_address(listen: str, url: str) -> None:
    from gateway.app import base_url_of

    assert base_url_of(listen) == url


def test_serve_refuses_another_applications_sqlite_database(tmp_path: Path) -> None:
    crm = tmp_path / "crm.db"
    conn = sqlite3.connect(crm)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = crm.read_bytes()
    config = _config(tmp_path, store="sqlite:///crm.db")
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert error.startswith(f"Error: store: {crm} is not a lienthong store"), error
    assert crm.read_bytes() == before
    assert not (tmp_path / "crm.db-wal").exists()
    # Found by probing: the sandboxes' test PKI (CA private keys) was made beside the config
    # before the store was opened and refused.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db", "lienthong.toml"]


def test_a_blob_folder_serve_refuses_leaves_no_test_pki(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    config = _config(tmp_path, sections='[documents]\nblob_dir = "file/blobs"')
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert error.startswith("Error: cannot start: cannot create blob directory"), error
    assert not (tmp_path / "pki").exists()


def test_serve_refuses_a_bad_key_before_it_makes_a_store_or_a_test_pki(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    config = _config(tmp_path, sections='[signing]\nkey = "junk.pem"\ntrust = ["junk.pem"]')
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert error.startswith("Error: [signing]: "), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pem", "lienthong.toml"]


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("127.0.0.1:{held}", "Address already in use"),
        ("10.255.255.1:18083", "Cannot assign requested address"),  # not this machine's
        ("no.such.host.invalid:18083", "the host 'no.such.host.invalid' does not resolve"),
    ],
    ids=["port-in-use", "not-this-machine", "no-such-host"],
)
def test_serve_names_gateway_listen_when_it_cannot_listen(
    tmp_path: Path, held_port: int, listen: str, reason: str
) -> None:
    listen = listen.format(held=held_port)
    config = _config(tmp_path)
    args = ["serve", "--config", str(config)]
    error = _one_error(CliRunner().invoke(main, args, env={"LIENTHONG_GATEWAY_LISTEN": listen}))
    assert error.startswith(f"Error: gateway.listen: cannot listen on {listen!r}: "), error
    assert reason in error, error
    assert not (tmp_path / "gw.db").exists()  # refused before anything started


@pytest.mark.parametrize(
    "origin",
    ["", "lienthong.local/audit\\nforged line", "lienthong local/audit", "tab\\there", "a+b"],
    ids=["empty", "newline", "space", "tab", "plus"],
)
def test_an_origin_no_checkpoint_note_can_carry_is_refused_at_load(
    tmp_path: Path, origin: str
) -> None:
    """It was accepted, and `serve` died with a 56-line traceback once the checkpointer met it."""
    config = _config(tmp_path, sections=f'[audit]\norigin = "{origin}"')
    for command in (["serve"], ["audit", "verify"]):
        error = _one_error(CliRunner().invoke(main, [*command, "--config", str(config)]))
        assert error.startswith(f"Error: {config}: audit.origin: must be a name without"), error
    assert not (tmp_path / "gw.db").exists() and not (tmp_path / "pki").exists()


def test_a_checkpoint_error_at_start_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.cli
    from gateway.audit.checkpoints import CheckpointError

    def altered(*_: object, **__: object) -> None:
        raise CheckpointError("audit log does not match checkpoint 20: altered entries")

    monkeypatch.setattr(gateway.cli, "build_app", altered)
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(_config(tmp_path))]))
    assert error == "Error: cannot start: audit log does not match checkpoint 20: altered entries"


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (None, "{pki} is not a folder"),
        ("{}", "{pki} is not a test PKI (index.json has no base_url)"),
        (
            '{"base_url": "http://127.0.0.1:1"}',
            "{pki} is not a test PKI (index.json has no subjects)",
        ),
        ("{", "{pki} is not a test PKI (index.json is not JSON: "),
        ("", "{pki} is not a test PKI (no index.json)"),
    ],
    ids=["a-file", "no-base-url", "no-subjects", "malformed", "missing"],
)
def test_a_sandbox_pki_that_is_no_test_pki_is_named_with_the_reason(
    tmp_path: Path, index: str | None, reason: str
) -> None:
    """It was a KeyError traceback (no base_url), 'no index.json' for a malformed one, and
    '[Errno 20] Not a directory' after a log line claiming to create a PKI in a file."""
    pki = tmp_path / "devpki"
    if index is None:
        pki.write_text("a file, not a folder")
    else:
        pki.mkdir()
        (pki / "root.pem").write_text("")  # a PKI made before: it is loaded, not made anew
        if index:
            (pki / "index.json").write_text(index)
    config = _config(tmp_path, sections='pki = "devpki"')
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    error = _one_error(result)
    assert error.startswith(f"Error: [sandbox] pki: {reason.format(pki=pki)}"), error
    assert "creating a test PKI" not in result.output


def test_serve_refuses_a_fingerprint_only_subsystem_it_could_never_identify(
    tmp_path: Path,
) -> None:
    subsystem = (
        f'[[subsystems]]\nid = "VN:GOV:000.00.00.H41:vanhanh"\ncert_fingerprint = "{"ab" * 32}"'
    )
    config = _config(tmp_path, sections=subsystem)
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert error.startswith(
        f"Error: {config}: subsystem VN:GOV:000.00.00.H41:vanhanh: its only credential,"
        " cert_fingerprint, needs gateway.client_ca"
    ), error
    assert not (tmp_path / "gw.db").exists()


def test_serve_refuses_faults_for_a_registry_it_does_not_sandbox(tmp_path: Path) -> None:
    sections = (
        "[sandbox.faults.business]\nerror_rate = 1.0\n"
        '[registries.business]\nurl = "http://127.0.0.1:1/api"\napi_key = "k"\n'
    )
    config = _config(tmp_path, sections=sections)
    error = _one_error(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert error == (
        f"Error: {config}: sandbox.faults.business: the business registry has a url: there is"
        " no sandbox to inject faults into"
    )


def test_a_sandbox_pki_folder_holding_other_files_is_refused_never_written_over(
    tmp_path: Path,
) -> None:
    """Found by probing: a folder with no root.pem was taken for a new one, and a test PKI was
    written over what it held (the operator's gateway.key.pem, index.json). As `pki init`, a
    PKI is made only in a new or empty folder."""
    pki = tmp_path / "keys"
    pki.mkdir()
    (pki / "gateway.key.pem").write_text("MY REAL KEY")
    config = _config(tmp_path, sections='pki = "keys"')
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert _one_error(result) == f"Error: [sandbox] pki: {pki} is not a test PKI (no index.json)"
    assert [p.name for p in pki.iterdir()] == ["gateway.key.pem"]
    assert (pki / "gateway.key.pem").read_text() == "MY REAL KEY"
