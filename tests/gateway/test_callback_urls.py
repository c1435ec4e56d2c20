"""A subsystem's ``callback_urls``: what the config takes, and which callback URLs they admit."""

from typing import Any

import pytest

from gateway.settings import SettingsError, callback_allowed, settings_from_mapping

MOTCUA = "VN:GOV:000.00.00.H41:motcua"


def _subsystem(callback_urls: Any) -> dict[str, Any]:
    return {
        "id": MOTCUA,
        "token": "token-0123456789",
        "rights": [],
        "callback_secret": "cb-secret-of-motcua",
        "callback_urls": callback_urls,
    }


def test_callback_urls_load_and_default_to_none() -> None:
    settings = settings_from_mapping(
        {
            "subsystems": [
                _subsystem(["https://motcua.hanoi.gov.vn/hook"]),
                {"id": "VN:GOV:000.00.00.H41:kiemtoan", "token": "token-u-0123456789"},
            ]
        },
        environ={},
    )
    given, unset = settings.subsystems
    assert given.callback_urls == ("https://motcua.hanoi.gov.vn/hook",)
    assert unset.callback_urls == ()
    assert given.allows_callback("https://motcua.hanoi.gov.vn/hook/42")
    assert not unset.allows_callback("https://motcua.hanoi.gov.vn/hook/42")


@pytest.mark.parametrize(
    "base",
    [
        "ftp://motcua.hanoi.gov.vn/",
        "/hook",
        "https://motcua.hanoi.gov.vn/hook?token=1",
        "https://motcua.hanoi.gov.vn/hook#x",
        "https://user:pw@motcua.hanoi.gov.vn/hook",
        "https://@motcua.hanoi.gov.vn/hook",
        "https://motcua.hanoi.gov.vn:99999/",
        7,
    ],
)
def test_a_callback_base_that_is_not_scheme_host_port_path_is_refused(base: Any) -> None:
    with pytest.raises(SettingsError, match=r"subsystems\[0\]\.callback_urls\[0\]: expected"):
        settings_from_mapping({"subsystems": [_subsystem([base])]}, environ={})


BASES = ("https://motcua.hanoi.gov.vn/hook", "http://10.0.0.7:8081/")


@pytest.mark.parametrize(
    "url",
    [
        "https://motcua.hanoi.gov.vn/hook",
        "https://motcua.hanoi.gov.vn/hook/",
        "https://motcua.hanoi.gov.vn/hook/dossiers?code=1#top",
        "https://MOTCUA.hanoi.gov.vn:443/hook/x",  # host case and the default port spelled out
        "https://motcua.hanoi.gov.vn/hook/a/../b",  # resolves to /hook/b
        "http://10.0.0.7:8081/anything",  # a base of "/" admits its whole origin
        "https://motcua.hanoi.gov.vn/hook/v1%2E0",  # an encoded dot in a name: no dot segment
        "https://motcua.hanoi.gov.vn/hook/caf%C3%A9/a%20b",
        "https://motcua.hanoi.gov.vn/hook/x?next=%2Fadmin%5C",  # the query is no path
        # Path parameters on a name: a servlet container drops them and still reads a name.
        "https://motcua.hanoi.gov.vn/hook/x;v=1/y",
        "https://motcua.hanoi.gov.vn/hook/x;..",
        "https://motcua.hanoi.gov.vn/hook/.../..a/a..",
    ],
)
def test_urls_under_a_base_are_admitted(url: str) -> None:
    assert callback_allowed(url, BASES)


@pytest.mark.parametrize(
    "url",
    [
        "https://motcua.hanoi.gov.vn/hookx",  # a sibling, not below the folder
        "https://motcua.hanoi.gov.vn/",
        "https://motcua.hanoi.gov.vn/hook/../admin",  # sent as /admin
        "https://motcua.hanoi.gov.vn/hook/%2e%2e/admin",  # also /admin
        "https://motcua.hanoi.gov.vn/hook%2F..%2Fadmin",  # not the folder /hook/
        # Sent as /hook/..%2Fadmin: a receiver that decodes %2F before it resolves the path
        # (nginx) serves /admin. The same for %5C and a backslash, read as a slash by some.
        "https://motcua.hanoi.gov.vn/hook/%2E%2E%2fadmin",
        "https://motcua.hanoi.gov.vn/hook/..%2f..%2fadmin",
        "https://motcua.hanoi.gov.vn/hook/a%2Fb",
        "https://motcua.hanoi.gov.vn/hook/x%5c..%5C..%5cadmin",
        "https://motcua.hanoi.gov.vn/hook/x\\..\\..\\admin",
        # A dot segment spelled encoded, even one that stays in the folder.
        "https://motcua.hanoi.gov.vn/hook/x/%2e%2E/y",
        "https://motcua.hanoi.gov.vn/hook/.%2e/hook/y",
        "https://motcua.hanoi.gov.vn/hook/%2E/y",
        # A dot segment with path parameters: Tomcat, Jetty and Spring drop the ";…" of each
        # segment before they resolve dot segments, so /hook/..;/admin is /admin to them (yarl
        # sends it as written, and decodes %3B to ";").
        "https://motcua.hanoi.gov.vn/hook/..;/admin",
        "https://motcua.hanoi.gov.vn/hook/..;jsessionid=1/admin",
        "https://motcua.hanoi.gov.vn/hook/%2e%2e;/admin",
        "https://motcua.hanoi.gov.vn/hook/..%3B/admin",
        "https://motcua.hanoi.gov.vn/hook/%2E%2E%3b/admin",
        "https://motcua.hanoi.gov.vn/hook/x/.;/y",
        # Encoded twice, for a receiver that decodes twice.
        "https://motcua.hanoi.gov.vn/hook/%252e%252e%252fadmin",
        "https://motcua.hanoi.gov.vn/hook/%252e%252e/admin",
        "https://motcua.hanoi.gov.vn/hook/..%253B/admin",
        "http://motcua.hanoi.gov.vn/hook",  # another scheme
        "https://motcua.hanoi.gov.vn:8443/hook",  # another port
        "https://motcua.hanoi.gov.vn.evil.example/hook",
        "https://motcua.hanoi.gov.vn@169.254.169.254/hook",  # the host is after the @
        "https://user:pw@motcua.hanoi.gov.vn/hook",  # credentials are never sent
        "http://10.0.0.7:8082/",
        "http://10.0.0.7/",
        "http://127.0.0.1:5432/",
        "not a url at all",
        "",
        "http://XN--/hook",  # not valid IDNA: yarl fails only when the host is read
        "https://xn--/hook",
    ],
)
def test_urls_outside_every_base_are_refused(url: str) -> None:
    assert not callback_allowed(url, BASES)


def test_no_bases_admit_nothing() -> None:
    assert not callback_allowed("https://motcua.hanoi.gov.vn/hook", ())


def test_a_host_matches_in_unicode_and_in_punycode() -> None:
    assert callback_allowed("https://xn--tda.vn/hook/1", ("https://ü.vn/hook",))
    assert callback_allowed("https://ü.vn/hook/1", ("https://xn--tda.vn/hook",))
    assert not callback_allowed("https://u.vn/hook/1", ("https://ü.vn/hook",))
