"""A refusal never shows the value of a secret key (those declared ``repr=False``: tokens,
passwords, keys), whatever is wrong with it; other keys still show what they got."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import (
    AgencySettings,
    AuditSettings,
    RegistrySettings,
    SettingsError,
    Subsystem,
    settings_from_mapping,
)

MOTCUA = "VN:GOV:000.00.00.H41:motcua"
SECRET = 98765432  # what each mistyped secret is set to; it must appear in no message


def _secret_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.repr]


def test_the_secret_keys_are_the_ones_expected() -> None:
    assert _secret_keys(RegistrySettings) == ["password", "secret", "api_key"]
    assert _secret_keys(Subsystem) == ["token", "callback_secret"]
    assert _secret_keys(AuditSettings) == ["citizen_id_key"]
    assert _secret_keys(AgencySettings) == ["token"]


CASES: list[tuple[str, dict[str, Any]]] = [
    *(
        (f"registries.insurance.{key}", {"registries": {"insurance": {key: SECRET}}})
        for key in _secret_keys(RegistrySettings)
    ),
    *(
        (f"subsystems[0].{key}", {"subsystems": [{"id": MOTCUA, key: SECRET}]})
        for key in _secret_keys(Subsystem)
    ),
    ("audit.citizen_id_key", {"audit": {"citizen_id_key": SECRET}}),
    ("agencies[0].token", {"agencies": [{"id": "000.00.11.H53", "token": SECRET}]}),
    ("subsystems[0].token", {"subsystems": [{"id": MOTCUA, "token": [SECRET, 1]}]}),
    ("audit.citizen_id_key", {"audit": {"citizen_id_key": float(SECRET)}}),
]


@pytest.mark.parametrize(("where", "data"), CASES, ids=[w for w, _ in CASES])
def test_a_mistyped_secret_is_named_and_not_shown(where: str, data: dict[str, Any]) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data, environ={})
    message = str(info.value)
    assert message.startswith(f"{where}: expected a string, got a value of type ")
    assert message.endswith("(secret: not shown)")
    assert str(SECRET) not in message and "\n" not in message


def test_other_keys_still_show_what_they_got() -> None:
    with pytest.raises(SettingsError, match=r"registries\.insurance\.username: .* got 12345"):
        settings_from_mapping({"registries": {"insurance": {"username": 12345}}}, environ={})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[registries.insurance]\nurl = "https://bhxh.example/"\npassword = 98765432\n',
         "registries.insurance.password"),
        (f'[[subsystems]]\nid = "{MOTCUA}"\ntoken = 98765432\nrights = ["dossiers.submit"]\n',
         "subsystems[0].token"),
        ("[audit]\ncitizen_id_key = 98765432\n", "audit.citizen_id_key"),
    ],
)  # fmt: skip
def test_the_cli_names_a_mistyped_secret_without_its_value(
    tmp_path: Path, text: str, where: str
) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {config}: {where}: expected a string, got a value of type int (secret: not shown)"
    ]
