"""A registry's url needs that registry's credentials beside it: the embedded sandboxes bring their
own, and no default credential may ever be sent to a real registry."""

import re
from typing import Any

import pytest

from gateway.settings import SettingsError, settings_from_mapping

# What each registry's connector sends (README, [registries.<name>]).
CREDENTIALS = {
    "population": ("username", "secret", "api_key", "officer_id", "service_code"),
    "civil_status": ("signer_fingerprint",),
    "insurance": ("username", "password", "officer_name", "officer_id"),
    "business": ("api_key",),
    "portal": ("username", "password"),
}

URL = "https://registry.example.vn/api"
GIVEN = {
    "username": "h41-gateway",
    "password": "pw-1",
    "secret": "s-1",
    "api_key": "k-1",
    "officer_name": "Nguyễn Văn Cán Bộ",  # who asks: the registries log it
    "officer_id": "040088101111",
    "service_code": "2.002156",  # the public service a lookup is for (population MaDVC)
    "signer_fingerprint": "ab" * 32,  # the register's certificate, which signs what it answers
}


def _load(name: str, table: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    # The other registries on their sandboxes, as a mixed config must say.
    mapping = {"registries": {name: table}, "sandbox": {"embedded": True}}
    return settings_from_mapping(mapping, environ=environ or {})


@pytest.mark.parametrize(
    ("name", "key"), [(name, key) for name, keys in CREDENTIALS.items() for key in keys]
)
def test_a_url_without_one_of_its_registrys_credentials_is_refused(name: str, key: str) -> None:
    table = {"url": URL, **{k: GIVEN[k] for k in CREDENTIALS[name] if k != key}}
    with pytest.raises(SettingsError) as info:
        _load(name, table)
    message = str(info.value)
    assert message.startswith(f"registries.{name}: url is set without {key}")
    assert "\n" not in message


@pytest.mark.parametrize("name", ["insurance", "population", "business", "portal"])
def test_a_url_alone_gets_no_sandbox_credentials(name: str) -> None:
    with pytest.raises(SettingsError, match=f"registries.{name}: url is set without"):
        _load(name, {"url": URL})


@pytest.mark.parametrize("name", ["insurance", "population", "business", "portal"])
def test_an_empty_credential_is_no_credential(name: str) -> None:
    with pytest.raises(SettingsError, match=f"registries.{name}: url is set without"):
        _load(name, {"url": URL, **{k: "" for k in CREDENTIALS[name]}})


@pytest.mark.parametrize("name", list(CREDENTIALS))
def test_a_url_with_its_credentials_loads_them(name: str) -> None:
    given = {k: GIVEN[k] for k in CREDENTIALS[name]}
    registry = _load(name, {"url": URL, **given}).registry(name)
    assert registry.url == URL
    assert {k: getattr(registry, k) for k in given} == given


@pytest.mark.parametrize("name", list(CREDENTIALS))
def test_no_url_needs_no_credentials_and_has_none(name: str) -> None:
    """The embedded sandbox: its own credentials are used, never these."""
    registry = _load(name, {"timeout_s": 2}).registry(name)
    assert registry.url is None
    assert (registry.username, registry.password, registry.secret, registry.api_key) == ("",) * 4


def test_civil_status_needs_the_registers_certificate_beside_its_url() -> None:
    """Found by probing: a birth certificate signed by any key under the trust anchors (an
    agency's, the gateway's own) was taken for the register's; the embedded sandbox's register
    key is of the development PKI, no default for a real register."""
    with pytest.raises(SettingsError, match="civil_status: url is set without signer_fingerprint"):
        _load("civil_status", {"url": URL})
    pinned = ["AB:" * 31 + "AB", "cd" * 32]  # the old and the new certificate, as copied
    registry = _load("civil_status", {"url": URL, "signer_fingerprint": pinned}).registry(
        "civil_status"
    )
    assert registry.signer_fingerprints == ("ab" * 32, "cd" * 32)
    environ = {"LIENTHONG_REGISTRIES_CIVIL_STATUS_SIGNER_FINGERPRINT": "ef" * 32}
    registry = _load("civil_status", {"url": URL}, environ).registry("civil_status")
    assert registry.signer_fingerprints == ("ef" * 32,)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ab" * 31, "registries.civil_status.signer_fingerprint: not a SHA-256"),
        (["ab" * 32, "xyz"], "registries.civil_status.signer_fingerprint[1]: not a SHA-256"),
    ],
)
def test_a_signer_fingerprint_is_a_sha256(value: Any, says: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(says)):
        _load("civil_status", {"url": URL, "signer_fingerprint": value})


def test_only_the_civil_status_registry_takes_a_signer_fingerprint() -> None:
    with pytest.raises(SettingsError, match=r"registries\.business\.signer_fingerprint: only"):
        _load("business", {"url": URL, "api_key": "k", "signer_fingerprint": "ab" * 32})


@pytest.mark.parametrize("officer_id", ["VN:GOV:000.00.00.H41:lienthong", "12345", "040099999999x"])
def test_an_officer_is_named_by_a_personal_id(officer_id: str) -> None:
    """BHXH's cccdCb got the gateway's X-Road client id when no officer was configured."""
    with pytest.raises(
        SettingsError, match=r"registries\.insurance\.officer_id: not a personal id"
    ):
        _load("insurance", {"url": URL, **GIVEN, "officer_id": officer_id})
