"""The callback signature a receiver checks with ``verify_callback``: whatever the header holds,
the answer is True or False, never an exception."""

from __future__ import annotations

import time

import pytest

from gateway.flows import sign_callback, verify_callback

SECRET, BODY = b"cb-secret", b'{"code": "H40.1"}'


def test_a_fresh_signature_verifies() -> None:
    header = sign_callback(SECRET, BODY)
    assert verify_callback(SECRET, BODY, header)
    assert not verify_callback(b"other-secret", BODY, header)
    assert not verify_callback(SECRET, BODY + b" ", header)


@pytest.mark.parametrize(
    "tail",
    ["é", "\u0661", "\U0001f600", "\udc80", "\ud800"],  # Latin-1, Arabic digit, emoji, surrogates
    ids=["latin-1", "arabic-digit", "emoji", "low-surrogate", "high-surrogate"],
)
def test_a_non_ascii_header_is_refused_not_raised(tail: str) -> None:
    header = sign_callback(SECRET, BODY)
    assert not verify_callback(SECRET, BODY, header[:-1] + tail)
    assert not verify_callback(SECRET, BODY, f"t={int(time.time())},v1={tail}")


def test_a_malformed_or_stale_header_is_refused() -> None:
    assert not verify_callback(SECRET, BODY, "")
    assert not verify_callback(SECRET, BODY, "t=x,v1=00")
    assert not verify_callback(SECRET, BODY, "t=" + "9" * 400 + ",v1=00")  # not an OverflowError
    assert not verify_callback(
        SECRET, BODY, sign_callback(SECRET, BODY, at=int(time.time()) - 3600)
    )
