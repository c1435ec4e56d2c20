"""Who is calling, and may they call this service.

A subsystem is identified by its client certificate (mutual TLS: the SHA-256 fingerprint of the
DER certificate, configured per subsystem: one, or several while a client renews its certificate)
or, for development, a bearer token from the config. No identity → 401 ``unauthenticated``; no
right to the service → 403 ``forbidden-service``.
"""

from __future__ import annotations

import _ssl
import hashlib
import hmac
import logging
import ssl
import time
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signing.errors import UntrustedSigner
from signing.trust import TrustStore

from .problems import Problem
from .settings import Subsystem

__all__ = [
    "IDENTITY_KEY",
    "Authenticator",
    "ClientRevocation",
    "Identity",
    "report_refused_handshakes",
    "require",
]

log = logging.getLogger("lienthong.tls")


@dataclass(frozen=True)
class Identity:
    subsystem: Subsystem
    via: str  # "mtls" | "token"

    @property
    def id(self) -> str:
        return self.subsystem.id

    def may(self, service: str) -> bool:
        return service in self.subsystem.rights


IDENTITY_KEY = web.RequestKey("identity", Identity)  # absent: anonymous


def _digest(token: str) -> bytes:
    # surrogateescape: header bytes that are not UTF-8 arrive as lone surrogates; such a token
    # matches nothing (configured tokens are text), it must not fail the request with a 500.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    def __init__(self, subsystems: tuple[Subsystem, ...]) -> None:
        # Keyed by digest so lookups do not leak token prefixes through timing.
        self._by_token = {_digest(s.token): s for s in subsystems if s.token}
        self._by_cert = {value: s for s in subsystems for value in s.fingerprints}

    def identify(self, request: web.Request) -> Identity | None:
        if _several_authorizations(request):
            return None  # no one caller: require() says why
        der = _peer_certificate(request)
        if der:
            sub = self._by_cert.get(hashlib.sha256(der).hexdigest())
            if sub is not None:
                return Identity(sub, "mtls")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            digest = _digest(token.strip())
            for known, sub in self._by_token.items():
                if hmac.compare_digest(known, digest):
                    return Identity(sub, "token")
        return None


class ClientRevocation:
    """Refuses an mTLS client whose certificate its CA has revoked: the handshake checks the
    chain and the dates against client_ca, not the CA's CRL or OCSP.

    ``trust`` (client_ca's certificates as anchors, ``[signing] revocation``) caches a chain
    found good for as long as its revocation data. A status it could not have (soft-fail: the
    CA's server down) is not cached there; here it is, for ``unknown_s``, so that an outage of
    the CA's server costs one fetch timeout a minute per client, not one per request."""

    def __init__(self, trust: TrustStore, *, unknown_s: float = 60.0) -> None:
        self.trust, self.unknown_s = trust, unknown_s
        self._unknown: dict[bytes, float] = {}  # leaf DER → until when its unknown status holds

    async def check(self, request: web.Request) -> None:
        """Raise Problem 401 if this request's client certificate is revoked (or, under
        hard-fail, its status cannot be had)."""
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if not isinstance(ssl_object, ssl.SSLObject):
            return
        chain = _client_chain(ssl_object)
        if not chain:
            return
        leaf = chain[0].public_bytes(serialization.Encoding.DER)
        now = time.monotonic()
        if self._unknown.get(leaf, 0.0) > now:
            return
        try:
            result = await self.trust.validate(chain[0], chain[1:])
        except UntrustedSigner as exc:
            raise Problem(
                401,
                "unauthenticated",
                f"the client certificate is refused: {exc.reason}",
                headers={"WWW-Authenticate": 'Bearer realm="lienthong"'},
            ) from None
        if result.revocation.startswith("unknown"):
            self._unknown = {k: t for k, t in self._unknown.items() if t > now}  # stays small
            self._unknown[leaf] = now + self.unknown_s


def _several_authorizations(request: web.Request) -> bool:
    """Whether the request has more than one Authorization header. The field is no list (RFC
    9110 §11.6.2): the gateway reading the first and a proxy in front the last would each take
    another caller, so neither is taken, whatever the certificate or the headers hold."""
    return len(request.headers.getall("Authorization", ())) > 1


def _peer_certificate(request: web.Request) -> bytes | None:
    """The client certificate (DER) the request's connection verified, if any."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if isinstance(ssl_object, ssl.SSLObject):
        return ssl_object.getpeercert(binary_form=True)
    return None


def _client_chain(ssl_object: ssl.SSLObject) -> list[x509.Certificate]:
    """The client's certificate, leaf first, with what its path to client_ca is built from.

    After a full handshake: the chain the handshake verified (with the intermediates the client
    sent, which a client_ca of roots alone needs). On a resumed session OpenSSL keeps no verified
    chain (None: a 500 on every request, found by probing); the session from the server's cache
    keeps the chain the client sent at its full handshake, which is taken instead; failing that,
    the leaf alone. Never nothing for a client that presented a certificate: what this returns is
    validated against client_ca's anchors by the caller, the revocation check, which a missing
    chain must not skip (a revoked certificate would pass on every resumed session). Public as
    ``get_verified_chain`` / ``get_unverified_chain`` from Python 3.13; in 3.11 the same methods
    are on the private ``_sslobj``."""
    for name in ("get_verified_chain", "get_unverified_chain"):
        getter = getattr(ssl_object, name, None) or getattr(
            getattr(ssl_object, "_sslobj", None), name, None
        )
        certs = getter() if getter is not None else None
        if certs:
            ders = [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in certs]
            return [x509.load_der_x509_certificate(der) for der in ders]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [x509.load_der_x509_certificate(leaf)] if leaf else []


def report_refused_handshakes(ctx: ssl.SSLContext) -> None:
    """Have ``ctx``'s server connections tell of a client certificate their handshake refuses
    (expired, not yet valid, of another CA, without its intermediate, for another use): the
    client gets the TLS alert that says why, and the log a WARNING with OpenSSL's reason and the
    certificate's SHA-256 — never its subject, which on a personal certificate names its holder
    and CCCD number. Before, neither side was told anything."""
    ctx.sslobject_class = _ReportingSSLObject
    # OpenSSL drops the certificate of a handshake it fails: the one place that still sees it is
    # the message callback, a debugging hook of CPython's ssl (private, there since 3.8). Without
    # it, the line names no certificate.
    if hasattr(ctx, "_msg_callback"):
        setattr(ctx, "_msg_callback", _note_certificate)  # noqa: B010 - a private attribute


_HANDSHAKE, _CERTIFICATE = 22, 11  # TLS content type and handshake message type


def _note_certificate(
    conn: object, direction: str, version: int, content_type: int, msg_type: int, data: bytes
) -> None:
    """Keep the first certificate of the client's Certificate message on its SSLObject. It must
    not raise: ssl would raise its exception from the handshake."""
    if not (
        isinstance(conn, _ReportingSSLObject)
        and direction == "read"
        and content_type == _HANDSHAKE
        and msg_type == _CERTIFICATE
    ):
        return
    # Type (1), length (3); in TLS 1.3 a request context (its length, 1, and itself); the list's
    # length (3), then each certificate's length (3) and DER.
    at = 4 + (1 + data[4] if version >= ssl.TLSVersion.TLSv1_3 and len(data) > 4 else 0) + 3
    size = int.from_bytes(data[at : at + 3], "big")
    der = data[at + 3 : at + 3 + size]
    conn.presented = der if size and len(der) == size else None


class _ReportingSSLObject(ssl.SSLObject):
    """A server connection's TLS that reports a client certificate its handshake refuses."""

    presented: bytes | None = None  # the client's certificate (DER), as its handshake sent it
    _refused: ssl.SSLCertVerificationError | None = None

    def do_handshake(self) -> None:
        if self._refused is not None:
            raise self._refused
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            self._refused = exc
            reason = exc.verify_message or exc.reason or "verification failed"
            digest = hashlib.sha256(self.presented).hexdigest() if self.presented else None
            log.warning(
                "client certificate refused in the TLS handshake: %s (certificate SHA-256 %s)",
                reason,
                digest or "not seen",
                extra={"reason": reason, "certificate_sha256": digest},
            )
            # asyncio closes a connection whose handshake failed without sending what OpenSSL
            # wrote for the client, the alert that says why (certificate expired, unknown CA):
            # the client read an empty answer. Told that more input is wanted, it sends what is
            # pending first. The client, reading the alert, closes; anything more it sends gets
            # the error above.
            raise ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "sending the alert") from None
        self.presented = None


def require(request: web.Request, service: str) -> Identity:
    """The caller's identity, if it holds ``service``. Raises Problem 401 / 403."""
    identity: Identity | None = request.get(IDENTITY_KEY)
    if identity is None:
        detail = "present a client certificate or an Authorization: Bearer token"
        if _several_authorizations(request):
            detail = "more than one Authorization header: send one"
        elif presented := _peer_certificate(request):
            detail = (
                f"the client certificate presented (SHA-256 {hashlib.sha256(presented).hexdigest()})"
                " is not mapped to a subsystem (an operator maps it by that SHA-256), and no"
                " known bearer token came with it"
            )
        raise Problem(
            401,
            "unauthenticated",
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="lienthong"'},
        )
    if not identity.may(service):
        raise Problem(
            403,
            "forbidden-service",
            f"subsystem {identity.id} has no right to the service {service}",
            service=service,
        )
    return identity
