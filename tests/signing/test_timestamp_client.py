"""The TSA client builds no TLS context per request.

pyHanko's own session loads certifi's CA bundle into a new TLS context for every request: 15-30 ms
of CPU on the event loop, once per audit checkpoint, which showed up as the lookups' tail latency.
"""

from __future__ import annotations

import hashlib
import ssl

import pytest

from signing.pdf import sign_pdf, verify_pdf
from signing.testing import TestPKI, sample_pdf
from signing.timestamps import request_timestamp, verify_timestamp


@pytest.fixture
def no_new_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(repr(kwargs))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return made


async def test_request_timestamp_reuses_the_tls_context(
    pki: TestPKI, tsa_url: str, no_new_tls_contexts: list[str]
) -> None:
    data = b"checkpoint 7"
    for _ in range(3):
        token = await request_timestamp(tsa_url, hashlib.sha256(data).digest())
        info = await verify_timestamp(token, data, pki.trust())
        assert info.tsa
    assert no_new_tls_contexts == []


async def test_pades_timestamps_reuse_the_tls_context(
    pki: TestPKI, pki_server: None, tsa_url: str, no_new_tls_contexts: list[str]
) -> None:
    signed = await sign_pdf(sample_pdf(), pki.key("gateway"), level="B-T", tsa_url=tsa_url)
    reports = await verify_pdf(signed, pki.trust())
    assert [r.valid for r in reports] == [True]
    assert no_new_tls_contexts == []


async def test_a_failed_request_never_shows_the_tsa_password() -> None:
    # A TSA with basic authentication is configured as https://user:password@host/…, one with a
    # key as …?password=… (or ?token=…); the error is logged, shown by /readyz and in the 503
    # that refuses new work while audit checkpoints fail. Before, the query went out as written,
    # and the user name was dropped (README: `user:***@`, `?password=***`).
    from signing.errors import TimestampError
    from signing.testing import free_port

    port = free_port()
    url = f"http://acme:S3cretPass@127.0.0.1:{port}/tsa?password=QueryS3cret&token=T0ken&v=1"
    with pytest.raises(TimestampError) as failed:
        await request_timestamp(url, hashlib.sha256(b"x").digest(), timeout=2.0)
    message = str(failed.value)
    for secret in ("S3cretPass", "QueryS3cret", "T0ken"):
        assert secret not in message, message
    shown = f"http://acme:***@127.0.0.1:{port}/tsa?password=***&token=***&v=***"
    assert message.startswith(f"timestamp request to {shown} failed: "), message


async def test_the_local_tsa_signs_with_the_key_it_loaded_once(
    pki: TestPKI, tsa_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyHanko's DummyTimeStamper loads its RSA key again for every token (OpenSSL 3 checks the
    key at each load: ~40 ms of CPU); the local TSA keeps the one it loaded at start."""
    from cryptography.hazmat.primitives import serialization

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the TSA key was loaded again for a token")

    monkeypatch.setattr(serialization, "load_der_private_key", refused)
    data = b"checkpoint 8"
    for _ in range(2):
        token = await request_timestamp(tsa_url, hashlib.sha256(data).digest())
        info = await verify_timestamp(token, data, pki.trust())
        assert info.tsa
