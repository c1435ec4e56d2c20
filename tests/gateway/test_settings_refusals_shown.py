"""What a refusal of the configuration shows: a `callback_urls` entry with a query is refused
with every query value hidden, as a registry's or TSA's URL is (a receiver may take its key as
?api_key=)."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, settings_from_mapping

SUB = {
    "id": "VN:GOV:000.00.00.H41:motcua",
    "token": "token-0123456789",
    "rights": ["dossiers.submit"],
}


def test_a_callback_url_with_a_query_is_refused_without_its_values() -> None:
    """Found by probing: `…/hook?api_key=LEAKED-KEY-123` was quoted whole."""
    url = "https://cb.example.vn/hook?api_key=LEAKED-KEY-123&v=2#frag"
    data = {"subsystems": [{**SUB, "callback_secret": "s", "callback_urls": [url]}]}
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data, environ={})
    assert str(info.value) == (
        "subsystems[0].callback_urls[0]: expected scheme://host[:port][/path], without user, "
        "query or fragment, got 'https://cb.example.vn/hook?api_key=***&v=***#frag'"
    )
