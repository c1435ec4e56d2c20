"""No error quotes a URL's password: not the settings' own refusals (store, callback_urls,
registries, TSAs, agencies), not libpq's, which quote the URL they could not parse or the one
token of it they could not decode. Before, ``postgresql://u:HUNTER2pw@[::1/db`` was printed
whole, ``…u:HUNTER%zzpw@…`` printed ``"HUNTER%zzpw"``, and a ``callback_urls`` entry with a user
was printed with its password."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import (
    SettingsError,
    settings_from_mapping,
    url_without_password,
    without_url_secrets,
)
from gateway.store import PostgresStore, StoreError

SUB = {
    "id": "VN:GOV:000.00.00.H41:motcua",
    "token": "token-0123456789",
    "rights": ["dossiers.submit"],
}

STORE_URLS = [
    "postgresql://u:HUNTER2pw@[::1/db",  # an IPv6 host left open: libpq quotes the whole URL
    "postgresql://u:HUNTER%zzpw@127.0.0.1/db",  # libpq quotes the token it cannot decode
    "postgres://u:HUNTER2pw@127.0.0.1/db?password=HUNTER2pw&nosuch=1",
    "postgresql://u@127.0.0.1/db?password=HUNTER%zzpw",
]


def _refusal(data: dict[str, object], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as refused:
        settings_from_mapping(data, environ=environ or {})
    return str(refused.value)


@pytest.mark.parametrize("url", STORE_URLS)
def test_a_store_url_libpq_cannot_read_is_refused_at_load_without_its_password(url: str) -> None:
    for message in (
        _refusal({}, {"LIENTHONG_STORE_URL": url}),
        _refusal({"store": {"url": url}}),
    ):
        assert message.startswith("store.url: not a PostgreSQL URL libpq can read"), message
        assert "HUNTER" not in message and "\n" not in message


@pytest.mark.parametrize("url", STORE_URLS)
async def test_the_postgresql_store_never_quotes_its_password(url: str) -> None:
    """Opened directly (not through the settings): what psycopg and libpq say is cleaned too."""
    with pytest.raises(StoreError) as refused:
        await PostgresStore(url, connect_timeout=2).open()
    assert "HUNTER" not in str(refused.value), refused.value
    assert "could not open" in str(refused.value)


def test_outbox_list_with_a_bad_store_url_in_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text("[sandbox]\nembedded = true\n", "utf-8")
    for url in STORE_URLS[:2]:
        result = CliRunner().invoke(
            main, ["outbox", "list", "--config", str(config)], env={"LIENTHONG_STORE_URL": url}
        )
        assert result.exit_code == 1, result.output
        assert "HUNTER" not in result.output
        assert result.stderr.count("\n") == 1 and "store.url" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:SuperSecretPw@cb.example/x",
        "https://bob:SuperSecretPw@[::1/x",  # a URL urllib cannot parse either
        "https://bob:Super%zzSecretPw@cb.example/x",
    ],
)
def test_a_callback_url_with_a_password_is_refused_without_it(url: str) -> None:
    message = _refusal({"subsystems": [{**SUB, "callback_secret": "s", "callback_urls": [url]}]})
    assert message.startswith("subsystems[0].callback_urls[0]: "), message
    assert "SuperSecret" not in message and "bob:***@" in message, message


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"registries": {"insurance": {"url": "https://u:SuperSecretPw@[::1/x"}}}, "registries."),
        ({"signing": {"tsa_url": "ftp://u:SuperSecretPw@tsa.example/"}}, "signing.tsa_url"),
        ({"audit": {"tsa_url": "https://u:SuperSecretPw@tsa example/"}}, "audit.tsa_url"),
        ({"agencies": [{"id": "000.00.11.H53", "endpoint": "https://u:SuperSecretPw@[x"}]}, "ag"),
        # Found by probing: a TSA takes its key in the query as often (?token=), and a running
        # gateway hides every query value of its TSA URL; the refusal at load showed them.
        ({"signing": {"tsa_url": "ftp://tsa/?token=SuperSecret"}}, "signing.tsa_url"),
        ({"audit": {"tsa_url": "http://tsa:bad/?k=1&token=SuperSecret"}}, "audit.tsa_url"),
    ],
)
def test_other_urls_are_refused_without_their_password(data: dict[str, object], where: str) -> None:
    message = _refusal(data)
    assert message.startswith(where) and "SuperSecret" not in message, message
    if "token=" in message:
        assert "token=***" in message, message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bob:pw@h/x", "https://bob:***@h/x"),
        ("https://bob@h:443/x", "https://bob@h:443/x"),
        ("https://h:443/x?a=1", "https://h:443/x?a=1"),
        ("postgresql://u:p@w@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://h/db?password=p&x=1", "postgresql://h/db?password=***&x=1"),
    ],
)
def test_url_without_password(url: str, shown: str) -> None:
    assert url_without_password(url) == shown


def test_without_url_secrets_hides_the_password_however_it_is_quoted() -> None:
    url = "postgresql://u:p%41ss@h/db"
    assert without_url_secrets(f'bad "{url}" token "p%41ss" or pAss', url) == (
        'bad "postgresql://u:***@h/db" token "***" or ***'
    )
