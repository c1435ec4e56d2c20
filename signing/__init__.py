"""Signatures and trust for lienthong: XMLDSig/XAdES, PAdES, keys (files and PKCS#11 tokens),
chain and revocation checks, RFC 3161 timestamps. Independent of gateway and connectors."""

from .errors import KeyLoadError, SignatureInvalid, SigningError, TimestampError, UntrustedSigner
from .keys import SigningKey, load_key
from .pdf import sign_pdf, verify_pdf
from .report import SignatureReport
from .testing import TestPKI, serve_pki
from .timestamps import TimestampInfo, request_timestamp, serve_tsa, verify_timestamp
from .trust import ChainResult, TrustStore
from .xml import XMLVerification, sign_xml, sign_xml_sync, verify_xml, verify_xml_sync

__all__ = [
    "ChainResult",
    "KeyLoadError",
    "SignatureInvalid",
    "SignatureReport",
    "SigningError",
    "SigningKey",
    "TestPKI",
    "TimestampError",
    "TimestampInfo",
    "TrustStore",
    "UntrustedSigner",
    "XMLVerification",
    "load_key",
    "request_timestamp",
    "serve_pki",
    "serve_tsa",
    "sign_pdf",
    "sign_xml",
    "sign_xml_sync",
    "verify_pdf",
    "verify_timestamp",
    "verify_xml",
    "verify_xml_sync",
]
