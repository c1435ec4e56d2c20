"""A chain found good is reused while revocation data is cached; nothing weaker is reused."""

from __future__ import annotations

import pytest
from cryptography import x509
from pyhanko_certvalidator.authority import AuthorityWithCert

from signing.errors import UntrustedSigner
from signing.testing import TestPKI, serve_pki
from signing.trust import TrustStore, _CachingCRLFetcher, _CachingOCSPFetcher, to_asn1
from tests.conftest import TrustClock

SIGNER = "agency-000.00.11.H53"


def _intermediate(pki: TestPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())


def _hard_fail(pki: TestPKI) -> TrustStore:
    return TrustStore(pki.trust().anchors, revocation="hard-fail", fetch_timeout=0.5)


async def test_good_chain_is_validated_once_per_store(
    pki: TestPKI, path_validations: list[object]
) -> None:
    built = path_validations
    leaf, chain = pki.certificate(SIGNER), [_intermediate(pki)]
    trust = _hard_fail(pki)
    async with serve_pki(pki):
        for _ in range(3):
            assert (await trust.validate(leaf, chain)).revocation == "good"
        assert len(built) == 1  # the same signer again: the good chain is reused
        await _hard_fail(pki).validate(leaf, chain)
        assert len(built) == 2  # another store checks for itself


async def test_soft_fail_unknown_is_not_reused(pki: TestPKI) -> None:
    # The chain is not kept; the failed fetches are not remembered here either (for how long
    # they are by default: test_trust_failed_fetches).
    leaf, chain = pki.certificate(SIGNER), [_intermediate(pki)]
    trust = TrustStore(
        pki.trust().anchors, revocation="soft-fail", fetch_timeout=0.5, failed_fetch_ttl=0
    )
    assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    async with serve_pki(pki):
        assert (await trust.validate(leaf, chain)).revocation == "good"


async def test_a_revoked_signer_is_never_cached_as_good(pki: TestPKI) -> None:
    trust = _hard_fail(pki)
    async with serve_pki(pki):
        for _ in range(2):
            with pytest.raises(UntrustedSigner, match="revoked"):
                await trust.validate(pki.certificate("revoked"), [_intermediate(pki)])


async def test_each_validation_reads_its_own_copy_of_cached_revocation_data(pki: TestPKI) -> None:
    # asn1crypto parses lazily and is not safe to read from two threads at once; validations run
    # on threads of their own, so none may be handed the cached object itself.
    trust = _hard_fail(pki)
    leaf, issuer = to_asn1(pki.certificate(SIGNER)), to_asn1(_intermediate(pki))
    async with serve_pki(pki):
        seen = []
        for _ in range(2):  # two validations: the second is answered from the cache
            backend = trust.new_backend()
            try:
                net = backend.get_fetchers()
                ocsp = _CachingOCSPFetcher(net.ocsp_fetcher, trust._cache)
                crl = _CachingCRLFetcher(net.crl_fetcher, trust._cache)
                seen.append(
                    (await ocsp.fetch(leaf, AuthorityWithCert(issuer)), await crl.fetch(leaf))
                )
            finally:
                await backend.close()
    (ocsp1, crls1), (ocsp2, crls2) = seen
    cached_ocsp = trust._cache.get(("ocsp", leaf.issuer.sha256, leaf.serial_number))
    assert ocsp1.dump() == ocsp2.dump() == cached_ocsp.dump()
    assert len({id(ocsp1), id(ocsp2), id(cached_ocsp)}) == 3
    assert crls1 and [c.dump() for c in crls1] == [c.dump() for c in crls2]
    assert not {id(c) for c in crls1} & {id(c) for c in crls2}


async def test_soft_fail_unknown_is_kept_as_long_as_its_failed_fetch(
    pki: TestPKI, path_validations: list[object], trust_clock: TrustClock
) -> None:
    # Reused while the failed fetch it rests on is (the same answer until the responder is asked
    # again), then asked again: the responder back, the status is known.
    built = path_validations
    leaf, chain = pki.certificate(SIGNER), [_intermediate(pki)]
    trust = TrustStore(
        pki.trust().anchors, revocation="soft-fail", fetch_timeout=0.5, failed_fetch_ttl=30
    )
    for _ in range(2):
        assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    assert len(built) == 1
    trust_clock.now += 31
    async with serve_pki(pki):
        assert (await trust.validate(leaf, chain)).revocation == "good"
    assert len(built) == 2
