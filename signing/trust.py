# mypy: disable-error-code="no-untyped-call"
# (pyHanko and pyhanko-certvalidator are only partly annotated)
"""Trust: configured anchors only, chain building, validity, key usage, CRL/OCSP with a cache.

Path validation is pyhanko-certvalidator's (the same engine pyHanko uses for PDFs), fed only the
anchors given here — never the operating system's web CA store. Revocation answers (CRLs, OCSP
responses) fetched over HTTP are cached per TrustStore for ``cache_ttl`` seconds.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.authority import Authority, AuthorityWithCert, CertTrustAnchor
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.cert_fetch_client import (
    AIOHttpCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.crl_client import AIOHttpCRLFetcher
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.ocsp_client import AIOHttpOCSPFetcher
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.util import LazySession
from pyhanko_certvalidator.fetchers.api import (
    CertificateFetcher,
    CRLFetcher,
    Fetchers,
    OCSPFetcher,
)
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget

from .capped import CappedReply, CertReply, CrlReply, OcspReply, ReplyTooLarge
from .errors import SigningError, UntrustedSigner

__all__ = [
    "CappedFetcherBackend",
    "ChainResult",
    "RevocationMode",
    "TrustStore",
    "check_strength",
    "check_usage",
    "check_valid_now",
    "common_name",
    "weaknesses_of",
]

RevocationMode = Literal["hard-fail", "soft-fail", "off"]
Usage = Literal["signing", "timestamping"]


def common_name(cert: x509.Certificate | asn1_x509.Certificate) -> str:
    if isinstance(cert, asn1_x509.Certificate):
        return str(cert.subject.native.get("common_name", cert.subject.human_friendly))
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def from_asn1(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def weaknesses_of(certs: Iterable[x509.Certificate]) -> list[str]:
    """SHA-1 certificate signatures, one line each (what older documents' chains carry: the norm
    lets them be verified, flagged; a key too weak is refused, see :func:`_too_weak`)."""
    return [
        f"SHA-1 certificate signature ({common_name(cert)})"
        for cert in certs
        if isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    ]


def _too_weak(cert: x509.Certificate) -> str | None:
    """Why ``cert``'s key is too weak for the norms (spec/signatures.md: RSA of at least 2048
    bits; elliptic curves of 256), or None. A 512-bit RSA modulus is factored in hours: the key
    signs for anyone, whenever it signed (the norm's leniency for older documents is for SHA-1
    alone)."""
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey) and pub.key_size < 2048:
        return f"a {pub.key_size}-bit key is too weak to sign (RSA keys of at least 2048 bits)"
    if isinstance(pub, ec.EllipticCurvePublicKey) and pub.key_size < 256:
        return f"a {pub.key_size}-bit key is too weak to sign (curves of at least 256 bits)"
    return None


@dataclass
class ChainResult:
    """A validated chain: names leaf → anchor, revocation status, weaknesses found."""

    chain: list[str]
    revocation: str
    weaknesses: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)


_monotonic = time.monotonic  # the caches' clock (a test's may be another)


class _Cache:
    """Values kept for ``ttl`` seconds (or a shorter time given with one), at most ``max_items``
    of them. Nothing outlives its time in memory: an expired entry is dropped when it is read,
    and those first in line are dropped whenever another is added; past the cap, the oldest go
    first. Keys are per certificate (a chain, an OCSP answer): a store kept for the life of a
    gateway sees signer after signer, and kept them all until it was restarted.

    Validations run on threads of their own as well as on the event loop: one lock guards it.
    """

    def __init__(self, ttl: float, *, max_items: int = 2048) -> None:
        self.ttl, self.max_items = ttl, max_items
        # key -> (put at, expires after, value), oldest first
        self._items: OrderedDict[Any, tuple[float, float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        now = _monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if now - hit[0] > hit[1]:
                del self._items[key]
                return None
            return hit[2]

    def put(self, key: Any, value: Any, *, ttl: float | None = None) -> None:
        now = _monotonic()
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (now, self.ttl if ttl is None else min(ttl, self.ttl), value)
            while self._items:
                put_at, lasts, _ = next(iter(self._items.values()))
                if now - put_at <= lasts and len(self._items) <= self.max_items:
                    break
                self._items.popitem(last=False)


_NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def _private(value: Any) -> Any:
    """A copy of a cached asn1crypto value (an OCSP response, a CRL) for one validation alone.

    asn1crypto parses lazily, filling an object's children as they are first read, and is not
    safe to read from two threads at once: validations run on their own threads, and two reading
    one cached OCSP response's responder certificate together failed one of them ("No field
    numbered 1 is present in this PublicKeyInfo", a birth certificate refused as malformed).
    """
    return type(value).load(value.dump())


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` under ``cert``'s issuer name (itself: self-signed)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _split_anchors(
    anchors: Sequence[x509.Certificate],
) -> tuple[list[x509.Certificate], list[x509.Certificate], list[x509.Certificate]]:
    """The anchors as pyhanko-certvalidator is given them: self-signed roots; CA certificates
    issued under those (through others listed, maybe), to build chains with; and the rest,
    certificates that are not self-signed but end chains, as configured (an intermediate alone).

    An intermediate listed beside its root (the README's advice for senders that leave it out, or
    a ``client_ca`` bundle) is checked under its root as one a signer sends is (validity, the
    root's CRL): listing it decides nothing the root alone would not. Taken as an anchor it ended
    the path before the root, where the CRLs it signs could not be placed (see
    :class:`_AnchorIssuesOwnCert`), and a root's revocation of it went unseen.
    """
    roots = [a for a in anchors if _issued_by(a, a)]
    under: list[x509.Certificate] = []
    rest = [a for a in anchors if a not in roots]
    while True:
        found = next((c for c in rest if any(_issued_by(c, i) for i in roots + under)), None)
        if found is None:
            return roots, under, rest
        rest.remove(found)
        under.append(found)


class _AnchorIssuesOwnCert(AuthorityWithCert):
    """An anchor that is not self-signed (an intermediate CA listed without its root).

    pyhanko-certvalidator (0.33) places a CRL's signer by finding the signer certificate's issuer
    in the path being validated, the anchor first. A self-signed anchor issues its own
    certificate, so a CRL it signs is placed at the anchor; an intermediate anchor's certificate
    names the root as issuer, found nowhere, so every CRL it signs was refused ("the chain of
    trust for the CRL issuer … could not be determined"): a certificate whose CA publishes only a
    CRL was "revocation status unknown", refused even under soft-fail, revoked or not. Here its
    own certificate is taken as the anchor itself, as a self-signed one's is. Path building is
    not changed: it asks an anchor only about certificates naming it as their issuer.
    """

    def is_potential_issuer_of(self, cert: asn1_x509.Certificate) -> bool:
        if cert.sha256 == self.certificate.sha256:
            return True
        return bool(super().is_potential_issuer_of(cert))


class _IntermediateAnchor(CertTrustAnchor):
    """A trust anchor given as a certificate that is not self-signed (see above)."""

    def __init__(self, cert: asn1_x509.Certificate) -> None:
        super().__init__(cert)
        self._own = _AnchorIssuesOwnCert(cert)

    @property
    def authority(self) -> Authority:
        return self._own


class _NoIssuerFetching(CertificateFetcher):
    """Issuers come from the signature, the configured intermediates and the anchors, never from
    the address a certificate under check names (its AIA): that certificate is not trusted yet,
    and its address could be anything, an internal service to make the gateway call, or one that
    never answers, to hold every verification until the timeout. The issuers of CRLs (fetched
    from the addresses of certificates already chained to an anchor) are still fetched."""

    def __init__(self, inner: CertificateFetcher) -> None:
        self._inner = inner

    async def fetch_cert_issuers(self, cert: Any) -> AsyncGenerator[Any, None]:
        return
        yield  # an async generator that finds nothing

    def fetch_crl_issuers(self, certificate_list: Any) -> AsyncGenerator[Any, None]:
        return self._inner.fetch_crl_issuers(certificate_list)

    def fetched_certs(self) -> Iterable[Any]:
        return self._inner.fetched_certs()


def _too_large(exc: BaseException) -> ReplyTooLarge | None:
    """The cap an answer went over, when that is why ``exc`` (a fetcher's error) was raised."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ReplyTooLarge):
        seen = seen.__cause__
    return seen


def _note_too_large(exc: BaseException, refusals: list[str]) -> None:
    cause = _too_large(exc)
    if cause is not None and str(cause) not in refusals:
        refusals.append(str(cause))


def _failed_before(cache: _Cache, key: Any, failures_ttl: float) -> str | None:
    """Why the fetch of ``key`` failed, when it failed within the last ``failures_ttl`` s."""
    return cache.get(("failed", key)) if failures_ttl > 0 else None


def _failed(cache: _Cache, key: Any, failures_ttl: float, exc: Exception) -> None:
    if failures_ttl > 0:
        cache.put(("failed", key), str(exc), ttl=failures_ttl)


class _Caching:
    """Delegates to a per-call network fetcher; answers repeated requests from the cache.
    ``refusals`` collects why an answer was refused (over its cap), for a hard-fail's reason.
    ``failures_ttl``: how long a failed fetch is remembered, and not tried again (0: never)."""

    def __init__(
        self,
        inner: Any,
        cache: _Cache,
        refusals: list[str] | None = None,
        *,
        failures_ttl: float = 0.0,
    ) -> None:
        self._inner, self._cache, self._failures_ttl = inner, cache, failures_ttl
        self._refusals = [] if refusals is None else refusals
        self._seen: dict[Any, Any] = {}  # what this validation was handed, by certificate


class _CachingCRLFetcher(_Caching, CRLFetcher):
    """CRLs, cached (see :class:`_Caching`)."""

    async def fetch(self, cert: Any, *, use_deltas: Any = None) -> Any:
        key = (
            "crl",
            tuple(sorted(u for dp in (cert.crl_distribution_points or []) for u in [dp.url] if u)),
        )
        hit = self._cache.get(key)
        if hit is None:
            if (why := _failed_before(self._cache, key, self._failures_ttl)) is not None:
                raise CRLFetchError(why)
            try:
                hit = list(await self._inner.fetch(cert, use_deltas=use_deltas))
            except _NETWORK_ERRORS as exc:
                # The fetcher contract is CRLFetchError; a leaked timeout would bypass the
                # revocation policy and fail the whole validation instead of soft-failing.
                failure = CRLFetchError(f"CRL not fetched: {type(exc).__name__}: {exc}")
                _failed(self._cache, key, self._failures_ttl, failure)
                raise failure from exc
            except CRLFetchError as exc:
                _note_too_large(exc, self._refusals)
                _failed(self._cache, key, self._failures_ttl, exc)
                raise
            self._cache.put(key, hit)
        hit = [_private(c) for c in hit]
        self._seen[(cert.issuer.sha256, cert.serial_number)] = hit
        return hit

    def fetched_crls(self) -> Any:
        return [c for crls in self._seen.values() for c in crls]

    def fetched_crls_for_cert(self, cert: Any) -> Any:
        # KeyError means "not fetched yet": certvalidator then calls fetch().
        return self._seen[(cert.issuer.sha256, cert.serial_number)]


class _CachingOCSPFetcher(_Caching, OCSPFetcher):
    """OCSP answers, cached (see :class:`_Caching`)."""

    async def fetch(self, cert: Any, authority: Any) -> Any:
        key = ("ocsp", cert.issuer.sha256, cert.serial_number)
        hit = self._cache.get(key)
        if hit is None:
            if (why := _failed_before(self._cache, key, self._failures_ttl)) is not None:
                raise OCSPFetchError(why)
            try:
                hit = await self._inner.fetch(cert, authority)
            except _NETWORK_ERRORS as exc:
                failure = OCSPFetchError(f"OCSP not fetched: {type(exc).__name__}: {exc}")
                _failed(self._cache, key, self._failures_ttl, failure)
                raise failure from exc
            except OCSPFetchError as exc:
                _note_too_large(exc, self._refusals)
                _failed(self._cache, key, self._failures_ttl, exc)
                raise
            self._cache.put(key, hit)
        hit = _private(hit)
        self._seen[(cert.issuer.sha256, cert.serial_number)] = hit
        return hit

    def fetched_responses(self) -> Any:
        return list(self._seen.values())

    def fetched_responses_for_cert(self, cert: Any) -> Any:
        hit = self._seen.get((cert.issuer.sha256, cert.serial_number))
        return [hit] if hit is not None else []


class _PlainSession(LazySession):
    """A lazy session on aiohttp's default TLS context, built once per process. pyHanko's own
    lazy session builds a new context from certifi's CA bundle every time: 15-30 ms of CPU on the
    event loop for each validation that fetches revocation data. Closed by the backend, as
    pyHanko's is. Its responses read at most what ``reply`` allows (signing.capped)."""

    def __init__(self, reply: type[CappedReply]) -> None:
        super().__init__()
        self._reply = reply

    def get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(response_class=self._reply)
        session: aiohttp.ClientSession = self._session
        return session


class CappedFetcherBackend(AIOHttpFetcherBackend):
    """pyhanko-certvalidator's aiohttp backend, each fetcher on a session of its own whose
    answers are capped: a CRL at 16 MiB, an OCSP answer at 64 KiB, an issuer's certificate at
    1 MiB (signing.capped). An answer over its cap is a failed fetch. ``refusals`` says which
    were refused, for the reason of a validation that then fails.

    pyhanko-certvalidator reads every answer whole and has no size limit of its own (its
    ``FetchLimits`` count requests; custom backends keep their own limits), so the fetchers are
    built here as its ``get_fetchers`` builds them, on the capped sessions.
    """

    def __init__(self, per_request_timeout: float) -> None:
        self._crl_session = _PlainSession(CrlReply)
        self._ocsp_session = _PlainSession(OcspReply)
        self._cert_session = _PlainSession(CertReply)
        # pyHanko annotates a plain ClientSession, and takes its own LazySession too.
        session: Any = self._ocsp_session
        super().__init__(session=session, per_request_timeout=per_request_timeout)
        self.refusals: list[str] = []

    def get_fetchers(self) -> Fetchers:
        timeout, budget = self.per_request_timeout, FetchBudget(self.limits)
        return Fetchers(
            ocsp_fetcher=AIOHttpOCSPFetcher(
                self._ocsp_session, per_request_timeout=timeout, budget=budget
            ),
            crl_fetcher=AIOHttpCRLFetcher(
                self._crl_session, per_request_timeout=timeout, budget=budget
            ),
            cert_fetcher=AIOHttpCertificateFetcher(
                self._cert_session, per_request_timeout=timeout, budget=budget
            ),
        )

    async def close(self) -> None:
        for session in (self._crl_session, self._ocsp_session, self._cert_session):
            await session.close()


class TrustStore:
    """Trust anchors from configuration, a revocation policy and a revocation-data cache.

    ``revocation``: ``"hard-fail"`` refuses a signer whose revocation status cannot be had,
    ``"soft-fail"`` accepts it and reports ``"unknown (soft-fail)"``, ``"off"`` reports
    ``"not checked"``. A certificate found revoked is refused in every mode but ``"off"``.

    Revocation answers and chains found good are cached for ``cache_ttl`` seconds, at most
    ``cache_size`` entries (about 10 KiB each; the oldest go first). Under soft-fail, a CRL or
    OCSP fetch that failed is not tried again for ``failed_fetch_ttl`` seconds (the status stays
    unknown meanwhile), and a chain found good with its status unknown is kept that long too;
    under hard-fail every validation asks.
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        *,
        revocation: RevocationMode = "soft-fail",
        intermediates: Sequence[x509.Certificate] = (),
        cache_ttl: float = 300.0,
        cache_size: int = 2048,
        fetch_timeout: float = 5.0,
        failed_fetch_ttl: float = 30.0,
    ) -> None:
        if not anchors:
            raise SigningError("a trust store needs at least one anchor")
        if revocation not in ("hard-fail", "soft-fail", "off"):
            raise SigningError(f"unknown revocation policy {revocation!r}")
        self.anchors = tuple(anchors)
        self.intermediates = tuple(intermediates)
        self._roots, self._under_roots, self._other_ends = _split_anchors(self.anchors)
        self.revocation: RevocationMode = revocation
        self.fetch_timeout = fetch_timeout
        self.failed_fetch_ttl = min(failed_fetch_ttl, cache_ttl)
        self._cache = _Cache(cache_ttl, max_items=cache_size)
        self._verdicts = _Cache(cache_ttl, max_items=cache_size)  # see remember()

    @classmethod
    def from_pem_files(
        cls, paths: Iterable[str | Path], *, revocation: RevocationMode = "soft-fail"
    ) -> TrustStore:
        """Anchors from PEM files (each may hold several). Raises SigningError on a bad file."""
        anchors: list[x509.Certificate] = []
        for path in paths:
            try:
                anchors.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
            except (OSError, ValueError) as exc:
                raise SigningError(f"cannot read trust anchors from {path}") from exc
        return cls(anchors, revocation=revocation)

    def validation_context(
        self,
        *,
        other_certs: Iterable[x509.Certificate] = (),
        moment: dt.datetime | None = None,
        backend: AIOHttpFetcherBackend | None = None,
        for_signing: bool = False,
        crls: Iterable[bytes] = (),
        ocsps: Iterable[bytes] = (),
        offline: bool = False,
    ) -> ValidationContext:
        """A pyhanko-certvalidator context with only our anchors (for pyHanko's own use).

        When ``backend`` is given, fetching goes through it with our cache in front; the caller
        closes the backend. ``for_signing`` forces fetching on and revocation to hard-fail (B-LT
        must embed revocation data for the whole chain). ``crls`` and ``ocsps`` (DER) are
        revocation data at hand (a PDF's DSS); ``offline`` uses only those, fetches nothing and
        requires them for every certificate (hard-fail): a B-LT signature stands on its own.
        """
        fetch = (self.revocation != "off" or for_signing) and not offline
        kwargs: dict[str, Any] = {}
        hard = self.revocation == "hard-fail" or for_signing or offline
        mode = "hard-fail" if hard else "soft-fail"
        if fetch and backend is not None:
            net = backend.get_fetchers()
            refusals = backend.refusals if isinstance(backend, CappedFetcherBackend) else []
            # Under soft-fail a fetch that failed leaves the status unknown, and accepted: asked
            # again at once, the CA's server down made every validation wait for it (up to the
            # fetch timeout) to learn the same. Under hard-fail it refuses the signer: each
            # validation asks, lest one lost answer refuse every signer for a while.
            failures_ttl = 0.0 if hard else self.failed_fetch_ttl
            kwargs["fetchers"] = Fetchers(
                ocsp_fetcher=_CachingOCSPFetcher(
                    net.ocsp_fetcher, self._cache, refusals, failures_ttl=failures_ttl
                ),
                crl_fetcher=_CachingCRLFetcher(
                    net.crl_fetcher, self._cache, refusals, failures_ttl=failures_ttl
                ),
                cert_fetcher=_NoIssuerFetching(net.cert_fetcher),
            )
        return ValidationContext(
            trust_roots=[
                *(to_asn1(a) for a in self._roots),
                *(_IntermediateAnchor(to_asn1(a)) for a in self._other_ends),
            ],
            other_certs=[
                to_asn1(c) for c in (*self._under_roots, *self.intermediates, *other_certs)
            ],
            allow_fetching=fetch,
            crls=list(crls),
            ocsps=list(ocsps),
            revocation_mode=mode,
            moment=moment,
            # At a past moment (a checkpoint's or a signature's timestamp) the CRLs and OCSP
            # answers fetched now were all issued after it; without this pyhanko-certvalidator
            # finds none that applies and calls the status unknown, so a checkpoint older than
            # its CA's latest CRL would fail an auditor's check. Data issued later still tells
            # whether, and since when, the certificate was revoked.
            retroactive_revinfo=moment is not None,
            # SHA-1 is reported as a weakness, not refused, so old documents can be read.
            weak_hash_algos={"md2", "md5"},
            **kwargs,
        )

    def recall(self, key: Any) -> Any:
        """What :meth:`remember` kept under ``key``; None once its time is up."""
        return self._verdicts.get(key)

    def remember(self, key: Any, value: Any, *, revocation: str) -> None:
        """Keep a caller's verdict that rests on this store's answers (an audit checkpoint's:
        its TSA's chain and its signer's, judged at its timestamp) for as long as the revocation
        answers it rests on are kept, so that a revocation is noticed as soon as for a chain:
        ``cache_ttl``, or ``failed_fetch_ttl`` when ``revocation``, the weakest status the
        verdict was given, is unknown (soft-fail). Kept apart from the store's own entries, at
        most ``cache_size`` of them."""
        ttl = self.failed_fetch_ttl if revocation.startswith("unknown") else None
        self._verdicts.put(key, value, ttl=ttl)

    def new_backend(self) -> CappedFetcherBackend:
        return CappedFetcherBackend(per_request_timeout=self.fetch_timeout)

    async def validate(
        self,
        leaf: x509.Certificate,
        others: Iterable[x509.Certificate] = (),
        *,
        usage: Usage = "signing",
        moment: dt.datetime | None = None,
        crls: Iterable[bytes] = (),
        ocsps: Iterable[bytes] = (),
        offline: bool = False,
    ) -> ChainResult:
        """Build and check the chain from ``leaf`` to a configured anchor.

        Raises :class:`UntrustedSigner` with a precise reason: no chain to an anchor, expired,
        not yet valid, revoked, revocation status unknown (under hard-fail, or data that cannot
        decide), a key usage that does not allow ``usage``, or a key in the chain too weak for
        the norms (kind "weak": RSA under 2048 bits, a curve under 256). ``moment``: validate as
        of then (a trusted timestamp's time), with revocation data issued since. ``crls``,
        ``ocsps`` and ``offline``: as for :meth:`validation_context` (a B-LT signature's
        embedded data).
        """
        others = tuple(others)
        crls, ocsps = tuple(crls), tuple(ocsps)
        key = None
        if moment is None and not (crls or ocsps or offline):
            # The same signer (the civil-status register, an agency) signs document after
            # document: a chain found good is reused for as long as revocation data is cached
            # (a revocation is noticed within that time either way), while every certificate in
            # it is still within its validity period.
            key = ("chain", _fingerprint(leaf), tuple(_fingerprint(c) for c in others), usage)
            hit: ChainResult | None = self._cache.get(key)
            if hit is not None and _all_valid_now(hit.certificates):
                return hit
        backend = self.new_backend()
        vc = self.validation_context(
            other_certs=others,
            moment=moment,
            backend=backend,
            crls=crls,
            ocsps=ocsps,
            offline=offline,
        )
        try:
            validator = CertificateValidator(to_asn1(leaf), validation_context=vc)
            path = await validator.async_validate_path()
        except cv_errors.RevokedError as exc:
            source = (
                "OCSP" if "OCSP" in str(exc) else "CRL" if "CRL" in str(exc) else "revocation data"
            )
            raise UntrustedSigner(
                f"certificate revoked ({source}): {_subject_of(exc, leaf)}", "revoked"
            ) from exc
        except cv_errors.ExpiredError as exc:
            raise UntrustedSigner(
                f"certificate expired: {_subject_of(exc, leaf)}", "expired"
            ) from exc
        except cv_errors.NotYetValidError as exc:
            raise UntrustedSigner(
                f"certificate not yet valid: {_subject_of(exc, leaf)}", "not-yet-valid"
            ) from exc
        except cv_errors.InsufficientRevinfoError as exc:
            # Under soft-fail too: data was found but cannot decide (an OCSP-only "revoked" at a
            # past moment); only data that cannot be fetched is soft-failed.
            # pyhanko-certvalidator's own message drops why a fetch failed; an answer refused
            # for its size is named (the CA's, or the network's, to fix).
            why = f" ({'; '.join(backend.refusals)})" if backend.refusals else ""
            raise UntrustedSigner(
                f"revocation status unknown: {common_name(leaf)}{why}", "revocation-unknown"
            ) from exc
        except cv_errors.PathBuildingError as exc:
            raise UntrustedSigner(
                f"no chain to a configured trust anchor: {common_name(leaf)}", "no-chain"
            ) from exc
        except (cv_errors.PathValidationError, cv_errors.ValidationError) as exc:
            raise UntrustedSigner(f"certificate chain invalid: {exc}", "chain-invalid") from exc
        finally:
            await backend.close()
        check_usage(leaf, usage)
        certs = [from_asn1(c) for c in path.iter_certs(include_root=True)][::-1]
        for cert in certs:  # the signer's key, or a key it chains through
            weak = _too_weak(cert)
            if weak is not None:
                raise UntrustedSigner(f"{weak}: {common_name(cert)}", "weak")
        if self.revocation == "off" and not offline:
            revocation = "not checked"
        elif vc.soft_fail_exceptions:
            revocation = "unknown (soft-fail)"
        else:
            revocation = "good"
        result = ChainResult(
            chain=[common_name(c) for c in certs],
            revocation=revocation,
            weaknesses=weaknesses_of(certs),
            certificates=certs,
        )
        if key is not None:
            # A verdict given without revocation data is kept only as long as the failed fetch
            # it rests on (failed_fetch_ttl): the same answer until the responder is asked again.
            soft = revocation == "unknown (soft-fail)"
            self._cache.put(key, result, ttl=self.failed_fetch_ttl if soft else None)
        return result


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _all_valid_now(certs: Iterable[x509.Certificate]) -> bool:
    now = dt.datetime.now(dt.UTC)
    return all(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in certs)


def _subject_of(exc: Exception, leaf: x509.Certificate) -> str:
    # certvalidator says "intermediate certificate N" when the culprit is not the leaf.
    return "an intermediate certificate" if "intermediate" in str(exc) else common_name(leaf)


# Extended key usages that dedicate a key to a service other than signing documents: a TSA's key
# signs timestamps, an OCSP responder's key signs OCSP answers, a TLS server's or a code signer's
# key signs handshakes or software. A certificate whose EKU lists only these must not sign an
# official document (nor an audit checkpoint), though its KeyUsage says digitalSignature.
# National signing certificates carry clientAuth and emailProtection, often documentSigning
# (1.3.6.1.5.5.7.3.36) or a vendor's document-signing purpose; any one purpose outside this set
# (or anyExtendedKeyUsage, or no EKU at all) leaves the certificate usable for documents.
_SERVICE_ONLY_EKUS = {
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
}


def check_valid_now(certs: Iterable[x509.Certificate]) -> None:
    """Raise :class:`UntrustedSigner` naming the first of ``certs`` (a signer's certificate and
    the issuers given with it) that is expired or not yet valid, and the date that rules it out:
    a signature made with it now is refused by every verifier."""
    now = dt.datetime.now(dt.UTC)
    for c in certs:
        if now > c.not_valid_after_utc:
            raise UntrustedSigner(
                f"certificate expired: {common_name(c)} "
                f"(valid until {c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)",
                "expired",
            )
        if now < c.not_valid_before_utc:
            raise UntrustedSigner(
                f"certificate not yet valid: {common_name(c)} "
                f"(valid from {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)",
                "not-yet-valid",
            )


def check_strength(certs: Iterable[x509.Certificate]) -> None:
    """Raise :class:`UntrustedSigner` ("weak") naming the first of ``certs`` (a signer's
    certificate and the issuers given with it) the norms do not let anyone sign with: an RSA key
    under 2048 bits, an elliptic curve under 256, a SHA-1 certificate signature. A verifier
    refuses such keys too (:meth:`TrustStore.validate`) and flags SHA-1 (:func:`weaknesses_of`);
    the gateway and ``lienthong sign`` never make them."""
    for cert in certs:
        why = _too_weak(cert)
        if why is None and isinstance(cert.signature_hash_algorithm, hashes.SHA1):
            why = "a SHA-1 certificate signature is too weak to sign under"
        if why is not None:
            raise UntrustedSigner(f"{why}: {common_name(cert)}", "weak")


def check_usage(leaf: x509.Certificate, usage: Usage) -> None:
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise UntrustedSigner(
            f"key usage does not allow signing (digitalSignature/nonRepudiation): "
            f"{common_name(leaf)}",
            "usage",
        )
    if usage == "signing":
        try:
            purposes = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            return
        if purposes and purposes <= _SERVICE_ONLY_EKUS.keys():
            names = ", ".join(sorted(_SERVICE_ONLY_EKUS[p] for p in purposes))
            raise UntrustedSigner(
                f"extended key usage ({names}) does not allow signing documents: "
                f"{common_name(leaf)}",
                "usage",
            )
    if usage == "timestamping":
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound as exc:
            raise UntrustedSigner(
                "TSA certificate lacks the timeStamping extended key usage", "usage"
            ) from exc
        if ExtendedKeyUsageOID.TIME_STAMPING not in eku.value or not eku.critical:
            raise UntrustedSigner(
                "TSA certificate lacks a critical timeStamping extended key usage", "usage"
            )
