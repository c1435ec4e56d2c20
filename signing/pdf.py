# mypy: disable-error-code="no-untyped-call"
# (pyHanko and pyhanko-certvalidator are only partly annotated)
"""PAdES signatures with pyHanko: B-B, B-T (signature timestamp) and B-LT (revocation data in the DSS).

Verification covers PAdES (``ETSI.CAdES.detached``) and older ``adbe.pkcs7.detached`` signatures,
reported as legacy. pyHanko checks integrity, coverage and timestamps; the TrustStore checks the
signer's chain so reasons are the same as for XML. pyHanko's PDF work is CPU-bound and runs its own
event loop in a worker thread, so the caller's loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any, Literal

from asn1crypto import algos
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator.registry import SimpleCertificateStore

from .errors import SignatureInvalid, SigningError, TimestampError, UntrustedSigner
from .keys import SigningKey
from .report import SignatureReport
from .timestamps import timestamper
from .trust import TrustStore, common_name, from_asn1, to_asn1

__all__ = ["sign_pdf", "verify_pdf"]

Level = Literal["B-B", "B-T", "B-LT"]
LEGACY = "legacy adbe.pkcs7.detached"


class _KeySigner(Signer):
    """pyHanko's one hook (``async_sign_raw``) over any SigningKey, token keys included."""

    def __init__(self, key: SigningKey) -> None:
        mech = "sha256_rsa" if key.algorithm == "rsa" else "sha256_ecdsa"
        super().__init__(
            signing_cert=to_asn1(key.certificate),
            cert_registry=SimpleCertificateStore.from_certs([to_asn1(c) for c in key.chain]),
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mech}),
            embed_roots=False,
        )
        self._key = key

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if digest_algorithm != "sha256":
            raise SigningError(f"only SHA-256 signatures are produced, not {digest_algorithm}")
        if dry_run:  # pyHanko only sizes the placeholder: no need to spend a key operation
            return b"\x00" * (self._key.key_size // 8 if self._key.algorithm == "rsa" else 72)
        return self._key.sign(data)


async def _sign(
    data: bytes,
    key: SigningKey,
    level: Level,
    tsa_url: str | None,
    trust: TrustStore | None,
    field_name: str,
    reason: str | None,
) -> bytes:
    backend = trust.new_backend() if trust is not None else None
    vc = None
    if level == "B-LT":
        assert trust is not None and backend is not None
        vc = trust.validation_context(other_certs=key.chain, backend=backend, for_signing=True)
    meta = PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
        embed_validation_info=level == "B-LT",
        validation_context=vc,
        use_pades_lta=False,
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        out = io.BytesIO()
        async with contextlib.AsyncExitStack() as stack:
            stamper = None
            if level != "B-B" and tsa_url:
                stamper = await stack.enter_async_context(timestamper(tsa_url))
            await PdfSigner(meta, _KeySigner(key), timestamper=stamper).async_sign_pdf(
                writer, output=out
            )
        return out.getvalue()
    finally:
        if backend is not None:
            await backend.close()


async def sign_pdf(
    data: bytes,
    key: SigningKey,
    *,
    level: Level = "B-B",
    tsa_url: str | None = None,
    trust: TrustStore | None = None,
    field_name: str = "Signature1",
    reason: str | None = None,
) -> bytes:
    """Sign ``data`` (a PDF) as PAdES ``level`` in a new field ``field_name`` (incremental update).

    B-T and B-LT need ``tsa_url``; B-LT also needs ``trust`` (to fetch and embed CRLs/OCSP).
    Raises SigningError (bad arguments, not a PDF, field exists), TimestampError, KeyLoadError.
    """
    if level not in ("B-B", "B-T", "B-LT"):
        raise SigningError(f"unknown PAdES level {level!r}")
    if level != "B-B" and not tsa_url:
        raise SigningError(f"{level} needs a TSA URL")
    if level == "B-LT" and trust is None:
        raise SigningError("B-LT needs a trust store to collect revocation data")
    try:
        return await asyncio.to_thread(
            asyncio.run, _sign(data, key, level, tsa_url, trust, field_name, reason)
        )
    except SigningError:
        raise
    except Exception as exc:  # pyHanko: PdfReadError, SigningError, TimestampRequestError, …
        if "imestamp" in type(exc).__name__ or "imestamp" in str(exc):
            raise TimestampError(f"PDF signature timestamp failed: {exc}") from exc
        raise SigningError(f"cannot sign PDF: {type(exc).__name__}: {exc}") from exc


async def _verify_one(sig: Any, trust: TrustStore, has_dss: bool) -> SignatureReport:
    subfilter = str(sig.sig_object.get("/SubFilter", ""))
    legacy = subfilter == "/adbe.pkcs7.detached"
    leaf = from_asn1(sig.signer_cert)
    others = [from_asn1(c) for c in sig.other_embedded_certs]
    name = common_name(leaf)
    weak = [LEGACY] if legacy else []
    base = {"signer": name, "field_name": sig.field_name}
    backend = trust.new_backend()
    vc = trust.validation_context(other_certs=others, backend=backend)
    try:
        status = await async_validate_pdf_signature(
            sig, signer_validation_context=vc, ts_validation_context=vc
        )
    except Exception as exc:  # pyHanko: SignatureValidationError, WeakHashAlgorithmError, …
        return SignatureReport(valid=False, reason=f"malformed signature: {exc}", **base)
    finally:
        await backend.close()
    if status.md_algorithm in ("sha1", "md5"):
        weak.append(f"{status.md_algorithm.upper()} digest")
    level = LEGACY if legacy else "PAdES-B-B"
    signed_at, proven = status.signer_reported_dt, None
    stamp = status.timestamp_validity
    if stamp is not None:
        if not (stamp.intact and stamp.valid):
            return SignatureReport(
                valid=False, reason="signature timestamp does not verify", level=level, **base
            )
        if not stamp.trusted:  # any key can sign a token dated when it likes
            return SignatureReport(
                valid=False, reason="signature timestamp is not from a trusted TSA", **base
            )
        signed_at = proven = stamp.timestamp
        if not legacy:
            level = "PAdES-B-LT" if has_dss else "PAdES-B-T"
    if not status.intact:
        return SignatureReport(
            valid=False,
            reason="digest mismatch: the signed bytes changed",
            level=level,
            weaknesses=weak,
            **base,
        )
    if not status.valid:
        return SignatureReport(
            valid=False,
            reason="signature value does not verify",
            level=level,
            weaknesses=weak,
            **base,
        )
    if status.docmdp_ok is False:
        return SignatureReport(
            valid=False,
            reason="document modified after signing",
            level=level,
            weaknesses=weak,
            **base,
        )
    try:
        # As for XML: judged as of the timestamp's time when there is one (signing/xml.py).
        chain = await trust.validate(leaf, others, moment=proven)
    except UntrustedSigner as exc:
        revocation = "revoked" if "revoked" in exc.reason else "not checked"
        return SignatureReport(
            valid=False,
            reason=exc.reason,
            level=level,
            weaknesses=weak,
            revocation=revocation,
            signed_at=signed_at,
            **base,
        )
    return SignatureReport(
        valid=True,
        chain=chain.chain,
        signed_at=signed_at,
        level=level,
        revocation=chain.revocation,
        weaknesses=weak + chain.weaknesses,
        **base,
    )


# ISO 32000-1 §7.5.5: a PDF's last line is %%EOF (each incremental update ends with one), and
# readers look for it in the last 1,024 bytes. pyHanko searches the whole file backwards instead:
# ~0.2 s of CPU per MB of a file that has none (a 60 MB "PDF" in a package: 13 s).
_EOF_WINDOW = 1024


async def _verify(data: bytes, trust: TrustStore) -> list[SignatureReport]:
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise SignatureInvalid(f"not a readable PDF: no %%EOF in its last {_EOF_WINDOW} bytes")
    try:
        # strict=False: poppler's output has "orphaned generation" quirks (toolchain notes).
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = list(reader.embedded_signatures)
        has_dss = "/DSS" in reader.root
    except Exception as exc:  # pyHanko's PdfReadError, PdfStrictReadError, ValueError …
        raise SignatureInvalid(f"not a readable PDF: {exc}") from exc
    return [await _verify_one(s, trust, has_dss) for s in sigs]


async def verify_pdf(data: bytes, trust: TrustStore) -> list[SignatureReport]:
    """Verify every signature in a PDF; one report per signature, in document order.

    Raises :class:`SignatureInvalid` if the PDF is unreadable or has no signature, and
    :class:`UntrustedSigner` / :class:`SignatureInvalid` (the first report's reason) when no
    signature is valid.
    """
    reports = await asyncio.to_thread(asyncio.run, _verify(data, trust))
    if not reports:
        raise SignatureInvalid("no signature found")
    if not any(r.valid for r in reports):
        reason = reports[0].reason or "invalid signature"
        cls = (
            UntrustedSigner
            if reports[0].revocation == "revoked"
            or any(w in reason for w in ("certificate", "chain", "key usage", "revocation"))
            else SignatureInvalid
        )
        err = cls(reason)
        err.reports = reports  # type: ignore[attr-defined]
        raise err
    return reports
