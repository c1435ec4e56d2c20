"""Document exchange: edXML packages between agencies through the hub.

``stream.scan_file`` reads a package from disk in constant memory (attachments to the blob store),
``schema.validate`` checks it against schemas/xsd/edxml.xsd, ``edxml.read_package`` types it,
``xmldsig`` verifies (and makes) the envelope signature, ``check.check_package`` runs the whole
acceptance check, ``status.advance`` is the recipients' status machine, ``receipt`` the hub's
signed receipt, ``builder`` makes packages and status messages.
"""

from gateway.exchange.blobs import BlobRef, BlobStore
from gateway.exchange.builder import (
    SIGNATURE_PARENT,
    FileAttachment,
    NewAttachment,
    append_trace_header,
    build_package,
    build_status,
    write_package,
)
from gateway.exchange.check import Checked, CheckedStatus, CheckPolicy, check_package, check_status
from gateway.exchange.delivery import PushHandler, package_body
from gateway.exchange.edxml import check_prolog, parse_bytes, read_package, read_status
from gateway.exchange.errors import (
    BlobError,
    BlobStoreUnavailable,
    DoctypeForbidden,
    DuplicateConflict,
    ExchangeError,
    ForgedSender,
    InvalidEdxml,
    NotDelivered,
    PayloadTooLarge,
    ReceiptUnsigned,
    SchemaInvalid,
    SignatureInvalid,
    StatusTransitionError,
    UnknownDocument,
    UnknownRecipient,
)
from gateway.exchange.hub import Accepted, AgencyRoute, DocumentHub, IncomingPart
from gateway.exchange.receipt import Receipt, build_receipt, read_receipt, sign_receipt
from gateway.exchange.schema import validate
from gateway.exchange.status import StatusState, advance, replay
from gateway.exchange.stream import Scan, scan_file
from gateway.exchange.trace import forward_copy
from gateway.exchange.xmldsig import EnvelopeSignature, sign_bytes, sign_file, verify_envelope

__all__ = [
    "SIGNATURE_PARENT",
    "Accepted",
    "AgencyRoute",
    "BlobError",
    "BlobRef",
    "BlobStore",
    "BlobStoreUnavailable",
    "CheckPolicy",
    "Checked",
    "CheckedStatus",
    "DoctypeForbidden",
    "DocumentHub",
    "DuplicateConflict",
    "EnvelopeSignature",
    "ExchangeError",
    "FileAttachment",
    "ForgedSender",
    "IncomingPart",
    "InvalidEdxml",
    "NewAttachment",
    "NotDelivered",
    "PayloadTooLarge",
    "PushHandler",
    "Receipt",
    "ReceiptUnsigned",
    "Scan",
    "SchemaInvalid",
    "SignatureInvalid",
    "StatusState",
    "StatusTransitionError",
    "UnknownDocument",
    "UnknownRecipient",
    "advance",
    "append_trace_header",
    "build_package",
    "build_receipt",
    "build_status",
    "check_package",
    "check_prolog",
    "check_status",
    "forward_copy",
    "package_body",
    "parse_bytes",
    "read_package",
    "read_receipt",
    "read_status",
    "replay",
    "scan_file",
    "sign_bytes",
    "sign_file",
    "sign_receipt",
    "validate",
    "verify_envelope",
    "write_package",
]
