"""The gateway's keys and trust anchors, from ``[signing]`` — or, for development with embedded
sandboxes, from a throw-away test PKI made on first start (``[sandbox] pki``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from gateway.auth import ClientRevocation
from gateway.settings import UNLESS_SANDBOXED, Settings, SettingsError
from signing.errors import SigningError, UntrustedSigner
from signing.keys import SigningKey, is_pkcs11_uri, load_key, shown_key
from signing.testing import TestPKI
from signing.trust import TrustStore, check_strength, check_usage, check_valid_now

__all__ = ["SigningSetup", "audit_certificate", "key_spec", "signing_setup"]

log = logging.getLogger("lienthong.signing")


@dataclass(frozen=True)
class SigningSetup:
    signer: SigningKey  # the gateway's own key: receipts, checkpoints, civil-status requests
    trust: TrustStore  # configured anchors only
    register: SigningKey | None = None  # the civil-status sandbox's key (development only)
    pki: TestPKI | None = None
    # [gateway] client_ca with [signing] revocation: the TLS handshake checks a client
    # certificate's chain and dates, not whether its CA has revoked it.
    clients: ClientRevocation | None = None


def key_spec(settings: Settings, key: str) -> str:
    """``[signing] key`` as :func:`signing.keys.load_key` takes it: a ``pkcs11:`` URI (its scheme
    in any case) as written (a token's key, not a file), a file's path relative to the config
    file's folder."""
    return key if is_pkcs11_uri(key) else str(settings.path(key))


def signing_setup(settings: Settings) -> SigningSetup:
    """Load the configured key and anchors. Raises SettingsError naming what failed."""
    pki = _sandbox_pki(settings.path(settings.sandbox.pki)) if settings.sandboxed else None
    s = settings.signing
    try:
        if s.key:
            signer = load_key(
                key_spec(settings, s.key), cert=str(settings.path(s.cert)) if s.cert else None
            )
            _check_signing_usage(
                signer,
                f"[signing] cert {settings.path(s.cert)}"
                if s.cert
                else f"[signing] key {shown_key(key_spec(settings, s.key))}",
            )
        elif pki is not None:
            signer = pki.key("gateway")
        else:
            raise SettingsError(f"[signing] key is required {UNLESS_SANDBOXED}")
        if s.trust:
            trust = TrustStore.from_pem_files(
                [settings.path(t) for t in s.trust], revocation=s.revocation
            )
        elif pki is not None:
            trust = pki.trust(revocation=s.revocation)
        else:
            raise SettingsError(f"[signing] trust is required {UNLESS_SANDBOXED}")
    except SigningError as exc:
        raise SettingsError(f"[signing]: {exc}") from None
    register = pki.key("register") if pki is not None else None
    clients = None
    if settings.gateway.client_ca:
        try:
            clients = ClientRevocation(
                TrustStore.from_pem_files(
                    [settings.path(settings.gateway.client_ca)], revocation=s.revocation
                )
            )
        except SigningError as exc:
            raise SettingsError(f"[gateway] client_ca: {exc}") from None
    return SigningSetup(signer=signer, trust=trust, register=register, pki=pki, clients=clients)


def _sandbox_pki(folder: Path) -> TestPKI:
    """``[sandbox] pki``: the test PKI in ``folder``, made there on the first start (the folder
    new or empty). Raises SettingsError naming the key and why the folder is no PKI (a file, no
    root.pem, a malformed index.json)."""
    if folder.exists() and not folder.is_dir():
        raise SettingsError(f"[sandbox] pki: {folder} is not a folder")
    try:
        # Made only in a new or empty folder, as `pki init` makes one: any other is loaded, and
        # refused if it is no PKI (a folder of the operator's keys was written over).
        if folder.exists() and any(folder.iterdir()):
            return TestPKI.load(folder)
        log.warning("creating a test PKI for the sandboxes in %s (development only)", folder)
        return TestPKI.create(folder)
    except SigningError as exc:  # names the folder
        raise SettingsError(f"[sandbox] pki: {exc}") from None
    except OSError as exc:
        raise SettingsError(
            f"[sandbox] pki: cannot create a test PKI in {folder}: {exc.strerror or exc}"
        ) from None


def _check_signing_usage(signer: SigningKey, what: str) -> None:
    """Refuse a key whose certificate may not sign documents (its extended key usage dedicates it
    to another service: a TSA's, an OCSP responder's; or its key usage lacks digitalSignature;
    or its key is too weak: RSA under 2048 bits),
    or whose certificate, or an issuer given with it, is expired or not yet valid: every receipt
    and audit checkpoint it signed would be refused (``audit verify``). The rules are the
    verifier's own (:mod:`signing.trust`), and ``lienthong sign``'s."""
    try:
        check_usage(signer.certificate, "signing")
        check_strength((signer.certificate, *signer.chain))
        check_valid_now((signer.certificate, *signer.chain))
    except UntrustedSigner as exc:
        signer.close()
        raise SettingsError(
            f"{what}: {exc.reason}: it cannot sign documents or audit checkpoints"
        ) from None


def audit_certificate(settings: Settings) -> x509.Certificate | None:
    """The certificate of the key that signs the audit checkpoints, as :func:`signing_setup` would
    choose it — ``[signing] cert``, else the key's own (a PKCS#12 file, a certificate beside a
    ``.key.pem``, a token's), else the development PKI's gateway certificate if that PKI exists —
    or None when no key is configured. Never creates a PKI.

    Raises SettingsError if the configured certificate or key cannot be read.
    """
    s = settings.signing
    if s.cert:
        return _first_certificate(settings.path(s.cert), "[signing] cert")
    if s.key:
        try:
            key = load_key(key_spec(settings, s.key))
        except SigningError as exc:
            raise SettingsError(f"[signing] key: {exc}") from None
        try:
            return key.certificate
        finally:
            key.close()
    if settings.sandboxed:
        path = settings.path(settings.sandbox.pki) / "gateway.cert.pem"
        if path.is_file():
            return _first_certificate(path, "[sandbox] pki")
    return None


def _first_certificate(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{what}: cannot read a certificate from {path}: {exc}") from None
