"""``[[subsystems]]``: what makes a subsystem's identity and its callbacks trustworthy."""

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import SettingsError, settings_from_mapping

MOTCUA, VANHANH = "VN:GOV:000.00.00.H41:motcua", "VN:GOV:000.00.00.H41:vanhanh"
FINGERPRINT = "ab" * 32


MTLS = {"tls_cert": "tls/gateway.pem", "client_ca": "tls/clients-ca.pem"}


def _refused(*subsystems: dict[str, Any], gateway: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(
            {"subsystems": list(subsystems), "gateway": gateway or {}}, environ={}
        )
    message = str(info.value)
    assert "\n" not in message
    return message


# --- a token or a certificate identifies one subsystem ---


def test_two_subsystems_with_one_token_are_refused_without_showing_it() -> None:
    message = _refused(
        {"id": MOTCUA, "token": "shared-secret-token", "rights": ["dossiers.submit"]},
        {"id": VANHANH, "token": "shared-secret-token", "rights": ["admin"]},
    )
    assert message == (
        f"subsystems {MOTCUA} and {VANHANH} have the same token: each must identify one subsystem"
    )
    assert "shared-secret-token" not in message


@pytest.mark.parametrize(
    "spelling",
    [FINGERPRINT, FINGERPRINT.upper(), ":".join(["AB"] * 32), ":".join(["ab"] * 32)],
)
def test_two_spellings_of_one_fingerprint_are_refused(spelling: str) -> None:
    message = _refused(
        {"id": MOTCUA, "cert_fingerprint": FINGERPRINT},
        {"id": VANHANH, "cert_fingerprint": spelling, "rights": ["admin"]},
        gateway=MTLS,
    )
    assert message == (
        f"subsystems {MOTCUA} and {VANHANH} have the same cert_fingerprint:"
        " each must identify one subsystem"
    )


def test_distinct_tokens_and_fingerprints_load() -> None:
    settings = settings_from_mapping(
        {
            "subsystems": [
                {"id": MOTCUA, "token": "token-1-0123456789", "cert_fingerprint": FINGERPRINT},
                {"id": VANHANH, "token": "token-2-0123456789", "cert_fingerprint": "cd" * 32},
                {"id": "VN:GOV:000.00.00.H41:kiemtoan", "token": "token-3-0123456789"},
            ]
        },
        environ={},
    )
    assert [s.token for s in settings.subsystems] == [
        "token-1-0123456789",
        "token-2-0123456789",
        "token-3-0123456789",
    ]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"token": " t-1"}, "token has blanks around it"),
        ({"token": "t-1\n"}, "token has blanks around it"),
        ({"cert_fingerprint": "ab" * 31}, "cert_fingerprint is not a SHA-256"),
        ({"cert_fingerprint": "zz" * 32}, "cert_fingerprint is not a SHA-256"),
        ({"cert_fingerprint": "sha256:" + "ab" * 32}, "cert_fingerprint is not a SHA-256"),
    ],
)
def test_a_token_or_fingerprint_that_could_never_match_is_refused(
    given: dict[str, str], said: str
) -> None:
    # The gateway reads a bearer token without the blanks around it and compares fingerprints as
    # SHA-256 hex: such a subsystem could never be identified, and nothing would say why.
    message = _refused({"id": MOTCUA, **given})
    assert message.startswith(f"subsystem {MOTCUA}: {said}")
    assert "t-1" not in message


@pytest.mark.parametrize(
    "gateway", [{}, {"tls_cert": "tls/gateway.pem"}], ids=["plain-http", "tls-without-client-ca"]
)
def test_a_fingerprint_alone_without_client_ca_is_refused(gateway: dict[str, str]) -> None:
    """The server asks for no client certificate without client_ca: such a subsystem's every
    request was a 401, and the gateway started without a word."""
    message = _refused({"id": VANHANH, "cert_fingerprint": FINGERPRINT}, gateway=gateway)
    assert message == (
        f"subsystem {VANHANH}: its only credential, cert_fingerprint, needs gateway.client_ca"
        " (and tls_cert): without it no client certificate is asked for"
    )


def test_a_fingerprint_loads_with_client_ca_or_beside_a_token() -> None:
    alone = {"id": VANHANH, "cert_fingerprint": FINGERPRINT}
    assert settings_from_mapping({"subsystems": [alone], "gateway": MTLS}, environ={}).subsystems
    beside = {
        **alone,
        "token": "token-1-0123456789",
    }  # the token still identifies it over plain HTTP
    assert settings_from_mapping({"subsystems": [beside]}, environ={}).subsystems


# --- an id names the member's agency: VN:GOV:<agency id>:<subsystem> ---


@pytest.mark.parametrize(
    "subsystem_id",
    [
        "VN:GOV:000.00.00.H41",  # the member, without its subsystem: agency 'GOV' was read
        "VN:GOV:000.00.00.H41:",
        "VN:GOV:GOV:motcua",
        "VN:GOV:000.00.00.h41:motcua",
        "VN:GOV:H41:motcua",
        "VN:GOV:000.00.00.H41:motcua:extra",
        "VN:GOV:000.00.00.H41:a/b",
        "VN:GOV:000.00.00.H41:mot cua",
        "VN:COM:000.00.00.H41:motcua",
        "a:b",
        "motcua",
        "",
    ],
)
def test_an_id_that_is_not_member_and_subsystem_is_refused(subsystem_id: str) -> None:
    message = _refused({"id": subsystem_id, "token": "token-0123456789"})
    assert message.startswith("subsystems[0].id: ")
    assert "VN:GOV:<agency id>:<subsystem>" in message or "invalid agency id" in message


@pytest.mark.parametrize(
    ("subsystem_id", "agency"),
    [
        (MOTCUA, "000.00.00.H41"),
        ("VN:GOV:000.00.11.H53:vanban", "000.00.11.H53"),
        ("VN:GOV:000.00.00.G15:cong-van_2.0", "000.00.00.G15"),
    ],
)
def test_a_member_and_subsystem_id_loads_with_its_agency(subsystem_id: str, agency: str) -> None:
    settings = settings_from_mapping(
        {"subsystems": [{"id": subsystem_id, "token": "token-0123456789"}]}, environ={}
    )
    assert settings.subsystems[0].agency == agency


# --- callbacks go out signed ---


@pytest.mark.parametrize("secret", [None, ""])
def test_callback_urls_without_a_callback_secret_are_refused(secret: str | None) -> None:
    subsystem = {
        "id": MOTCUA,
        "token": "token-0123456789",
        "callback_urls": ["https://motcua.example.vn/cb"],
    }
    if secret is not None:
        subsystem["callback_secret"] = secret
    assert _refused(subsystem) == (
        f"subsystem {MOTCUA}: callback_urls need a callback_secret to sign the callbacks with"
    )


def test_callback_urls_with_a_callback_secret_load_and_a_secret_alone_too() -> None:
    settings = settings_from_mapping(
        {
            "subsystems": [
                {
                    "id": MOTCUA,
                    "token": "token-1-0123456789",
                    "callback_secret": "s" * 16,
                    "callback_urls": ["https://motcua.example.vn/cb"],
                },
                # Gets no callbacks. 12 letters, 18 bytes of UTF-8: bytes are counted.
                {"id": VANHANH, "token": "token-2-0123456789", "callback_secret": "Đặng Đức Anh"},
            ]
        },
        environ={},
    )
    assert settings.subsystems[0].allows_callback("https://motcua.example.vn/cb/1")
    assert settings.subsystems[1].callback_urls == ()


# --- a subsystem may have several certificates: the old and the new while a client renews ---


def test_a_list_of_fingerprints_loads_in_any_spelling() -> None:
    """Found by probing: one cert_fingerprint per subsystem (a list was refused, "expected a
    string"), so a client could not renew its certificate without a lockout: the gateway had to
    be restarted the moment the client switched."""
    subsystem = {"id": VANHANH, "cert_fingerprint": [FINGERPRINT, ":".join(["CD"] * 32)]}
    settings = settings_from_mapping({"subsystems": [subsystem], "gateway": MTLS}, environ={})
    assert settings.subsystems[0].fingerprints == (FINGERPRINT, "cd" * 32)
    one = {"id": VANHANH, "cert_fingerprint": FINGERPRINT.upper()}
    settings = settings_from_mapping({"subsystems": [one], "gateway": MTLS}, environ={})
    assert settings.subsystems[0].fingerprints == (FINGERPRINT,)


def test_a_fingerprint_in_two_subsystems_lists_is_refused() -> None:
    message = _refused(
        {"id": MOTCUA, "cert_fingerprint": ["cd" * 32, FINGERPRINT]},
        {"id": VANHANH, "cert_fingerprint": ["ef" * 32, FINGERPRINT.upper()]},
        gateway=MTLS,
    )
    assert message == (
        f"subsystems {MOTCUA} and {VANHANH} have the same cert_fingerprint:"
        " each must identify one subsystem"
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["cd" * 32, "ab" * 31], f"subsystem {MOTCUA}: cert_fingerprint[1] is not a SHA-256"),
        (["cd" * 32, 7], "subsystems[0].cert_fingerprint[1]: expected a string, got 7"),
        ([], f"subsystem {MOTCUA}: needs a token or a cert_fingerprint"),
    ],
)
def test_a_list_with_a_wrong_fingerprint_is_refused(given: list[Any], said: str) -> None:
    assert _refused({"id": MOTCUA, "cert_fingerprint": given}, gateway=MTLS).startswith(said)


# --- a token must not be guessable ---


@pytest.mark.parametrize("token", ["x", "a" * 15])
def test_a_short_token_is_refused_without_showing_it(token: str) -> None:
    """Found by probing: ``token = "x"`` for a subsystem with the admin right started."""
    message = _refused({"id": VANHANH, "token": token, "rights": ["admin"]})
    assert message == (
        f"subsystem {VANHANH}: token must be at least 16 characters (e.g. openssl rand -hex 16)"
    )


def test_a_token_of_16_characters_loads() -> None:
    subsystem = {"id": VANHANH, "token": "a" * 16, "rights": ["admin"]}
    assert settings_from_mapping({"subsystems": [subsystem]}, environ={}).subsystems


# --- callbacks are signed with a key no one can guess ---


WEAK_SECRET = (
    f"subsystem {MOTCUA}: callback_secret must be at least 16 bytes, not only blanks"
    " (secret: not shown)"
)


@pytest.mark.parametrize(
    "secret",
    [" ", "x", "cb-secret", "s" * 15, "Đặng Đứ", " " * 16, "\t" * 20],
)
@pytest.mark.parametrize("callback_urls", [["https://motcua.example.vn/cb"], []])
def test_a_callback_secret_anyone_could_guess_is_refused(
    secret: str, callback_urls: list[str]
) -> None:
    """Found by probing: one space was taken, and every callback signed with it, so a receiver
    checking X-Lienthong-Signature took forged status pushes; ``[audit] citizen_id_key`` needs
    16 bytes. A secret given is held to it with or without callback_urls, as that key is."""
    subsystem = {"id": MOTCUA, "token": "token-0123456789", "callback_secret": secret}
    message = _refused({**subsystem, "callback_urls": callback_urls})
    assert message == WEAK_SECRET  # the secret is not shown


def test_serve_refuses_a_weak_callback_secret_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        f'[[subsystems]]\nid = "{MOTCUA}"\ntoken = "token-0123456789"\ncallback_secret = " "\n'
        'callback_urls = ["https://motcua.example.vn/cb"]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"Error: {config}: {WEAK_SECRET}"], result.output
    assert not (tmp_path / "gw.db").exists()  # refused before anything was opened
