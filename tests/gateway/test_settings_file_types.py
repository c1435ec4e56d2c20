"""What the tester found accepted in the file, now refused with one line naming the key:

- a value of the wrong TOML type (``workers = "32"``, ``rights = "admin"``): a string was converted
  wherever it was written; only the environment's values, text by nature, still are;
- a subsystem's (or an agency's) token that no Authorization header can carry (a newline, NUL,
  a space inside it, a letter outside ASCII);
- an agency id that is not one (``[[agencies]] id``, ``[documents] organ_id``), and an agency
  listed twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import SettingsError, settings_from_mapping

SUB = {
    "id": "VN:GOV:000.00.00.H41:motcua",
    "token": "token-0123456789",
    "rights": ["dossiers.submit"],
}


def _refused(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as refused:
        settings_from_mapping(data, environ=environ or {})
    message = str(refused.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("data", "where", "expected"),
    [
        ({"outbox": {"workers": "32"}}, "outbox.workers", "expected an integer, got '32'"),
        ({"outbox": {"poll_s": "0.25"}}, "outbox.poll_s", "expected a number, got '0.25'"),
        ({"sandbox": {"embedded": "true"}}, "sandbox.embedded", "expected true or false"),
        (
            {"registries": {"portal": {"sign_requests": "no"}}},
            "registries.portal.sign_requests",
            "expected true or false",
        ),
        ({"subsystems": [{**SUB, "rights": "admin"}]}, "subsystems[0].rights", "expected a list"),
        ({"signing": {"trust": "root.pem"}}, "signing.trust", "expected a list"),
        ({"signing": {"revocation": 1}}, "signing.revocation", "is not one of"),
        ({"sandbox": {"pki": 5}}, "sandbox.pki", "expected a string"),
    ],
)
def test_a_value_of_the_wrong_type_in_the_file_is_refused(
    data: dict[str, Any], where: str, expected: str
) -> None:
    message = _refused(data)
    assert message.startswith(f"{where}: ") and expected in message, message


def test_the_environments_text_is_still_converted() -> None:
    settings = settings_from_mapping(
        {},
        environ={
            "LIENTHONG_OUTBOX_WORKERS": "32",
            "LIENTHONG_OUTBOX_POLL_S": "0.25",
            "LIENTHONG_SANDBOX_EMBEDDED": "true",
            "LIENTHONG_REGISTRIES_PORTAL_SIGN_REQUESTS": "no",
            "LIENTHONG_SIGNING_TRUST": "root.pem",
            "LIENTHONG_SIGNING_REVOCATION": "hard-fail",
        },
    )
    assert settings.outbox.workers == 32 and settings.outbox.poll_s == 0.25
    assert settings.sandbox.embedded is True and settings.embedded
    assert settings.registry("portal").sign_requests is False
    assert settings.signing.trust == ("root.pem",)
    assert settings.signing.revocation == "hard-fail"
    assert type(settings.signing.revocation) is str and type(settings.signing.trust[0]) is str


@pytest.mark.parametrize(
    "token",
    ["abc\ndef", "abc\x00def", "abc def", "abc\tdef", "mật-khẩu", "abc\x7f"],
    ids=["newline", "nul", "space", "tab", "non-ascii", "del"],
)
def test_a_token_no_authorization_header_can_carry_is_refused(token: str) -> None:
    message = _refused({"subsystems": [{**SUB, "token": token}]})
    assert message.startswith("subsystem VN:GOV:000.00.00.H41:motcua: token must be visible ASCII")
    assert token not in message  # a secret: never shown
    message = _refused({"agencies": [{"id": "000.00.11.H53", "token": token}]})
    assert message.startswith("agency 000.00.11.H53: token must be visible ASCII"), message


def test_tokens_of_visible_ascii_load() -> None:
    token = "Zx9-._~+/=!#$%&'*^`|" + "A" * 40
    settings = settings_from_mapping({"subsystems": [{**SUB, "token": token}]}, environ={})
    assert settings.subsystems[0].token == token


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"agencies": [{"id": "garbage id!"}]},
            "agencies[0].id: invalid agency id 'garbage id!': must look like 000.00.00.H41",
        ),
        (
            {
                "agencies": [
                    {"id": "000.00.11.H53"},
                    {"id": "000.00.00.H41"},
                    {"id": "000.00.11.H53"},
                ]
            },
            "agency 000.00.11.H53: listed twice in [[agencies]]",
        ),
        (
            {"documents": {"organ_id": "not an id"}},
            "documents.organ_id: invalid agency id 'not an id'",
        ),
    ],
    ids=["bad-agency-id", "agency-twice", "bad-organ-id"],
)
def test_agency_ids_are_checked(data: dict[str, Any], expected: str) -> None:
    assert _refused(data).startswith(expected)


def test_good_agency_ids_load() -> None:
    settings = settings_from_mapping(
        {
            "agencies": [{"id": "000.00.11.H53"}, {"id": "000.00.00.H41", "token": "tok"}],
            "documents": {"organ_id": "000.00.00.H41"},
        },
        environ={},
    )
    assert [a.id for a in settings.agencies] == ["000.00.11.H53", "000.00.00.H41"]
    assert settings.documents.organ_id == "000.00.00.H41"
