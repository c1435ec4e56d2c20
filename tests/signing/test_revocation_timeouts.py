"""A CRL/OCSP server that accepts connections and never answers: the revocation policy decides.

Before, the fetcher's timeout escaped as a bare TimeoutError and failed the whole validation as
"malformed signature", whatever the policy — which stopped birth flows under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from signing.errors import SignatureInvalid
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import TestPKI, sample_pdf
from signing.trust import RevocationMode, TrustStore


@pytest.fixture
async def silent_revocation_server(pki: TestPKI) -> AsyncIterator[None]:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    port = urlsplit(pki.base_url).port
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def _trust(pki: TestPKI, mode: RevocationMode) -> TrustStore:
    return TrustStore(pki.trust().anchors, revocation=mode, fetch_timeout=0.3)


async def test_soft_fail_accepts_and_says_unknown(
    pki: TestPKI, silent_revocation_server: None
) -> None:
    signed = await sign_pdf(sample_pdf(), pki.key("register"))
    reports = await asyncio.gather(
        *(verify_pdf(signed, _trust(pki, "soft-fail")) for _ in range(4))
    )
    for (report,) in reports:
        assert report.valid, report.reason
        assert report.revocation == "unknown (soft-fail)"


async def test_hard_fail_refuses_with_the_reason(
    pki: TestPKI, silent_revocation_server: None
) -> None:
    signed = await sign_pdf(sample_pdf(), pki.key("register"))
    with pytest.raises(SignatureInvalid) as info:
        await verify_pdf(signed, _trust(pki, "hard-fail"))
    assert "revocation status unknown" in info.value.reason
