"""``lienthong serve``: what it cannot start with is one line, never a traceback; and the URL of
its listen address (IPv6 in brackets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main


def _config(tmp_path: Path, gateway: str, sections: str) -> Path:
    path = tmp_path / "lienthong.toml"
    path.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
{gateway}
[store]
url = "sqlite:///gw.db"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "t"
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
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output


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
