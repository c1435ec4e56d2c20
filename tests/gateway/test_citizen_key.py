"""``[audit] citizen_id_key``: the HMAC key under which personal ids are searchable in the audit log.

The embedded default may use a fixed development key (the demo and the tests need no set-up). A
gateway in front of real registries must be given its own: with the development key anyone holding
the source could test guesses of personal ids against the log, so `lienthong serve` refuses to start
without one, or with one too short to be a secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.app import RUNTIME
from gateway.audit import citizen_hash
from gateway.cli import build_app, main
from gateway.settings import load_settings

GOOD_KEY = "8f3a" * 16  # 32 bytes
DEV_KEY = b"lienthong-development-citizen-key"


# Every registry at a url of its own, with the credentials each requires.
REAL_REGISTRIES = "".join(
    f'[registries.{name}]\nurl = "https://{name}.example.vn/"\n{credentials}'
    for name, credentials in (
        (
            "population",
            'username = "u"\nsecret = "s"\napi_key = "k"\nofficer_id = "001099012345"\n'
            'service_code = "1.001"\n',
        ),
        ("civil_status", f'signer_fingerprint = "{"ab" * 32}"\n'),
        (
            "insurance",
            'username = "u"\npassword = "p"\nofficer_name = "Lê Văn Tám"\n'
            'officer_id = "001099012345"\n',
        ),
        ("business", 'api_key = "k"\n'),
        ("portal", 'username = "u"\npassword = "p"\n'),
    )
)


def _config(tmp_path: Path, *, embedded: bool | None, key: str | None, body: str = "") -> Path:
    """``embedded`` None: no [sandbox] section (its default)."""
    pki = tmp_path / "no-such-pki"  # never read: the key check comes first
    audit = f'[audit]\ncitizen_id_key = "{key}"\n' if key is not None else ""
    sandbox = "" if embedded is None else f"[sandbox]\nembedded = {str(embedded).lower()}\n"
    text = (
        f'[store]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        f'[signing]\nkey = "{pki / "k.pem"}"\ncert = "{pki / "c.pem"}"\n'
        f"{audit}{sandbox}{body}"
    )
    path = tmp_path / "lienthong.toml"
    path.write_text(text, encoding="utf-8")
    return path


REQUIRED = (
    "audit.citizen_id_key: required unless a registry runs on its embedded sandbox (one without a"
    " url)"
)
NOT_HEX = "audit.citizen_id_key: must be hex (secret: not shown)"
SHORT = "audit.citizen_id_key: must be at least 16 bytes (32 hex digits)"


def _one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, REQUIRED),
        ("not hex", NOT_HEX),
        ("abcd" * 7 + "zz", NOT_HEX),
        ("00" * 15, SHORT),
    ],
)
def test_serve_refuses_a_missing_or_weak_key_in_one_line_naming_the_file(
    tmp_path: Path, key: str | None, message: str
) -> None:
    config = _config(tmp_path, embedded=False, key=key)
    line = _one_line(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert line.startswith(f"Error: {config}: {message}"), line
    assert not (tmp_path / "gw.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("embedded", [None, True])
def test_a_gateway_whose_registries_all_have_urls_needs_its_own_key(
    tmp_path: Path, embedded: bool | None
) -> None:
    """Found by probing: ``[sandbox] embedded`` defaults to true, so a real gateway's config that
    left the section out hashed personal ids under the development key, which is in the
    source, though no sandbox ran (and made a test PKI beside the config)."""
    config = _config(tmp_path, embedded=embedded, key=None, body=REAL_REGISTRIES)
    line = _one_line(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert line.startswith(f"Error: {config}: {REQUIRED}"), line
    assert not (tmp_path / "pki").exists() and not (tmp_path / "gw.db").exists()


def test_without_a_signing_key_such_a_gateway_makes_no_test_pki(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        f'[audit]\ncitizen_id_key = "{GOOD_KEY}"\n{REAL_REGISTRIES}',
        encoding="utf-8",
    )
    line = _one_line(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert line == (
        "Error: [signing] key is required unless a registry runs on its embedded"
        " sandbox (one without a url)"
    ), line
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize("embedded", [True, False])
@pytest.mark.parametrize(
    "command",
    [["outbox", "list"], ["audit", "verify"], ["flows", "resume", "000.00.00.H41-261122-0001"]],
    ids=" ".join,
)
@pytest.mark.parametrize(("key", "message"), [("zz", NOT_HEX), ("00" * 15, SHORT)])
def test_every_command_refuses_a_key_that_is_not_one(
    tmp_path: Path, command: list[str], embedded: bool, key: str, message: str
) -> None:
    """It was checked only as the gateway's app was built: the other commands took it, and
    `serve` named neither the file nor the key as a load error does."""
    config = _config(tmp_path, embedded=embedded, key=key)
    line = _one_line(CliRunner().invoke(main, [*command, "--config", str(config)]))
    assert line == f"Error: {config}: {message}"


def test_a_search_by_citizen_needs_the_key_of_a_non_embedded_gateway(tmp_path: Path) -> None:
    """It hashed the id with the development key, which no such gateway's log uses, and so
    answered "no event matches"."""
    config = _config(tmp_path, embedded=False, key=None)
    result = CliRunner().invoke(
        main,
        ["audit", "query", "--config", str(config)],
        env={"LIENTHONG_AUDIT_CITIZEN": "040190012345"},
    )
    assert _one_line(result).startswith(f"Error: {config}: {REQUIRED}")


def test_commands_that_hash_no_id_do_without_the_key(tmp_path: Path) -> None:
    """An auditor verifying a copy of the log need not hold the key: only its absence is fine."""
    config = _config(tmp_path, embedded=False, key=None)
    line = _one_line(CliRunner().invoke(main, ["outbox", "list", "--config", str(config)]))
    assert "citizen_id_key" not in line and "no store at" in line, line


def _key_used(config: Path) -> bytes:
    return build_app(load_settings(config, environ={}))[RUNTIME].citizen_key


def test_a_given_key_is_the_one_used(tmp_path: Path) -> None:
    key = _key_used(_config(tmp_path, embedded=False, key=GOOD_KEY))
    assert key == bytes.fromhex(GOOD_KEY)
    assert citizen_hash(key, "040190012345") != citizen_hash(DEV_KEY, "040190012345")


def test_the_embedded_default_needs_no_key(tmp_path: Path) -> None:
    assert _key_used(_config(tmp_path, embedded=True, key=None)) == DEV_KEY


def test_a_config_giving_some_registries_urls_runs_no_sandbox_unsaid(tmp_path: Path) -> None:
    """Found by probing: four registries at their urls and the business registry forgotten, the
    gateway ran that registry's sandbox, and with it the development citizen key and test PKI,
    without a word. Running sandboxes beside real registries must be asked for."""
    population = REAL_REGISTRIES.split("[registries.civil_status]")[0]
    config = _config(tmp_path, embedded=None, key=GOOD_KEY, body=population)
    line = _one_line(CliRunner().invoke(main, ["serve", "--config", str(config)]))
    assert line == (
        f"Error: {config}: no url for registries civil_status, insurance, business, portal while"
        " the others have one: set it, or [sandbox] embedded = true to run their sandboxes in"
        " the gateway"
    ), line
    assert not (tmp_path / "pki").exists() and not (tmp_path / "gw.db").exists()
    asked = load_settings(_config(tmp_path, embedded=True, key=None, body=population))
    assert asked.sandboxed == ("civil_status", "insurance", "business", "portal")
    assert load_settings(_config(tmp_path, embedded=None, key=None)).sandboxed == (
        "population",
        "civil_status",
        "insurance",
        "business",
        "portal",
    )  # no url at all: the embedded default
