"""A chain found good is reused while revocation data is cached; nothing weaker is reused."""

from __future__ import annotations

import pytest
from cryptography import x509

from signing import trust as trust_module
from signing.errors import UntrustedSigner
from signing.testing import TestPKI, serve_pki
from signing.trust import TrustStore

SIGNER = "agency-000.00.11.H53"


def _intermediate(pki: TestPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())


def _hard_fail(pki: TestPKI) -> TrustStore:
    return TrustStore(pki.trust().anchors, revocation="hard-fail", fetch_timeout=0.5)


async def test_good_chain_is_validated_once_per_store(
    pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    real = trust_module.CertificateValidator

    def counting(*args: object, **kwargs: object) -> object:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(trust_module, "CertificateValidator", counting)
    leaf, chain = pki.certificate(SIGNER), [_intermediate(pki)]
    trust = _hard_fail(pki)
    async with serve_pki(pki):
        for _ in range(3):
            assert (await trust.validate(leaf, chain)).revocation == "good"
        assert len(built) == 1  # the same signer again: the good chain is reused
        await _hard_fail(pki).validate(leaf, chain)
        assert len(built) == 2  # another store checks for itself


async def test_soft_fail_unknown_is_not_reused(pki: TestPKI) -> None:
    leaf, chain = pki.certificate(SIGNER), [_intermediate(pki)]
    trust = TrustStore(pki.trust().anchors, revocation="soft-fail", fetch_timeout=0.5)
    assert (await trust.validate(leaf, chain)).revocation == "unknown (soft-fail)"
    async with serve_pki(pki):
        assert (await trust.validate(leaf, chain)).revocation == "good"


async def test_a_revoked_signer_is_never_cached_as_good(pki: TestPKI) -> None:
    trust = _hard_fail(pki)
    async with serve_pki(pki):
        for _ in range(2):
            with pytest.raises(UntrustedSigner, match="revoked"):
                await trust.validate(pki.certificate("revoked"), [_intermediate(pki)])
