"""The trust store's cache stays bounded: what expired is dropped, and it never holds more than
its cap, whatever number of signers a long-running gateway sees. Time is a fake clock here."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from signing.testing import TestPKI
from signing.trust import TrustStore, _Cache
from tests.conftest import TrustClock


def test_an_entry_is_kept_for_its_time_then_gone(trust_clock: TrustClock) -> None:
    cache = _Cache(10.0, max_items=100)
    cache.put("a", 1)
    trust_clock.now += 10.0
    assert cache.get("a") == 1
    trust_clock.now += 0.5
    assert cache.get("a") is None
    assert len(cache) == 0  # an expired entry read is dropped, not only ignored


def test_expired_entries_are_dropped_when_another_is_added(trust_clock: TrustClock) -> None:
    cache = _Cache(10.0, max_items=100)
    for i in range(50):
        cache.put(("chain", i), i)
    assert len(cache) == 50
    trust_clock.now += 11.0  # every one of them past its time, none read again
    cache.put("new", "x")
    assert len(cache) == 1 and cache.get("new") == "x"


def test_the_cache_never_holds_more_than_its_cap_oldest_out_first(trust_clock: TrustClock) -> None:
    cache = _Cache(300.0, max_items=8)
    for i in range(20):
        cache.put(i, i)
        trust_clock.now += 1.0
        assert len(cache) <= 8
    assert [cache.get(i) for i in range(12)] == [None] * 12
    assert [cache.get(i) for i in range(12, 20)] == list(range(12, 20))


def test_an_entry_put_again_is_as_new(trust_clock: TrustClock) -> None:
    cache = _Cache(10.0, max_items=2)
    cache.put("a", 1)
    trust_clock.now += 6.0
    cache.put("b", 2)
    cache.put("a", 3)  # renewed: now the newer of the two
    cache.put("c", 4)  # over the cap: "b", the oldest, goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)
    trust_clock.now += 6.0  # 12 s after "a" was first put, 6 s after it was put again
    assert cache.get("a") == 3


def test_an_entry_may_have_a_shorter_time_of_its_own(trust_clock: TrustClock) -> None:
    cache = _Cache(300.0, max_items=10)
    cache.put("failed", "refused", ttl=30.0)
    cache.put("good", "answer")
    trust_clock.now += 31.0
    assert cache.get("failed") is None and cache.get("good") == "answer"


def _leaves(pki: TestPKI, n: int) -> list[x509.Certificate]:
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    ikey = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    assert isinstance(ikey, rsa.RSAPrivateKey)  # the test PKI's CAs are RSA
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        out.append(
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Can bo {i}")]))
            .issuer_name(inter.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(
                x509.KeyUsage(True, True, False, False, False, False, False, False, False), True
            )
            .sign(ikey, hashes.SHA256())
        )
    return out


async def test_a_store_that_sees_signer_after_signer_stays_bounded(
    pki: TestPKI, trust_clock: TrustClock
) -> None:
    """One chain cached per signer: a gateway's one store saw every signer of every envelope and
    PDF for the life of the process, and gave none of them back until it was restarted."""
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    trust = TrustStore(pki.trust().anchors, revocation="off", cache_ttl=60.0, cache_size=16)
    leaves = _leaves(pki, 40)
    for leaf in leaves:
        assert (await trust.validate(leaf, [inter])).revocation == "not checked"
        assert len(trust._cache) <= 16
    trust_clock.now += 61.0
    await trust.validate(leaves[0], [inter])
    assert len(trust._cache) == 1  # the others had expired: dropped when it was added
