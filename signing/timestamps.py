# mypy: disable-error-code="no-untyped-call,arg-type"
# (pyHanko is only partly annotated; DummyTimeStamper takes any iterable of certificates)
"""RFC 3161 timestamps: a client, token verification, and a local TSA for development.

The client and the verifier are pyHanko's (the TSA's chain and its critical timeStamping EKU are
checked against the TrustStore's anchors). The local TSA serves pyHanko's ``DummyTimeStamper`` over
aiohttp with the test PKI's ``tsa`` certificate; its tokens pass ``openssl ts -verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from asn1crypto import cms, core, keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pyhanko.sign.general import (
    SignedDataCerts,
    as_signing_certificate,
    extract_certificate_info,
    extract_signer_info,
    find_unique_cms_attribute,
    simple_cms_attribute,
)
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.generic_cms import (
    extract_certs_for_validation,
    validate_sig_integrity,
)
from pyhanko.sign.validation.utils import DEFAULT_ALGORITHM_USAGE_POLICY
from pyhanko_certvalidator.sig_validate import (
    DefaultSignatureValidator,
    SignatureValidationContext,
)
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from .capped import ReplyTooLarge, TsaReply
from .errors import TimestampError
from .trust import TrustStore, common_name, from_asn1, to_asn1

__all__ = ["TimestampInfo", "request_timestamp", "serve_tsa", "timestamper", "verify_timestamp"]


@dataclass(frozen=True)
class TimestampInfo:
    time: dt.datetime
    tsa: str  # the TSA certificate's common name
    revocation: str  # the TSA's chain's revocation status (ChainResult.revocation)


async def request_timestamp(
    tsa_url: str,
    digest: bytes,
    *,
    md_algorithm: str = "sha256",
    timeout: float = 10.0,  # noqa: ASYNC109 - passed to the HTTP client
) -> bytes:
    """Ask ``tsa_url`` for a token over ``digest``; returns the DER ``TimeStampToken``.

    Raises :class:`TimestampError` if the TSA is unreachable, refuses, or answers nonsense.
    """
    async with timestamper(tsa_url, timeout=timeout) as stamper:
        try:
            token = await stamper.async_timestamp(digest, md_algorithm)
        except Exception as exc:  # pyHanko raises IOError, TimestampRequestError, ValueError…
            why = tsa_failure(exc, tsa_url)
            raise TimestampError(f"timestamp request to {_shown(tsa_url)} failed: {why}") from exc
    return bytes(token.dump())


def tsa_failure(exc: BaseException, tsa_url: str) -> str:
    """Why a request to ``tsa_url`` failed (``exc``, or what it was raised from), in one line
    that shows no query value of the URL, in case a library's text quotes it."""
    return " ".join(_failure(exc).split()).replace(tsa_url, _shown(tsa_url))


def _failure(exc: BaseException) -> str:
    """Why a timestamp request failed. pyHanko says "Error while contacting timestamp service"
    whatever happened: the cause it chains says what (no connection, an HTTP error, no URL at
    all), in words that never quote the URL (an aiohttp error's text does, query and all)."""
    if _stale_reply(exc):
        return (
            "the TSA's reply does not answer this request (its nonce is another request's: a "
            "stale or replayed token)"
        )
    seen: BaseException | None = exc  # the request's error, however deep signing wrapped it
    while seen is not None and not isinstance(seen, TimestampRequestError):
        seen = seen.__cause__ or seen.__context__
    cause = seen.__cause__ if seen is not None else None
    if isinstance(cause, aiohttp.ContentTypeError):  # an answer, but not a timestamp reply
        return str(cause.message)
    if isinstance(cause, aiohttp.ClientResponseError):
        return f"HTTP {cause.status} {cause.message}"
    if isinstance(cause, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "not an http:// or https:// URL"
    if isinstance(cause, aiohttp.ClientConnectorError):
        error = cause.os_error  # refused: "Connect call failed (…)" says less than errno's words
        refused = isinstance(error, ConnectionError) and error.errno
        why = os.strerror(error.errno) if refused else error.strerror
        return f"cannot connect to {cause.host}:{cause.port} ({why or error})"
    if isinstance(cause, TimeoutError):
        return "no answer in time"
    return str(exc)


def _stale_reply(exc: BaseException) -> bool:
    """pyHanko (0.38) refuses a token whose nonce is not the request's (a TSA, or a cache before
    it, replaying an old reply) but fails to word its own refusal (``nonce.hex()`` on an int):
    the AttributeError raised in its ``handle_tsp_response`` read ``'int' object has no attribute
    'hex'`` in the log, /readyz, the 503 not-accepting and a signing command's error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AttributeError):
            tb = seen.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            return tb is not None and tb.tb_frame.f_code.co_name == "handle_tsp_response"
        seen = seen.__cause__ or seen.__context__
    return False


def _shown(url: str) -> str:
    """``url`` as an error may show it: the error is logged, shown by /readyz and in the 503 that
    refuses new work while checkpoints fail. The password of ``user:password@`` becomes ``***``
    (the user name stays: it tells which account), and so does every query value: a TSA may take
    its key as ``?password=``, ``?token=``, ``?apikey=``…, and no list of names is complete."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(the TSA URL)"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{name}={'***' if value else ''}" if sep else ("***" if name else "")
        for name, sep, value in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


@contextlib.asynccontextmanager
async def timestamper(
    tsa_url: str,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - passed to the HTTP client
) -> AsyncIterator[HTTPTimeStamper]:
    """pyHanko's TSA client on a session of our own.

    Left to itself, pyHanko opens a session per request whose TLS context loads certifi's CA bundle
    each time: 15-30 ms of CPU, on the event loop, for every audit checkpoint (a stall in the
    lookups' tail latency). aiohttp's default verified context is built once per process.

    pyHanko reads the reply whole: the session's replies stop at 1 MiB (signing.capped), a
    timestamp reply being a few KiB.
    """
    async with aiohttp.ClientSession(response_class=TsaReply) as session:
        yield _CappedTimeStamper(tsa_url, timeout=timeout, session=session)


class _CappedTimeStamper(HTTPTimeStamper):
    """pyHanko's client, saying when a reply was refused for its size: pyHanko's own error
    reads "Error while contacting timestamp service" whatever went wrong."""

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            return await super().async_request_tsa_response(req)
        except TimestampRequestError as exc:
            cause = exc.__cause__
            if isinstance(cause, ReplyTooLarge):
                raise TimestampRequestError(f"TSA answered with a {cause}") from cause
            raise


async def verify_timestamp(
    token: bytes, data: bytes, trust: TrustStore, *, fresh: bool = False
) -> TimestampInfo:
    """Check that ``token`` is a valid RFC 3161 token over ``data`` from a trusted TSA.

    ``fresh``: the token was just issued to the caller (an audit checkpoint's, stamped a moment
    ago): its TSA's chain is judged as of now, where the trust store keeps a chain found good, so
    that the TSA's path is validated once per cache time, not for every token it stamps; and a
    token shaped as one already checked whole (see :func:`_shape`) has only what differs from
    token to token checked: its signature, its content's digest and its imprint.

    Raises :class:`TimestampError` if the token is malformed, its imprint does not match ``data``,
    its signature does not verify or uses an algorithm the norms no longer allow;
    :class:`UntrustedSigner` if the TSA is not trusted.
    """
    try:
        content = cms.ContentInfo.load(token)
        signed_data = content["content"]
        if content["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        tst_info = signed_data["encap_content_info"]["content"].parsed
        if not isinstance(tst_info, tsp.TSTInfo):
            raise ValueError("SignedData does not encapsulate TSTInfo")
        gen_time: dt.datetime = tst_info["gen_time"].native
        shape = _shape(signed_data) if fresh else None
        known: _Signer | None = trust.recall(shape) if shape is not None else None
        signer = known or _signer(signed_data)
    except Exception as exc:  # asn1crypto parses lazily and raises many types
        raise TimestampError(f"malformed timestamp token: {exc}") from exc
    # The TSA chain: anchors from our configuration, the revocation policy applies too. Judged as
    # of the token's time, with revocation data issued since, as the signers a token dates are:
    # judged now, every token a TSA ever issued failed once its certificate expired (a few years)
    # and with them every audit checkpoint and bundle it stamped, untouched as they were.
    chain = await trust.validate(
        signer.cert, signer.others, usage="timestamping", moment=None if fresh else gen_time
    )
    # The chain is ours to judge (above); what is left is the token's own integrity. pyHanko's
    # validate_tst_signed_data would validate the TSA's path a second time (half its ~3 ms).
    if known is None:
        _check_token_integrity(signed_data, tst_info, data, gen_time)
        if shape is not None:
            trust.remember(shape, signer, revocation=chain.revocation)
    else:
        _check_signature(signed_data, tst_info, data, known)
    return TimestampInfo(time=gen_time, tsa=signer.name, revocation=chain.revocation)


@dataclass(frozen=True)
class _Signer:
    """A token's signing TSA: its certificate, as pyHanko and as pyca hold it, and the other
    certificates the token carries."""

    asn1: asn1_x509.Certificate
    cert: x509.Certificate
    others: tuple[x509.Certificate, ...]
    name: str


def _signer(signed_data: cms.SignedData) -> _Signer:
    certs: SignedDataCerts = extract_certificate_info(signed_data)
    tsa_cert = certs.signer_cert
    others = tuple(from_asn1(c) for c in certs.other_certs)
    return _Signer(tsa_cert, from_asn1(tsa_cert), others, common_name(tsa_cert))


# The signed attributes that differ from one token of a TSA to the next.
_PER_TOKEN = frozenset({"message_digest", "signing_time"})


def _shape(signed_data: cms.SignedData) -> tuple[str | bytes, ...]:
    """What a TSA's tokens have in common, byte for byte: the certificates they carry, the
    signer's identifier and algorithms, the signed attributes but the digest and the time (the
    content type, the ESS signing-certificate naming the TSA's certificate, any algorithm
    protection). A token of a shape already checked whole (the signer's certificate found among
    those carried, the ESS attribute naming it, the algorithms allowed: :func:`_check_token_integrity`,
    5-8 ms of CPU in asn1crypto, most of a checkpoint's, on a thread that holds the GIL
    against the event loop) need only have its signature and digests checked, in pyca's C."""
    (signer_info,) = signed_data["signer_infos"]
    attrs = signer_info["signed_attrs"]
    return (
        "timestamp-token-shape",
        signed_data["certificates"].dump(),
        signer_info["sid"].dump(),
        signer_info["digest_algorithm"].dump(),
        signer_info["signature_algorithm"].dump(),
        *(a.dump() for a in attrs if a["type"].native not in _PER_TOKEN),
    )


def _check_signature(
    signed_data: cms.SignedData, tst_info: tsp.TSTInfo, data: bytes, signer: _Signer
) -> None:
    """A known shape's token (see :func:`_shape`): its content's digest as its signed
    attributes say, its signature over them by ``signer``, and its imprint over ``data``."""
    try:
        (signer_info,) = signed_data["signer_infos"]
        md = signer_info["digest_algorithm"]["algorithm"].native
        content = bytes(signed_data["encap_content_info"]["content"])
        said = find_unique_cms_attribute(signer_info["signed_attrs"], "message_digest").native
        digested = said == _digest(md, content)
        DefaultSignatureValidator().validate_signature(
            signer_info["signature"].native,
            signer_info["signed_attrs"].untag().dump(),
            signer.asn1.public_key,
            signer_info["signature_algorithm"],
            SignatureValidationContext(contextual_md_algorithm=md),
        )
        imprint = tst_info["message_imprint"]
        algo = imprint["hash_algorithm"]["algorithm"].native
        imprinted = imprint["hashed_message"].native == _digest(algo, data)
    except InvalidSignature as exc:
        raise TimestampError("timestamp token signature does not verify") from exc
    except Exception as exc:
        raise TimestampError(f"timestamp token does not verify: {exc}") from exc
    if not (digested and imprinted):
        raise TimestampError("timestamp imprint does not match the signed data")


def _digest(algo: str, data: bytes) -> bytes:
    """``data``'s digest by asn1crypto's name of the algorithm (sha256, sha3_256…)."""
    return hashlib.new(algo.replace("_", "-") if algo.startswith("sha3") else algo, data).digest()


def _check_token_integrity(
    signed_data: cms.SignedData, tst_info: tsp.TSTInfo, data: bytes, gen_time: dt.datetime
) -> None:
    """What validate_tst_signed_data checks besides the TSA's path (and more: it let any algorithm
    through): the algorithms against pyHanko's default usage policy, but SHA-1, the ESS signing-certificate attribute, the signature over
    the signed attributes and the content's digest, and the imprint over ``data``."""
    try:
        signer_info = extract_signer_info(signed_data)
        # Also checks that the signed signing-certificate attribute names this certificate.
        cert = extract_certs_for_validation(signed_data).signer_cert
        sig_algo, md_algo = signer_info["signature_algorithm"], signer_info["digest_algorithm"]
        policy = DEFAULT_ALGORITHM_USAGE_POLICY
        for name, allowed in (
            (
                sig_algo["algorithm"].native,
                policy.signature_algorithm_allowed(
                    sig_algo, moment=gen_time, public_key=cert.public_key
                ),
            ),
            (
                md_algo["algorithm"].native,
                policy.digest_algorithm_allowed(md_algo, moment=gen_time),
            ),
        ):
            # SHA-1 passes, as it does in older documents' own signatures (verified, flagged):
            # a timestamp on such a document is as old. Beyond it (MD5) the policy's no is final.
            if not allowed and "sha1" not in name:
                raise ValueError(f"{name} is not allowed for signatures any more")
        digest = hashes.Hash(get_pyca_cryptography_hash(md_algo["algorithm"].native))
        digest.update(bytes(signed_data["encap_content_info"]["content"]))
        intact, valid = validate_sig_integrity(
            signer_info, cert, expected_content_type="tst_info", actual_digest=digest.finalize()
        )
        algo = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
        imprinted = tst_info["message_imprint"]["hashed_message"].native == _digest(algo, data)
    except Exception as exc:  # pyHanko's and asn1crypto's errors, an unknown hash: the token's
        raise TimestampError(f"timestamp token does not verify: {exc}") from exc
    if not (intact and imprinted):
        raise TimestampError("timestamp imprint does not match the signed data")
    if not valid:
        raise TimestampError("timestamp token signature does not verify")


class _LocalTSA(DummyTimeStamper):
    """pyHanko's ``DummyTimeStamper``, signing with a key loaded once. pyHanko's own method
    loads the key from DER for every token, and OpenSSL 3 checks an RSA key at each load: 42 ms
    of CPU per token, which on the gateway's own machine (the demo, the bench) took a CPU from
    everything else whenever an audit checkpoint was stamped. The method is pyHanko 0.38's, the
    key kept."""

    def __init__(self, key: RSAPrivateKey, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = key

    def _sign_tst_info(
        self, tst_info_data: bytes, md_algorithm: str, when: dt.datetime
    ) -> tuple[bytes, cms.CMSAttributes]:
        digest = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
        digest.update(tst_info_data)
        signed_attrs = cms.CMSAttributes(
            [
                simple_cms_attribute("content_type", "tst_info"),
                simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(when)})),
                simple_cms_attribute("signing_certificate", as_signing_certificate(self.tsa_cert)),
                simple_cms_attribute("message_digest", digest.finalize()),
            ]
        )
        signature = self._key.sign(
            signed_attrs.dump(), PKCS1v15(), get_pyca_cryptography_hash(md_algorithm.upper())
        )
        return signature, signed_attrs


def _load_stamper(pki_dir: Path, *, at: dt.datetime | None = None) -> DummyTimeStamper:
    """A TSA with the PKI's ``tsa`` key (RSA, as pyHanko's requires; ValueError if not): its
    tokens say ``at`` when given (tests of validation at a past moment), else the time of each
    request."""
    cert = x509.load_pem_x509_certificates((pki_dir / "tsa.cert.pem").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "tsa.key.pem").read_bytes(), None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the TSA key is not an RSA key")
    der_key = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _LocalTSA(
        key,
        tsa_cert=to_asn1(cert[0]),
        tsa_key=keys.PrivateKeyInfo.load(der_key),
        certs_to_embed=[to_asn1(c) for c in cert[1:]],
        fixed_dt=at,
    )


@contextlib.asynccontextmanager
async def serve_tsa(
    pki_dir: str | Path, host: str = "127.0.0.1", port: int = 0, *, at: dt.datetime | None = None
) -> AsyncIterator[str]:
    """Serve a development TSA (``POST /`` with ``application/timestamp-query``) signing with the
    PKI's ``tsa`` key; yields its URL. Its tokens say ``at`` when given (tests of signatures made
    in the past), else the time. Raises TimestampError if the PKI has no TSA key."""
    try:
        stamper = await asyncio.to_thread(_load_stamper, Path(pki_dir), at=at)
    except (OSError, ValueError) as exc:
        raise TimestampError(f"no usable TSA key in {pki_dir}") from exc

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            req = tsp.TimeStampReq.load(body)
            req.native  # noqa: B018 - asn1crypto parses lazily: force it here, not in the thread
        except ValueError as exc:
            raise web.HTTPBadRequest(text="malformed TimeStampReq") from exc
        # Signing is CPU work (RSA): off the event loop.
        resp = await asyncio.to_thread(stamper.request_tsa_response, req)
        return web.Response(body=resp.dump(), content_type="application/timestamp-reply")

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/", handle)
    app.router.add_post("/tsa", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        real_port = runner.addresses[0][1]
        yield f"http://{f'[{host}]' if ':' in host else host}:{real_port}/"  # IPv6 in brackets
    finally:
        await runner.cleanup()
