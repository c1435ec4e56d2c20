"""A configuration file saved with a UTF-8 byte order mark (Windows Notepad) is read as without it.
Found by probing: it was refused as 'not valid TOML: Invalid statement (at line 1, column 1)',
with nothing pointing at the invisible mark."""

from __future__ import annotations

import codecs
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import load_settings


def test_a_config_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_bytes(codecs.BOM_UTF8 + b'[gateway]\nlisten = "127.0.0.1:8443"\n')
    assert load_settings(config, environ={}).gateway.listen == "127.0.0.1:8443"


def test_a_byte_order_mark_inside_the_file_is_still_refused(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_bytes(b"[gateway]\n" + codecs.BOM_UTF8 + b'listen = "127.0.0.1:8443"\n')
    result = CliRunner().invoke(main, ["outbox", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {config}: not valid TOML: ")
