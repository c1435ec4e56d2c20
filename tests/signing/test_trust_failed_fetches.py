"""Under soft-fail, a CRL or OCSP fetch that failed is remembered for a short time: while the CA's
server is down, each validation does not ask it again (and wait for it, up to the fetch timeout,
or make a refused connection and its exception cycles); it is asked again once that time is up.
Under hard-fail nothing failed is remembered: each validation asks. Time is a fake clock here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from cryptography import x509

from signing.errors import UntrustedSigner
from signing.testing import TestPKI, serve_pki
from signing.trust import RevocationMode, TrustStore
from tests.conftest import TrustClock

SIGNER = "agency-000.00.11.H53"


@pytest.fixture
async def ca_down(pki: TestPKI) -> AsyncIterator[list[str]]:
    """The CA's CRL and OCSP server, answering 503 to everything; the paths it was asked."""
    asked: list[str] = []

    async def down(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", down)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", urlsplit(pki.base_url).port).start()
    try:
        yield asked
    finally:
        await runner.cleanup()


def _store(pki: TestPKI, mode: RevocationMode) -> TrustStore:
    return TrustStore(pki.trust().anchors, revocation=mode, fetch_timeout=2.0)


def _chain(pki: TestPKI) -> tuple[x509.Certificate, list[x509.Certificate]]:
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    return pki.certificate(SIGNER), [inter]


async def test_soft_fail_does_not_ask_a_failed_server_again_for_a_while(
    pki: TestPKI, trust_clock: TrustClock, ca_down: list[str]
) -> None:
    trust = _store(pki, "soft-fail")
    leaf, chain = _chain(pki)
    assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    first = len(ca_down)
    assert first > 0
    for _ in range(3):
        trust_clock.now += 9.0
        assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    assert len(ca_down) == first, "a server that had just failed was asked again"
    trust_clock.now += 4.0  # 31 s after the failures: their time is up
    assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    assert len(ca_down) == 2 * first


async def test_a_server_back_up_is_asked_once_the_failure_time_is_up(
    pki: TestPKI, trust_clock: TrustClock
) -> None:
    trust = _store(pki, "soft-fail")
    leaf, chain = _chain(pki)
    assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"  # none runs
    async with serve_pki(pki):
        trust_clock.now += 29.0
        assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
        trust_clock.now += 2.0
        assert (await trust.validate(leaf, chain)).revocation == "good"


async def test_hard_fail_asks_again_each_time(
    pki: TestPKI, trust_clock: TrustClock, ca_down: list[str]
) -> None:
    trust = _store(pki, "hard-fail")
    leaf, chain = _chain(pki)
    with pytest.raises(UntrustedSigner, match="revocation status unknown"):
        await trust.validate(leaf, chain)
    first = len(ca_down)
    assert first > 0
    with pytest.raises(UntrustedSigner, match="revocation status unknown"):
        await trust.validate(leaf, chain)
    assert len(ca_down) == 2 * first


async def test_a_revoked_signer_is_still_found_after_a_failure(
    pki: TestPKI, trust_clock: TrustClock
) -> None:
    trust = _store(pki, "soft-fail")
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    revoked = pki.certificate("revoked")
    assert (await trust.validate(revoked, [inter])).revocation == "unknown (soft-fail)"
    trust_clock.now += 31.0
    async with serve_pki(pki):
        with pytest.raises(UntrustedSigner, match="revoked"):
            await trust.validate(revoked, [inter])
