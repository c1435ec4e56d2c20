"""The civil-status register connector (hộ tịch điện tử, Ministry of Justice): birth and death
registration over SOAP, requests signed (XMLDSig) and birth certificates verified (PAdES)."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes
from lxml import etree

import schemas
from connectors.api import Connector, Endpoint, PermanentError, Request, Result, TransientError
from connectors.civil_status import mapping
from connectors.civil_status.pdftext import signed_text
from connectors.soap import SOAP_ENV, SoapClient
from connectors.text import VIETNAM
from signing.errors import SignatureInvalid, SigningError, UntrustedSigner
from signing.keys import SigningKey
from signing.pdf import verify_pdf
from signing.trust import TrustStore
from signing.xml import sign_xml

__all__ = ["WSDL", "CivilStatusConnector", "add_soap_header"]

WSDL = schemas.path("wsdl", "civil_status.wsdl")
_HEADER = f"{{{SOAP_ENV}}}Header"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def add_soap_header(envelope: bytes) -> bytes:
    """The envelope with an (empty) ``soap:Header`` first, to hold the signature.

    Only ever called on envelopes zeep just built from our own data (small, trusted)."""
    root = etree.fromstring(envelope)
    if root.find(_HEADER) is None:
        root.insert(0, etree.Element(_HEADER))
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return data


class CivilStatusConnector(Connector):
    """``birth.register`` and ``death.register``.

    ``signer`` signs every request when ``endpoint.sign_requests`` (enveloped XMLDSig over the whole
    envelope, in ``soap:Header``); ``trust`` verifies the register's signature on the birth
    certificate before the result is accepted — with ``trust=None`` the certificate is passed on
    unverified and ``certificate_signer`` is None. A chain to a trusted root is not enough (an
    agency's certificate, or the gateway's, chains to the same root): every signature on the
    certificate must be made with one of ``register_fingerprints`` (the SHA-256 of the register's
    certificates, hex, any case, colons or not: the old and the new while it renews its own),
    and the revision it signed must show the registration number and the personal id the reply
    gives. ``province_code`` (``maTinhDangKy``) and
    ``agency_id`` (``maDonVi``) are the registering authority, overridable per call by
    ``params["place"]["province_code"]``.

    :meth:`call` raises :class:`PermanentError` for bad params, Client faults, 4xx, a certificate
    whose signature does not verify or is not the register's (``code="signature-invalid"``) and
    a request that cannot be signed (``code="signing-failed"``); :class:`TransientError` for
    network failures, 5xx, Server faults and malformed replies (a certificate that does not show
    the registration it came with among them).

    Raises:
        ValueError: ``sign_requests`` without a ``signer``; ``trust`` without
            ``register_fingerprints``, or one of them not a SHA-256 fingerprint.
    """

    registry: ClassVar[str] = "civil_status"
    operations: ClassVar[frozenset[str]] = frozenset({"birth.register", "death.register"})

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        signer: SigningKey | None = None,
        trust: TrustStore | None = None,
        agency_id: str = "000.00.00.H41",
        province_code: str = "040",
        wsdl: Path = WSDL,
        register_fingerprints: Iterable[str] = (),
    ) -> None:
        if endpoint.sign_requests and signer is None:
            raise ValueError("endpoint.sign_requests needs a signer")
        pinned = frozenset(f.lower().replace(":", "") for f in register_fingerprints)
        if trust is not None and not pinned:
            raise ValueError(
                "trust needs register_fingerprints: the certificates of the register, the only "
                "signers of a birth certificate (another agency's chains to the same root)"
            )
        bad = sorted(f for f in pinned if not _SHA256_HEX.fullmatch(f))
        if bad:
            raise ValueError(f"register_fingerprints: {bad[0]!r} is not a SHA-256 fingerprint")
        self.endpoint = endpoint
        self.signer = signer
        self.trust = trust
        self.register_fingerprints = pinned
        self.agency_id = agency_id
        self.province_code = province_code
        self._soap = SoapClient(self.registry, endpoint, wsdl)

    async def open(self) -> None:
        await self._soap.open()

    async def close(self) -> None:
        await self._soap.close()

    async def _sign(self, envelope: bytes) -> bytes:
        assert self.signer is not None
        try:
            return await sign_xml(add_soap_header(envelope), self.signer, parent=_HEADER)
        except SigningError as exc:
            raise PermanentError(
                self.registry, f"cannot sign the request: {exc}", code="signing-failed"
            ) from exc

    async def handle(self, request: Request) -> Result:
        params = request.params
        request_id = request.idempotency_key or request.request_id or uuid.uuid4().hex
        today = datetime.now(VIETNAM).date()
        build = (
            mapping.birth_request
            if request.operation == "birth.register"
            else mapping.death_request
        )
        fields = self._map(
            lambda: build(
                params,
                request_id,
                agency_id=str(params.get("agency_id") or self.agency_id),
                province_code=self.province_code,
                today=today,
            ),
            PermanentError,
        )
        sign = self._sign if self.endpoint.sign_requests else None
        # Both operations are writes the register performs once per maYeuCau (always set, above;
        # a repeated id gets the original answer), which a second sending of the same signed
        # envelope carries: safe to send twice.
        if request.operation == "death.register":
            reply = await self._soap.call("DangKyKhaiTu", fields, sign=sign, repeatable=True)
            data = self._map(lambda: mapping.death_result(reply), TransientError)
            return Result(data=data, reference=data["death_record_number"])
        reply = await self._soap.call("DangKyKhaiSinh", fields, sign=sign, repeatable=True)
        data, pdf = self._map_birth(reply, fields)
        data["certificate_signer"] = await self._verify_certificate(
            pdf, registered=data["registration_number"], personal_id=data["personal_id"]
        )
        data["certificate_pdf"] = base64.b64encode(pdf).decode("ascii")
        return Result(data=data, reference=data["registration_number"])

    def _map_birth(
        self, reply: dict[str, Any], asked: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        try:
            return mapping.birth_result(reply, asked)
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(self.registry, f"malformed reply: {exc}") from exc

    async def _verify_certificate(
        self, pdf: bytes, *, registered: str, personal_id: str
    ) -> str | None:
        """The signer's name. Raises PermanentError (``signature-invalid``) when it does not
        verify against ``trust`` or is not the register's, TransientError (a malformed reply)
        when it does not show ``registered`` and ``personal_id``: the registration happened, but
        its evidence is not acceptable. Every error raised carries the registration number as
        ``recorded``: the birth is registered, and a step that sent another request under its
        key would be refused."""
        if self.trust is None:
            return None
        try:
            reports = await verify_pdf(pdf, self.trust)
        except SignatureInvalid as exc:
            if isinstance(exc, UntrustedSigner) and exc.kind == "revocation-unknown":
                # Hard-fail and the CRL/OCSP server did not answer: ask again later; the
                # registry's idempotency record gives back the same certificate.
                raise TransientError(
                    self.registry,
                    f"birth certificate not yet verifiable: {exc.reason}",
                    recorded=registered,
                ) from exc
            raise PermanentError(
                self.registry,
                f"birth certificate signature refused: {exc.reason}",
                code="signature-invalid",
                recorded=registered,
            ) from exc
        except SigningError as exc:
            raise PermanentError(
                self.registry,
                f"birth certificate cannot be verified: {exc}",
                code="signature-invalid",
                recorded=registered,
            ) from exc
        valid = [r for r in reports if r.valid]
        if len(valid) != len(reports):
            bad = next(r for r in reports if not r.valid)
            raise PermanentError(
                self.registry,
                f"birth certificate carries an invalid signature: {bad.reason}",
                code="signature-invalid",
                recorded=registered,
            )
        for report in reports:
            cert = report.certificate
            sha256 = cert.fingerprint(hashes.SHA256()).hex() if cert is not None else None
            if sha256 not in self.register_fingerprints:
                raise PermanentError(
                    self.registry,
                    f"birth certificate signed by {report.signer}, not by the civil-status "
                    f"register (SHA-256 {sha256 or 'unknown'} is not among its certificates)",
                    code="signature-invalid",
                    recorded=registered,
                )
        await self._check_shows(pdf, registered, personal_id)
        return valid[-1].signer

    async def _check_shows(self, pdf: bytes, registered: str, personal_id: str) -> None:
        """The register signed a certificate of this birth: the revision it signed shows the
        registration number and the child's personal id of the reply (a genuine certificate of
        another child, handed back with this registration, would be filed as this child's).
        Each must stand apart, not inside a longer number. Raises TransientError."""
        try:
            text = await asyncio.to_thread(signed_text, pdf)
        except ValueError as exc:
            raise TransientError(
                self.registry,
                f"malformed reply: the birth certificate cannot be read: {exc}",
                recorded=registered,
            ) from exc
        for value, what in (
            (registered, f"registration number {registered}"),
            (personal_id, "the personal id the register answered"),
        ):
            if not re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text):
                raise TransientError(
                    self.registry,
                    f"malformed reply: the birth certificate does not show {what}",
                    recorded=registered,
                )
