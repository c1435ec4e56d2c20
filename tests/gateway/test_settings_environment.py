"""``LIENTHONG_<SECTION>_<KEY>``: every key of the configuration, a registry's as
``LIENTHONG_REGISTRIES_<NAME>_<KEY>``; a mistyped one is refused, not silently ignored."""

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import SettingsError, settings_from_mapping

INSURANCE = {
    "registries": {
        "insurance": {
            "url": "https://bhxh.example.vn/",
            "officer_name": "Nguyễn Văn Cán Bộ",
            "officer_id": "040088101111",
        }
    },
    "sandbox": {"embedded": True},  # the other registries on their sandboxes
}


def _refused(environ: dict[str, str], data: dict | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data or {}, environ=environ)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_registrys_credentials_come_from_the_environment() -> None:
    environ = {
        "LIENTHONG_REGISTRIES_INSURANCE_USERNAME": "h41-gateway",
        "LIENTHONG_REGISTRIES_INSURANCE_PASSWORD": "98765432",
    }
    registry = settings_from_mapping(INSURANCE, environ=environ).registry("insurance")
    assert (registry.username, registry.password) == ("h41-gateway", "98765432")


def test_the_environment_wins_over_a_registrys_table_and_leaves_the_callers_alone() -> None:
    data: dict[str, Any] = {
        "registries": {"civil_status": {"timeout_s": 3, "retry": {"max_attempts": 2}}},
        "sandbox": {"embedded": True},  # the other registries on their sandboxes
    }
    environ = {
        "LIENTHONG_REGISTRIES_CIVIL_STATUS_TIMEOUT_S": "7.5",
        "LIENTHONG_REGISTRIES_CIVIL_STATUS_URL": "https://hotich.example.vn/soap",
        "LIENTHONG_REGISTRIES_CIVIL_STATUS_RETRY_JITTER": "0.5",
        "LIENTHONG_REGISTRIES_CIVIL_STATUS_SIGNER_FINGERPRINT": "ab" * 32,
    }
    registry = settings_from_mapping(data, environ=environ).registry("civil_status")
    assert (registry.timeout_s, registry.url) == (7.5, "https://hotich.example.vn/soap")
    assert (registry.retry.max_attempts, registry.retry.jitter) == (2, 0.5)
    assert data["registries"] == {"civil_status": {"timeout_s": 3, "retry": {"max_attempts": 2}}}


def test_a_registry_set_only_from_the_environment() -> None:
    environ = {"LIENTHONG_REGISTRIES_PORTAL_SIGN_REQUESTS": "true"}
    assert settings_from_mapping({}, environ=environ).registry("portal").sign_requests is True


def test_a_bad_value_from_the_environment_names_the_key() -> None:
    message = _refused({"LIENTHONG_REGISTRIES_BUSINESS_TIMEOUT_S": "soon"})
    assert message.startswith("registries.business.timeout_s: expected a number")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("LIENTHONG_GATEWAY_LISTN", "LIENTHONG_GATEWAY_LISTN: [gateway] has no key listn"),
        ("LIENTHONG_STORE_PATH", "LIENTHONG_STORE_PATH: [store] has no key path"),
        ("LIENTHONG_OUTBOX_", "LIENTHONG_OUTBOX_: [outbox] has no key ''"),
        ("LIENTHONG_AUDIT", "LIENTHONG_AUDIT: [audit] has no key ''"),
        (
            "LIENTHONG_REGISTRIES_INSURANCE_PASWORD",
            "LIENTHONG_REGISTRIES_INSURANCE_PASWORD: [registries.insurance] has no key pasword",
        ),
        (
            "LIENTHONG_REGISTRIES_INSURANCE_RETRY_TRIES",
            "[registries.insurance] has no key retry_tries (known: url, username, password,",
        ),
        (
            "LIENTHONG_REGISTRIES_POLICE_URL",
            "LIENTHONG_REGISTRIES_POLICE_URL: names none of the registries (population,",
        ),
        ("LIENTHONG_SUBSYSTEMS_TOKEN", "LIENTHONG_SUBSYSTEMS_TOKEN: [[subsystems]] cannot be set"),
        ("LIENTHONG_AGENCIES_ID", "LIENTHONG_AGENCIES_ID: [[agencies]] cannot be set"),
    ],
)
def test_a_mistyped_variable_of_a_section_is_refused(variable: str, message: str) -> None:
    assert message in _refused({variable: "x"})


@pytest.mark.parametrize(
    "variable",
    [
        "LIENTHONG_CONFIG",
        "LIENTHONG_KEY_PASSWORD",
        "LIENTHONG_KEY_PASSWORD_FILE",
        "LIENTHONG_PKCS11_PIN",
        "LIENTHONG_PKCS11_MODULE",
        "LIENTHONG_TEST_POSTGRES",
        "LIENTHONG_URL",
        "LIENTHONG_TOKEN",
        "LIENTHONG_AUDIT_CITIZEN",  # audit query --citizen
        "LIENTHONGX_GATEWAY_LISTEN",
    ],
)
def test_the_other_variables_are_left_alone(variable: str) -> None:
    assert settings_from_mapping({}, environ={variable: "x"}).gateway.listen == "127.0.0.1:8080"


def test_the_cli_refuses_a_mistyped_variable_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text('[store]\nurl = "sqlite:///x.db"\n')
    result = CliRunner(env={"LIENTHONG_GATEWAY_LISTN": "0.0.0.0:80"}).invoke(
        main, ["outbox", "list", "--config", str(config)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {config}: LIENTHONG_GATEWAY_LISTN: [gateway] has no key listn"
        " (known: listen, tls_cert, tls_key, client_ca, max_body_bytes, max_document_bytes,"
        " lookup_attempts, lookup_timeout_s, callback_timeout_s)"
    ]
