"""An agency's push ``endpoint`` and a registry's ``url`` carry no ``user:password@``: the gateway
sends its own credentials to them (an agency's ``token`` as a bearer token, a registry's
``username``, ``password``, ``secret``, ``api_key``), and a URL's credentials beside an
Authorization header cannot be sent. Found by probing: such a URL was accepted at start, then
every push to it was a dead letter at once (aiohttp: ``Cannot combine AUTHORIZATION header with
AUTH argument or credentials encoded in URL``), and every call to the population registry failed
(``malformed reply: credentials in the URL and an Authorization header``), counted by its breaker
as the registry's fault. They are refused at load, in one line that does not show the password.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import CREDENTIALS, REGISTRY_NAMES, SettingsError, settings_from_mapping

AGENCY = {"id": "000.00.11.H53", "token": "push-token-0123456789"}


def _registry(name: str, url: str) -> dict[str, Any]:
    """``[registries.<name>]`` with ``url`` and every credential it needs."""
    return {"registries": {name: {"url": url, **dict.fromkeys(CREDENTIALS[name], "x")}}}


def _refusal(data: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as refused:
        settings_from_mapping(data, environ={})
    return str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://pushuser:PushPassword42@agency.example.vn/inbox",
        "https://pushuser@agency.example.vn/inbox",  # a user alone is sent as Basic too
        "https://:PushPassword42@agency.example.vn/inbox",
    ],
)
def test_an_agency_endpoint_with_credentials_is_refused_at_load(url: str) -> None:
    message = _refusal({"agencies": [{**AGENCY, "endpoint": url}]})
    assert message.startswith("agencies[0].endpoint: "), message
    assert "token" in message and "agency.example.vn/inbox" in message, message
    assert "PushPassword42" not in message and "\n" not in message, message


@pytest.mark.parametrize("name", REGISTRY_NAMES)
def test_a_registry_url_with_credentials_is_refused_at_load(name: str) -> None:
    message = _refusal(_registry(name, "https://svc:RegPassword42@registry.example.vn/api"))
    assert message.startswith(f"registries.{name}.url: "), message
    assert "svc:***@registry.example.vn/api" in message, message
    assert "RegPassword42" not in message and "\n" not in message, message


def test_a_query_key_is_still_taken() -> None:
    """An API gateway before an agency or a registry may take its key in the query."""
    settings = settings_from_mapping(
        {
            "agencies": [{**AGENCY, "endpoint": "https://agency.example.vn/inbox?apikey=k"}],
            **_registry("business", "https://registry.example.vn/dn?apikey=k"),
            "sandbox": {"embedded": True},  # the other registries on their sandboxes
        },
        environ={},
    )
    assert settings.agencies[0].endpoint == "https://agency.example.vn/inbox?apikey=k"
    assert settings.registry("business").url == "https://registry.example.vn/dn?apikey=k"
