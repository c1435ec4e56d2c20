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
import datetime as dt
import io
import itertools
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from asn1crypto import algos, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    DiffResult,
    FormUpdatingRule,
    GenericFieldModificationRule,
    ModificationLevel,
    SigFieldCreationRule,
    SigFieldModificationRule,
    StandardDiffPolicy,
)
from pyhanko.sign.fields import SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore, async_add_validation_info
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.registry import SimpleCertificateStore

from . import pdf_limits
from .errors import (
    DocumentTooComplex,
    SignatureInvalid,
    SigningError,
    TimestampError,
    UntrustedSigner,
)
from .keys import SigningKey, pkcs1_not_allowed
from .report import SignatureReport
from .timestamps import _shown, timestamper, tsa_failure
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
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    except Exception as exc:  # pyHanko's PdfReadError, or a bare AssertionError
        raise SigningError(f"not a readable PDF: {_unreadable(exc)}") from exc
    meta = PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
        use_pades_lta=False,
    )
    if level == "B-LT":
        assert trust is not None
        await _check_chain(key, trust)
    out = io.BytesIO()
    async with contextlib.AsyncExitStack() as stack:
        stamper = None
        if level != "B-B" and tsa_url:
            stamper = await stack.enter_async_context(timestamper(tsa_url))
        await PdfSigner(meta, _KeySigner(key), timestamper=stamper).async_sign_pdf(
            writer, output=out
        )
    if level != "B-LT":
        return out.getvalue()
    assert trust is not None
    return await _add_revocation_data(out.getvalue(), field_name, key, trust)


async def _check_chain(key: SigningKey, trust: TrustStore) -> None:
    """Validate the signer's chain with its revocation data fetched (hard-fail), before anything
    is signed or stamped: a chain whose data cannot be had, or a revoked signer, costs no key
    operation and no timestamp. Raises pyhanko-certvalidator's errors."""
    backend = trust.new_backend()
    try:
        vc = trust.validation_context(other_certs=key.chain, backend=backend, for_signing=True)
        validator = CertificateValidator(to_asn1(key.certificate), validation_context=vc)
        await validator.async_validate_usage(key_usage=set())
    finally:
        await backend.close()


async def _add_revocation_data(
    signed: bytes, field_name: str, key: SigningKey, trust: TrustStore
) -> bytes:
    """``signed`` with the CRLs and OCSP answers for the chains of its signature ``field_name``
    and of that signature's timestamp in its DSS, in a revision of their own.

    They are fetched now, after the timestamp: revocation data proves the signer's status at the
    timestamp only if issued after it (:data:`REVOCATION_GRACE`), so none may come from the
    trust store's cache either (an answer fetched minutes ago for an earlier document)."""
    uncached = TrustStore(
        trust.anchors,
        revocation=trust.revocation,
        intermediates=trust.intermediates,
        fetch_timeout=trust.fetch_timeout,
        cache_ttl=0,
    )
    backend = uncached.new_backend()
    try:
        vc = uncached.validation_context(other_certs=key.chain, backend=backend, for_signing=True)
        reader = PdfFileReader(io.BytesIO(signed), strict=False)
        sig_field = next(f for name, _, f in enumerate_sig_fields(reader) if name == field_name)
        out = await async_add_validation_info(
            EmbeddedPdfSignature(reader, sig_field, field_name), vc, embed_roots=False
        )
        return bytes(out.getvalue())
    finally:
        await backend.close()


async def sign_pdf(
    data: bytes,
    key: SigningKey,
    *,
    level: Level = "B-B",
    tsa_url: str | None = None,
    trust: TrustStore | None = None,
    field_name: str | None = None,
    reason: str | None = None,
) -> bytes:
    """Sign ``data`` (a PDF) as PAdES ``level`` in a new field ``field_name`` (incremental update;
    by default the first of Signature1, Signature2, … the PDF does not have yet, so that a signed
    PDF can be signed again: each signature covers the revisions before it).

    B-T and B-LT need ``tsa_url``; B-LT also needs ``trust`` (to fetch and embed CRLs/OCSP, after
    the timestamp, in the next revision) and fails when that data cannot be had for the whole
    chain (the signer's and the TSA's): the result must validate from its DSS alone, as
    :func:`verify_pdf` then checks it.
    Raises SigningError (bad arguments, not a readable PDF, field exists, B-LT without revocation
    data), TimestampError (naming the TSA and what went wrong), KeyLoadError.
    """
    if level not in ("B-B", "B-T", "B-LT"):
        raise SigningError(f"unknown PAdES level {level!r}")
    if level != "B-B" and not tsa_url:
        raise SigningError(f"{level} needs a TSA URL")
    if level == "B-LT" and trust is None:
        raise SigningError("B-LT needs a trust store to collect revocation data")
    if field_name is None:  # reading the PDF's fields is CPU work (25 ms for a certificate)
        field_name = await asyncio.to_thread(_free_field_name, data)
    try:
        out = await asyncio.to_thread(
            asyncio.run, _sign(data, key, level, tsa_url, trust, field_name, reason)
        )
    except SigningError:
        raise
    except Exception as exc:  # pyHanko: PdfReadError, SigningError, TimestampRequestError, …
        if tsa_url and ("imestamp" in type(exc).__name__ or "imestamp" in str(exc)):
            raise TimestampError(
                f"PDF signature timestamp from {_shown(tsa_url)} failed: "
                f"{tsa_failure(exc, tsa_url)}"
            ) from exc
        cause = _validation_cause(exc)
        if level == "B-LT" and cause is not None:
            raise SigningError(
                f"B-LT: cannot embed revocation data for the signer's chain: {_describe(cause)}"
            ) from exc
        raise SigningError(f"cannot sign PDF: {type(exc).__name__}: {_describe(exc)}") from exc
    if level == "B-LT":
        assert trust is not None
        # What a verifier will see: a signature that validates from its DSS alone, nothing
        # fetched. Anything less is not B-LT, and is not written as such.
        reports = await asyncio.to_thread(asyncio.run, _verify(out, trust, dss_only=True))
        mine = next((r for r in reports if r.field_name == field_name), None)
        if mine is None or not mine.valid or mine.level != "PAdES-B-LT":
            why = mine.reason if mine is not None else "the new signature was not found"
            raise SigningError(
                f"B-LT: the signature does not validate from its embedded revocation data: {why}"
            )
    return out


def _free_field_name(data: bytes) -> str:
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        taken = {name for name, _, _ in enumerate_sig_fields(reader)}
    except Exception:  # not a PDF: pyHanko says so when it tries to sign
        return "Signature1"
    return next(f"Signature{n}" for n in range(1, len(taken) + 2) if f"Signature{n}" not in taken)


def _validation_cause(exc: BaseException) -> BaseException | None:
    """The pyhanko-certvalidator error behind a pyHanko signing failure, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.startswith("pyhanko_certvalidator"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# Revocation data proves a signer's status at its signature's timestamp only when issued after
# that time (ETSI EN 319 102-1, 5.2.5.4): an OCSP "good" fetched before the signer was revoked
# stays within its validity window for hours, a CRL for days, and whoever holds a revoked key
# could put such an answer in the DSS of each new signature. Data about the signer's own
# certificate therefore counts in a B-LT judgement only when issued (an OCSP answer's producedAt,
# a CRL's thisUpdate) at most this long before the timestamp: the TSA's clock and the responder's
# differ a little, and producedAt is in whole seconds (a signature made that soon after a
# revocation could still stand on an answer from before it). (CA certificates' data counts while
# valid at the timestamp: a CA's own CRL is issued for months.)
REVOCATION_GRACE = dt.timedelta(seconds=5)


@dataclass
class _Embedded:
    """The certificates and revocation data (DER) a PDF's DSS carries, for B-LT validation."""

    certs: list[x509.Certificate] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    ocsps: list[bytes] = field(default_factory=list)

    def fresh_for(self, signer: x509.Certificate, stamped: dt.datetime) -> tuple[_Embedded, int]:
        """This DSS less the revocation data about ``signer`` issued more than
        REVOCATION_GRACE before ``stamped`` (its signature's timestamp), and how many entries
        that left out."""
        oldest = stamped - REVOCATION_GRACE

        def stale(issued: dt.datetime | None) -> bool:
            return issued is not None and issued < oldest

        crls = [d for d in self.crls if not stale(_crl_issued(d, signer))]
        ocsps = [d for d in self.ocsps if not stale(_ocsp_issued(d, signer))]
        left_out = len(self.crls) - len(crls) + len(self.ocsps) - len(ocsps)
        return _Embedded(self.certs, crls, ocsps), left_out


def _crl_issued(der: bytes, cert: x509.Certificate) -> dt.datetime | None:
    """When the CRL ``der`` was issued, if it is one of ``cert``'s issuer's (None if not)."""
    crl = x509.load_der_x509_crl(der)
    return crl.last_update_utc if crl.issuer == cert.issuer else None


def _ocsp_issued(der: bytes, cert: x509.Certificate) -> dt.datetime | None:
    """When the OCSP answer ``der`` was produced, if it speaks of ``cert`` (None if not)."""
    answer = ocsp.load_der_ocsp_response(der)
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return None
    issuer = cert.issuer.public_bytes()
    for single in answer.responses:
        digest = hashes.Hash(single.hash_algorithm)
        digest.update(issuer)
        if single.serial_number == cert.serial_number and (
            single.issuer_name_hash == digest.finalize()
        ):
            return answer.produced_at_utc
    return None


def _read_dss(reader: PdfFileReader) -> _Embedded:
    if pdf_limits.dss_size(reader) > pdf_limits.MAX_DSS_ENTRIES:
        # More than every allowed signature's chains need: padding, each entry of which would
        # be parsed and offered to validation. Such a DSS embeds nothing (B-T, judged online).
        return _Embedded()
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return _Embedded()
    out = _Embedded()
    # An entry that cannot be read is left out: the signature stands or falls on the rest. A
    # CRL or OCSP answer is parsed here, as validation would: one that does not parse made the
    # whole validation context fail.
    for ref in dss.certs.values():
        with contextlib.suppress(Exception):
            out.certs.append(x509.load_der_x509_certificate(ref.get_object().data))
    for refs, dest, load in (
        (dss.crls, out.crls, x509.load_der_x509_crl),
        (dss.ocsps, out.ocsps, ocsp.load_der_ocsp_response),
    ):
        for ref in refs:
            with contextlib.suppress(Exception):
                der = bytes(ref.get_object().data)
                load(der)
                dest.append(der)
    return out


def _unreadable(exc: BaseException) -> str:
    """Why pyHanko cannot read a PDF. Its reader stops on some malformed cross-reference data
    with a bare ``assert`` (an AssertionError with no text)."""
    if str(exc).strip():
        return _describe(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and frames[-1].filename.endswith("xref.py"):
        return "its cross-reference data is corrupt"
    return f"its structure is corrupt ({type(exc).__name__})"


def _describe(exc: BaseException) -> str:
    """A pyHanko / asn1crypto error as one readable line (their texts run over several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _cms_problem(exc: BaseException) -> str:
    return f"malformed signature: the CMS in /Contents cannot be read ({_describe(exc)})"


_SUBFILTERS = {"/" + str(sf.value).lstrip("/") for sf in SigSeedSubFilter}


def _signatures(reader: PdfFileReader, fields: int) -> list[Any]:
    """Each filled signature field as pyHanko's EmbeddedPdfSignature, in signing order, or as a
    SignatureReport (after the rest) when its signature dictionary or CMS cannot be read.

    pyHanko's ``reader.embedded_signatures`` parses every CMS up front and fails the whole file
    on the first bad one, and skips a field with an unknown SubFilter with only a log line."""
    good: list[Any] = []
    bad: list[SignatureReport] = []
    filled = list(
        itertools.islice(
            enumerate_sig_fields(reader, filled_status=True), pdf_limits.MAX_SIGNATURES + 1
        )
    )
    if len(filled) > pdf_limits.MAX_SIGNATURES:
        raise DocumentTooComplex(
            f"too many signatures: the PDF has more than {pdf_limits.MAX_SIGNATURES} signed "
            "fields, each of which would be checked"
        )
    for fq_name, sig_obj, sig_field in filled:
        base: dict[str, Any] = {"signer": "unknown", "level": "unknown", "field_name": fq_name}
        try:
            subfilter = str(sig_obj.get_object().get("/SubFilter", ""))
        except Exception as exc:
            bad.append(SignatureReport(valid=False, reason=f"malformed signature: {exc}", **base))
            continue
        if subfilter not in _SUBFILTERS:
            bad.append(
                SignatureReport(
                    valid=False,
                    reason=f"unsupported signature type: SubFilter {subfilter or 'missing'}",
                    **base,
                )
            )
            continue
        try:
            emb = EmbeddedPdfSignature(reader, sig_field, fq_name)
            padded = _padded(emb)
            if padded:
                bad.append(SignatureReport(valid=False, reason=padded, **base))
                continue
            # pyHanko reads the certificates lazily: a CMS whose certificates do not parse
            # fails here, not above.
            base["signer"] = common_name(emb.signer_cert)
            content_type = emb.signed_data["encap_content_info"]["content_type"].native
        except SignatureValidationError as exc:  # parsed, but inconsistent
            bad.append(
                SignatureReport(
                    valid=False, reason=f"malformed signature: {_describe(exc)}", **base
                )
            )
            continue
        except Exception as exc:  # asn1crypto's ValueError, pyHanko's PdfReadError, …
            bad.append(SignatureReport(valid=False, reason=_cms_problem(exc), **base))
            continue
        if not hasattr(emb, "external_md_algorithm"):  # neither data nor a timestamp token
            bad.append(
                SignatureReport(
                    valid=False,
                    reason=f"malformed signature: the CMS encapsulates {content_type!r}, "
                    "not 'data'",
                    **base,
                )
            )
            continue
        good.append(emb)
    last = reader.xrefs.total_revisions - 1
    pdf_limits.check_diff_work([last - _signed_revision(e) for e in good], fields)
    with contextlib.suppress(Exception):
        good.sort(key=lambda e: e.signed_revision)
    return [*good, *bad]


def _signed_revision(sig: Any) -> int:
    """The revision a signature covers; the first when that cannot be told (the most work)."""
    try:
        return int(sig.signed_revision)
    except Exception:
        return 0


def _padded(emb: Any) -> str | None:
    """Why a signature is refused for the certificates its CMS (or its timestamp token's)
    carries, counted before any is parsed (pdf_limits.MAX_CMS_CERTIFICATES), or None."""
    cmses = [emb.signed_data]
    with contextlib.suppress(Exception):  # a token that cannot be read fails validation later
        cmses += list(extract_tst_data_iter(emb.signer_info, signed=False))
    for cms in cmses:
        certs = cms["certificates"]
        count = 0 if isinstance(certs, core.Void) else len(certs)
        if count > pdf_limits.MAX_CMS_CERTIFICATES:
            what = "signature" if cms is emb.signed_data else "signature timestamp"
            return (
                f"too many certificates in the {what}: its CMS carries {count}, more than the "
                f"{pdf_limits.MAX_CMS_CERTIFICATES} checked"
            )
    return None


async def _verify_one(
    sig: Any, trust: TrustStore, dss: _Embedded, dss_only: bool
) -> SignatureReport:
    if isinstance(sig, SignatureReport):
        return sig
    try:
        return await _verify_parsed(sig, trust, dss, dss_only)
    except Exception as exc:  # a CMS that pyHanko parses lazily and only now finds broken
        return SignatureReport(
            valid=False,
            signer=_signer_name(sig),
            level="unknown",
            field_name=getattr(sig, "field_name", None),
            reason=_cms_problem(exc),
        )


def _signer_name(sig: Any) -> str:
    try:
        return common_name(sig.signer_cert)
    except Exception:
        return "unknown"


async def _verify_parsed(
    sig: Any, trust: TrustStore, dss: _Embedded, dss_only: bool
) -> SignatureReport:
    """One signature's report; ``dss_only``: judged from the DSS alone, never online (what
    sign_pdf checks of the B-LT signature it made)."""
    subfilter = str(sig.sig_object.get("/SubFilter", ""))
    legacy = subfilter == "/adbe.pkcs7.detached"
    leaf = from_asn1(sig.signer_cert)
    others = [from_asn1(c) for c in sig.other_embedded_certs]
    base = {"signer": common_name(leaf), "field_name": sig.field_name}
    if dss.crls or dss.ocsps:
        # B-LT: the DSS must carry what it takes to validate the signer's chain and the
        # timestamp's with nothing fetched. If it does, the signature stands on its own; if it
        # does not, it is no B-LT signature and is judged as B-T, with what can be fetched.
        try:
            report = await _judge(sig, trust, leaf, [*others, *dss.certs], base, legacy, dss)
        except Exception as exc:  # data pyHanko cannot use: no B-LT signature either
            why = f"its DSS cannot be used: {_describe(exc)}"
            report = SignatureReport(valid=False, reason=why, level="unknown", **base)
        if report.valid or dss_only:
            return report
    elif dss_only:
        return SignatureReport(
            valid=False, reason="no revocation data in the DSS", level="unknown", **base
        )
    return await _judge(sig, trust, leaf, others, base, legacy, None)


def _stamp_time(sig: Any) -> dt.datetime | None:
    """The time the signature timestamp claims (pyHanko then checks the token itself)."""
    try:
        tst = next(extract_tst_data_iter(sig.signer_info, signed=False), None)
        if tst is None:
            return None
        when: dt.datetime = tst["encap_content_info"]["content"].parsed["gen_time"].native
        return when
    except Exception:
        return None


# The signatures each kind of key may make (asn1crypto's names): pyHanko only asserts it, and a
# signature of another kind fails as a bare AssertionError. An RSA-PSS key (RFC 4055) makes PSS
# signatures alone.
_KEY_SIGNATURES = {
    "rsa": {"rsassa_pkcs1v15", "rsassa_pss"},
    "rsassa_pss": {"rsassa_pss"},
    "ec": {"ecdsa"},
    "dsa": {"dsa"},
    "ed25519": {"ed25519"},
    "ed448": {"ed448"},
}


def _algorithm_mismatch(sig: Any) -> str | None:
    """Why the signer's key may not have made a signature of the kind the CMS names, or None."""
    algorithm = sig.signer_info["signature_algorithm"]
    key = sig.signer_cert.public_key.algorithm
    try:
        made = algorithm.signature_algo
    except ValueError:  # one pyHanko refuses itself, saying so
        return None
    if made in _KEY_SIGNATURES.get(key, {made}):
        return None
    name = algorithm["algorithm"].native
    if key == "rsassa_pss" and made == "rsassa_pkcs1v15":
        return pkcs1_not_allowed(name)
    return f"signature algorithm {name} does not fit the certificate's {key} key"


async def _judge(
    sig: Any,
    trust: TrustStore,
    leaf: x509.Certificate,
    others: list[x509.Certificate],
    base: dict[str, Any],
    legacy: bool,
    dss: _Embedded | None,
) -> SignatureReport:
    """One signature judged online (``dss`` None: revocation data fetched as the trust's policy
    says) or offline from its DSS alone (B-LT: hard-fail, nothing fetched; the data about the
    signer only if issued after the timestamp, see REVOCATION_GRACE)."""
    offline = dss is not None
    stamped = _stamp_time(sig)
    revinfo: dict[str, Any] = {}
    signer_revinfo: dict[str, Any] = {}
    stale = 0
    if dss is not None:
        revinfo = {"crls": dss.crls, "ocsps": dss.ocsps, "offline": True}
        fresh, stale = dss.fresh_for(leaf, stamped) if stamped else (dss, 0)
        signer_revinfo = {"crls": fresh.crls, "ocsps": fresh.ocsps, "offline": True}
    weak = [LEGACY] if legacy else []
    level = LEGACY if legacy else "PAdES-B-B"
    backend = trust.new_backend()
    vc = trust.validation_context(other_certs=others, backend=backend, **signer_revinfo)
    # The timestamp's chain is judged as of the timestamp (as signing.timestamps judges every
    # token: a TSA's certificate expired since still vouches for what it stamped), offline with
    # the data embedded then (an OCSP answer in a DSS is not fresh for ever).
    ts_vc = (
        trust.validation_context(other_certs=others, backend=backend, moment=stamped, **revinfo)
        if offline or stamped
        else vc
    )
    mismatch = _algorithm_mismatch(sig)
    if mismatch:
        return SignatureReport(valid=False, reason=mismatch, level=level, **base)
    try:
        status = await async_validate_pdf_signature(
            sig, signer_validation_context=vc, ts_validation_context=ts_vc, diff_policy=_DIFF_POLICY
        )
    except Exception as exc:  # pyHanko: SignatureValidationError, WeakHashAlgorithmError, …
        return SignatureReport(
            valid=False, reason=f"malformed signature: {_describe(exc)}", level=level, **base
        )
    finally:
        await backend.close()
    if status.md_algorithm in ("sha1", "md5"):
        weak.append(f"{status.md_algorithm.upper()} digest")
    claimed, proven = status.signer_reported_dt, None
    stamp = status.timestamp_validity
    if stamp is not None:
        if not legacy:
            level = "PAdES-B-LT" if offline else "PAdES-B-T"
        if not (stamp.intact and stamp.valid):
            return SignatureReport(
                valid=False, reason="signature timestamp does not verify", level=level, **base
            )
        if not stamp.trusted:  # any key can sign a token dated when it likes
            return SignatureReport(
                valid=False,
                reason="signature timestamp is not from a trusted TSA",
                level=level,
                **base,
            )
        proven = stamp.timestamp
    elif offline:  # revocation data but no timestamp: B-B with a DSS, not B-LT
        return SignatureReport(valid=False, reason="no signature timestamp", level=level, **base)
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
    modified = _modification(sig, status)
    if modified:
        return SignatureReport(
            valid=False,
            reason=modified,
            level=level,
            weaknesses=weak,
            **base,
        )
    try:
        # As for XML: judged as of the timestamp's time when there is one (signing/xml.py).
        chain = await trust.validate(leaf, others, moment=proven, **signer_revinfo)
    except UntrustedSigner as exc:
        if stale:  # say why the DSS did not do (only sign_pdf's check of B-LT shows it)
            exc = UntrustedSigner(
                f"{exc.reason} (the DSS's revocation data about the signer was issued before "
                "the signature timestamp)",
                exc.kind,
            )
        return SignatureReport.untrusted(
            exc,
            level=level,
            weaknesses=weak,
            signed_at=proven,
            claimed_signing_time=claimed,
            **base,
        )
    return SignatureReport(
        valid=True,
        chain=chain.chain,
        signed_at=proven,
        claimed_signing_time=claimed,
        level=level,
        revocation=chain.revocation,
        weaknesses=weak + chain.weaknesses,
        certificate=leaf,
        **base,
    )


# pyHanko's default policy, but for its allowance of a form field's appearance stream overwritten
# in place: pyHanko 0.38 tests it against the stream's last change in the whole file, not up to
# the revision checked, so it reports every text field whose appearance predates a signature as
# changed after it (a second signature on a signed form named them). Without the allowance the
# fields reported are those given a new value or appearance, and a stream overwritten in place is
# a change pyHanko cannot explain (OTHER). Signature fields keep it; a new one may be created
# with any appearance (SigFieldCreationRule): _modification then holds it to being signed.
_DIFF_POLICY = StandardDiffPolicy(
    global_rules=DEFAULT_DIFF_POLICY.global_rules,
    form_rule=FormUpdatingRule(
        field_rules=[
            SigFieldCreationRule(),
            SigFieldModificationRule(),
            GenericFieldModificationRule(allow_in_place_appearance_stream_changes=False),
        ]
    ),
)


def _modification(sig: Any, status: Any) -> str | None:
    """Why the revisions after the signature change what its signer signed (None: they do
    not). They may add signatures, in new or empty signature fields, document timestamps and DSS
    updates (pyHanko's LTA_UPDATES, and its FORM_FILLING of signature fields alone). They may
    not, even where pyHanko's policy for approval signatures allows it, give a form field
    another value (the page then shows another name than the signer's), add or change
    annotations (a stamp over the text; pyHanko 0.38 explains none, they come out as OTHER), or
    add a signature field that nobody signs: pyHanko accepts a new signature field with any
    appearance, and its widget's can paint over the page (a white box and another amount) with
    no key at all. A later signature's appearance is its signer's: that signature is judged on
    its own, and every signature of a document must stand (the hub, the civil-status
    connector; ``verify`` exits 1 otherwise)."""
    if status.docmdp_ok is False:  # pyHanko's OTHER: changes it cannot explain
        return "document modified after signing"
    level = status.modification_level
    if level == ModificationLevel.ANNOTATIONS:
        return "document modified after signing: annotations added or changed"
    if not isinstance(status.diff_result, DiffResult):  # nothing after the signature
        return None
    unsigned = _unsigned_since(sig)
    if unsigned:
        return f"document modified after signing: {unsigned}"
    if level == ModificationLevel.FORM_FILLING:
        signatures = {name for name, _, _ in enumerate_sig_fields(sig.reader)}
        changed = sorted(status.diff_result.changed_form_fields - signatures)
        if changed:
            fields = ", ".join(repr(name) for name in changed)
            plural = "s" if len(changed) > 1 else ""
            return f"document modified after signing: form field{plural} {fields} changed"
    return None


def _unsigned_since(sig: Any) -> str | None:
    """The signature fields added after ``sig`` that are still empty, said in words (None: there
    are none). (A signature field that existed empty when ``sig`` was made may only be signed
    since: pyHanko's policy refuses any other change to it.)"""
    try:
        then = {
            name
            for name, _, _ in enumerate_sig_fields(
                sig.reader.get_historical_resolver(sig.signed_revision)
            )
        }
        empty = {name for name, _, _ in enumerate_sig_fields(sig.reader, filled_status=False)}
    except Exception:  # a form pyHanko's diff has just read: never seen to fail
        return "its signature fields cannot be read"
    added = sorted(empty - then)
    if not added:
        return None
    plural = "s" if len(added) > 1 else ""
    return f"signature field{plural} {', '.join(repr(n) for n in added)} added, not signed"


# ISO 32000-1 §7.5.5: a PDF's last line is %%EOF (each incremental update ends with one), and
# readers look for it in the last 1,024 bytes. pyHanko searches the whole file backwards instead:
# ~0.2 s of CPU per MB of a file that has none (a 60 MB "PDF" in a package: 13 s).
_EOF_WINDOW = 1024


async def _verify(
    data: bytes, trust: TrustStore, *, dss_only: bool = False
) -> list[SignatureReport]:
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise SignatureInvalid(f"not a readable PDF: no %%EOF in its last {_EOF_WINDOW} bytes")
    try:
        # strict=False: poppler's output has "orphaned generation" quirks (toolchain notes).
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        # Before pyHanko opens an object stream or walks the form: the costs they bound.
        pdf_limits.check_object_streams(reader)
        fields = pdf_limits.check_form(reader)
        sigs = _signatures(reader, fields)
    except DocumentTooComplex:
        raise
    except Exception as exc:  # pyHanko's PdfReadError, PdfStrictReadError, ValueError …
        raise SignatureInvalid(f"not a readable PDF: {_unreadable(exc)}") from exc
    try:
        dss = _read_dss(reader)
    except Exception:  # a DSS that cannot be read embeds nothing
        dss = _Embedded()
    return [await _verify_one(s, trust, dss, dss_only) for s in sigs]


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
        first = reports[0]
        reason = first.reason or "invalid signature"
        err = UntrustedSigner(reason, first.cause) if first.cause else SignatureInvalid(reason)
        err.reports = reports  # type: ignore[attr-defined]
        raise err
    return reports
