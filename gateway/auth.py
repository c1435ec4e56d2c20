"""Who is calling, and may they call this service.

A subsystem is identified by its client certificate (mutual TLS: the SHA-256 fingerprint of the
DER certificate, configured per subsystem) or, for development, a bearer token from the config.
No identity → 401 ``unauthenticated``; no right to the service → 403 ``forbidden-service``.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from dataclasses import dataclass

from aiohttp import web

from .problems import Problem
from .settings import Subsystem

__all__ = ["IDENTITY_KEY", "Authenticator", "Identity", "require"]


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
        self._by_cert = {
            s.cert_fingerprint.lower().replace(":", ""): s for s in subsystems if s.cert_fingerprint
        }

    def identify(self, request: web.Request) -> Identity | None:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if isinstance(ssl_object, ssl.SSLObject):
            der = ssl_object.getpeercert(binary_form=True)
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


def require(request: web.Request, service: str) -> Identity:
    """The caller's identity, if it holds ``service``. Raises Problem 401 / 403."""
    identity: Identity | None = request.get(IDENTITY_KEY)
    if identity is None:
        raise Problem(
            401,
            "unauthenticated",
            "present a client certificate or an Authorization: Bearer token",
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
