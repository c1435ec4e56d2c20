"""Byte caps on what signing reads from the network: CRLs, OCSP answers, issuers, TSA replies.

pyhanko-certvalidator's fetchers and pyHanko's TSA client read an answer whole
(``response.read()``), with only a time limit, and asn1crypto then builds Python objects for
every element: an 8 MiB CRL of padding took a verifier to 2.6 GB, 100 MiB to the OOM killer.
Their sessions here are made with a response class whose ``read()`` streams the body and stops
past its cap (or at once, when ``Content-Length`` says more): the fetcher then fails as on a
dropped connection (:class:`ReplyTooLarge` is an ``aiohttp.ClientError``), so the revocation
policy decides (soft-fail: status unknown; hard-fail: refused) and a timestamp is not made.
The body is counted as aiohttp gives it, decompressed.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

__all__ = [
    "MAX_CERT_BYTES",
    "MAX_CRL_BYTES",
    "MAX_OCSP_BYTES",
    "MAX_TSA_BYTES",
    "CappedReply",
    "CertReply",
    "CrlReply",
    "OcspReply",
    "ReplyTooLarge",
    "TsaReply",
]

# A CA's whole CRL: the national CAs' run to a few MiB (some hundred thousand revoked
# certificates of ~40 bytes each); four times that is room to grow.
MAX_CRL_BYTES = 16 * 1024 * 1024
# One certificate's status, the responder's signature and certificates: a few KiB.
MAX_OCSP_BYTES = 64 * 1024
# A CRL issuer's certificate (or a PKCS#7 bundle of a few), fetched from a CRL's address.
MAX_CERT_BYTES = 1024 * 1024
# An RFC 3161 reply: a token with the TSA's chain, a few KiB.
MAX_TSA_BYTES = 1024 * 1024


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n // 1024} KiB"


class ReplyTooLarge(aiohttp.ClientPayloadError):
    """An answer over its cap; the message names what was read and the cap."""


class CappedReply(aiohttp.ClientResponse):
    """A response whose ``read()`` keeps at most ``max_bytes``; subclasses set the cap."""

    what: ClassVar[str] = "reply"
    max_bytes: ClassVar[int] = MAX_TSA_BYTES

    def _too_large(self) -> ReplyTooLarge:
        return ReplyTooLarge(f"{self.what} larger than the limit ({_size(self.max_bytes)})")

    async def read(self) -> bytes:
        declared = self.content_length
        try:
            if declared is not None and declared > self.max_bytes:
                raise self._too_large()
            body = bytearray()
            async for chunk in self.content.iter_any():
                body += chunk
                if len(body) > self.max_bytes:
                    raise self._too_large()
        except BaseException:
            # Drop the connection: the rest of the body is never read, nor reused.
            self.close()
            raise
        return bytes(body)


class CrlReply(CappedReply):
    what = "CRL"
    max_bytes = MAX_CRL_BYTES


class OcspReply(CappedReply):
    what = "OCSP answer"
    max_bytes = MAX_OCSP_BYTES


class CertReply(CappedReply):
    what = "certificate"
    max_bytes = MAX_CERT_BYTES


class TsaReply(CappedReply):
    what = "timestamp reply"
    max_bytes = MAX_TSA_BYTES
