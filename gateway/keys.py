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

__all__ = [
    "ConfiguredSigning",
    "SigningSetup",
    "audit_certificate",
    "completed_signing",
    "configured_signing",
    "key_spec",
    "signing_setup",
]

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
    """Load the configured key and anchors, then the sandboxes' test PKI for what they leave out.
    Raises SettingsError naming what failed."""
    return completed_signing(settings, configured_signing(settings))


@dataclass(frozen=True)
class ConfiguredSigning:
    """What ``[signing]`` and ``[gateway] client_ca`` name, read and checked without writing
    anything: ``serve`` reads them before it opens (or makes) the store, and makes the sandboxes'
    test PKI (CA private keys) only once the store is known to be its own
    (:func:`completed_signing`), so that a start refused for either leaves nothing new behind."""

    signer: SigningKey | None
    trust: TrustStore | None
    clients: ClientRevocation | None


def configured_signing(settings: Settings) -> ConfiguredSigning:
    """Load the configured key and anchors. Raises SettingsError naming what failed, or what is
    missing where no sandbox's test PKI stands in for it."""
    s = settings.signing
    signer: SigningKey | None = None
    trust: TrustStore | None = None
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
        elif not settings.sandboxed:
            raise SettingsError(f"[signing] key is required {UNLESS_SANDBOXED}")
        if s.trust:
            trust = TrustStore.from_pem_files(
                [settings.path(t) for t in s.trust], revocation=s.revocation
            )
        elif not settings.sandboxed:
            raise SettingsError(f"[signing] trust is required {UNLESS_SANDBOXED}")
    except SigningError as exc:
        raise SettingsError(f"[signing]: {exc}") from None
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
    return ConfiguredSigning(signer=signer, trust=trust, clients=clients)


def completed_signing(settings: Settings, configured: ConfiguredSigning) -> SigningSetup:
    """``configured``, with the sandboxes' test PKI (``[sandbox] pki``, made there on a first
    start) for the key and anchors it leaves out and the register's key, while a registry runs
    on its sandbox. Raises SettingsError naming the PKI's folder and what is wrong with it."""
    pki = _sandbox_pki(settings.path(settings.sandbox.pki)) if settings.sandboxed else None
    signer, trust = configured.signer, configured.trust
    if pki is not None:
        signer = signer or pki.key("gateway")
        trust = trust or pki.trust(revocation=settings.signing.revocation)
    if signer is None:
        raise SettingsError(f"[signing] key is required {UNLESS_SANDBOXED}")
    if trust is None:
        raise SettingsError(f"[signing] trust is required {UNLESS_SANDBOXED}")
    return SigningSetup(
        signer=signer,
        trust=trust,
        register=pki.key("register") if pki is not None else None,
        pki=pki,
        clients=configured.clients,
    )


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
