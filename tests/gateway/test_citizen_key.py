"""``[audit] citizen_id_key``: the HMAC key under which personal ids are searchable in the audit log.

The embedded default may use a fixed development key (the demo and the tests need no set-up). A
gateway in front of real registries must be given its own: with the development key anyone holding
the source could test guesses of personal ids against the log, so `lienthong serve` refuses to start
without one, or with one too short to be a secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.app import RUNTIME
from gateway.audit import citizen_hash
from gateway.cli import build_app, main
from gateway.settings import load_settings

GOOD_KEY = "8f3a" * 16  # 32 bytes
DEV_KEY = b"lienthong-development-citizen-key"


def _config(tmp_path: Path, *, embedded: bool, key: str | None) -> Path:
    pki = tmp_path / "no-such-pki"  # never read: the key check comes first
    audit = f'[audit]\ncitizen_id_key = "{key}"\n' if key is not None else ""
    text = (
        f'[store]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        f'[signing]\nkey = "{pki / "k.pem"}"\ncert = "{pki / "c.pem"}"\n'
        f"{audit}[sandbox]\nembedded = {'true' if embedded else 'false'}\n"
    )
    path = tmp_path / "lienthong.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "[audit] citizen_id_key is required when the sandboxes are not embedded"),
        ("not hex", "[audit] citizen_id_key must be hex"),
        ("00" * 15, "[audit] citizen_id_key must be at least 16 bytes"),
    ],
)
def test_serve_refuses_a_missing_or_weak_key_in_one_line(
    tmp_path: Path, key: str | None, message: str
) -> None:
    config = _config(tmp_path, embedded=False, key=key)
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "gw.db").exists()  # refused before anything was opened


def _key_used(config: Path) -> bytes:
    return build_app(load_settings(config, environ={}))[RUNTIME].citizen_key


def test_a_given_key_is_the_one_used(tmp_path: Path) -> None:
    key = _key_used(_config(tmp_path, embedded=False, key=GOOD_KEY))
    assert key == bytes.fromhex(GOOD_KEY)
    assert citizen_hash(key, "040190012345") != citizen_hash(DEV_KEY, "040190012345")


def test_the_embedded_default_needs_no_key(tmp_path: Path) -> None:
    assert _key_used(_config(tmp_path, embedded=True, key=None)) == DEV_KEY
