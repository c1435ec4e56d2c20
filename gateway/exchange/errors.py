"""Errors of the document exchange, each with a stable problem slug.

Hierarchy::

    ExchangeError                      (root; slug ``exchange-error``, 400)
    ├── InvalidEdxml                   invalid-edxml            400
    │   └── SchemaInvalid              invalid-edxml            400  (XSD report attached)
    ├── DoctypeForbidden               doctype-forbidden        400
    ├── PayloadTooLarge                payload-too-large        413
    ├── SignatureInvalid               signature-invalid        422
    ├── ForgedSender                   forged-sender            403
    ├── UnknownRecipient               unknown-recipient        422
    ├── StatusTransitionError          status-transition        409
    ├── UnknownDocument                unknown-document         404
    ├── NotDelivered                   not-delivered            409
    ├── DuplicateConflict              duplicate-conflict       409
    ├── ReceiptUnsigned                documents-unavailable    503  (the hub's key cannot sign)
    └── BlobError                      blob-store               500
        └── BlobStoreUnavailable       store-unavailable        503  (no room, folder gone)

Foreign exceptions (lxml, expat, binascii, zipfile, OSError) are translated into one of these at
the module that calls the foreign code; nothing else escapes the public functions of this package.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BlobError",
    "BlobStoreUnavailable",
    "DoctypeForbidden",
    "DuplicateConflict",
    "ExchangeError",
    "ForgedSender",
    "InvalidEdxml",
    "NotDelivered",
    "PayloadTooLarge",
    "ReceiptUnsigned",
    "SchemaInvalid",
    "SignatureInvalid",
    "StatusTransitionError",
    "UnknownDocument",
    "UnknownRecipient",
]


class ExchangeError(Exception):
    """Root of every error this package raises.

    ``slug`` becomes the problem type ``urn:lienthong:problem:<slug>``; ``status`` the HTTP status;
    ``extra`` is merged into the problem document (machine-readable details).
    """

    slug: ClassVar[str] = "exchange-error"
    title: ClassVar[str] = "Document exchange error"
    status: ClassVar[int] = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra

    @property
    def type_uri(self) -> str:
        return f"urn:lienthong:problem:{self.slug}"

    def problem(self) -> dict[str, Any]:
        """RFC 9457 body without ``instance``/``request_id`` (the HTTP layer adds those)."""
        return {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class InvalidEdxml(ExchangeError):
    slug = "invalid-edxml"
    title = "The package is not valid edXML"


class SchemaInvalid(InvalidEdxml):
    title = "The package does not match the edXML schema"


class DoctypeForbidden(ExchangeError):
    slug = "doctype-forbidden"
    title = "DOCTYPE and entity declarations are refused"


class PayloadTooLarge(ExchangeError):
    slug = "payload-too-large"
    title = "The package is larger than the configured limit"
    status = 413


class SignatureInvalid(ExchangeError):
    slug = "signature-invalid"
    title = "A signature is missing, invalid or untrusted"
    status = 422


class ForgedSender(ExchangeError):
    slug = "forged-sender"
    title = "From/OrganId is not the authenticated sender"
    status = 403


class UnknownRecipient(ExchangeError):
    slug = "unknown-recipient"
    title = "A recipient is not a known agency"
    status = 422


class StatusTransitionError(ExchangeError):
    slug = "status-transition"
    title = "This status cannot follow the recipient's current status"
    status = 409


class UnknownDocument(ExchangeError):
    slug = "unknown-document"
    title = "No such document for this agency"
    status = 404


class NotDelivered(ExchangeError):
    slug = "not-delivered"
    title = "The document was not delivered to this agency yet"
    status = 409


class DuplicateConflict(ExchangeError):
    slug = "duplicate-conflict"
    title = "The DocumentId was already used for a different package"
    status = 409


class ReceiptUnsigned(ExchangeError):
    """The hub cannot sign a receipt now (its certificate expired, its token failed): nothing of
    the package was kept, and the same request may succeed once an operator has seen to it."""

    slug = "documents-unavailable"
    title = "The hub cannot sign receipts now"
    status = 503


class BlobError(ExchangeError):
    slug = "blob-store"
    title = "The blob store failed"
    status = 500


class BlobStoreUnavailable(BlobError):
    """The blob store's disk is full or failing, or its folder gone or unwritable: the same
    request may succeed later. Its text names the folder: for the log, not the client."""

    slug = "store-unavailable"
    title = "The gateway cannot store documents now"
    status = 503
