"""Exceptions raised by the signing package.

Every public call raises only these; foreign exceptions (cryptography, lxml, signxml, pyHanko,
python-pkcs11, aiohttp) are translated at the boundary and chained as ``__cause__``::

    SigningError                    root: catch this to catch everything from signing
    ├── KeyLoadError                bad key path, password, PIN, PKCS#11 URI or module
    ├── SignatureInvalid            .reason: "digest mismatch", "signature wrapping: …",
    │   │                           "DOCTYPE not allowed", "weak algorithm: …", …
    │   ├── UntrustedSigner         chain does not reach a configured anchor, or the signer's
    │   │                           certificate is expired, revoked, or lacks the signing key usage
    │   └── DocumentTooComplex      a PDF refused before the work its checking would cost (too
    │                               many signatures, form fields, objects in object streams)
    └── TimestampError              TSA unreachable, refused, or a token that does not verify
"""

from __future__ import annotations


class SigningError(Exception):
    """Root of every error raised by :mod:`signing`."""


class KeyLoadError(SigningError):
    """A key could not be loaded: bad path, password, PIN, URI or PKCS#11 module."""


class SignatureInvalid(SigningError):
    """A signature does not verify; ``reason`` says precisely why (stable, short text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UntrustedSigner(SignatureInvalid):
    """The signature is intact but its signer is not trusted (chain, validity, revocation, usage).

    ``kind`` says why, for code to branch on (``reason`` is for people, and ends with a subject's
    name, which may say anything): "no-chain", "chain-invalid", "expired", "not-yet-valid",
    "revoked", "revocation-unknown" or "usage".
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


class DocumentTooComplex(SignatureInvalid):
    """A document refused unchecked: verifying it would cost more than any genuine one needs
    (``signing.pdf_limits``). Its signatures are neither valid nor shown invalid."""


class TimestampError(SigningError):
    """An RFC 3161 timestamp could not be obtained or does not verify."""
