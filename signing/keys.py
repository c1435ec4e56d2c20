"""Signing keys: PEM and PKCS#12 files, and PKCS#11 tokens.

Every key signs with SHA-256 (PKCS#1 v1.5 for RSA, DER-encoded ECDSA) and carries its certificate and
the intermediates needed to reach an anchor, so signatures can embed the whole chain.
Secrets (passwords, PINs) come from arguments, ``LIENTHONG_KEY_PASSWORD`` /
``LIENTHONG_KEY_PASSWORD_FILE`` or ``LIENTHONG_PKCS11_PIN`` and are never logged or put in messages.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import functools
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import PublicKeyAlgorithmOID

from .errors import KeyLoadError

__all__ = [
    "DEFAULT_PKCS11_MODULE",
    "PSS_ONLY",
    "FileKey",
    "Pkcs11Key",
    "SigningKey",
    "is_pkcs11_uri",
    "load_key",
    "pkcs1_not_allowed",
    "pss_only",
    "shown_key",
]

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
Algorithm = Literal["rsa", "ecdsa"]
T = TypeVar("T")


class SigningKey(abc.ABC):
    """A private key able to make SHA-256 signatures, with its certificate and intermediates."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def algorithm(self) -> Algorithm:
        return "rsa" if isinstance(self.certificate.public_key(), rsa.RSAPublicKey) else "ecdsa"

    @property
    def key_size(self) -> int:
        pub = self.certificate.public_key()
        assert isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return pub.key_size

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with SHA-256; DER for ECDSA. Raises :class:`KeyLoadError` if the token fails."""

    def close(self) -> None:  # noqa: B027 - optional hook, file keys hold nothing
        """Release any token session."""


class FileKey(SigningKey):
    """A key held in memory (from a PEM or PKCS#12 file)."""

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        chain: tuple[x509.Certificate, ...] = (),
    ) -> None:
        _check_pair(private_key.public_key(), certificate)
        self.private_key = private_key
        self.certificate = certificate
        self.chain = chain

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))


class _TokenSession:
    """The one logged-in session this process holds on a token, shared by the keys loaded from it.

    PKCS#11 logs in per application and token, not per session: a second C_Login on the same
    token fails (UserAlreadyLoggedIn), and C_Logout logs every session out. So the keys of one
    token share one session, opened and logged in with the first key and closed with the last
    (closing the last session of a token logs the application out). The lock serialises its use:
    a session must not be used from two threads at once.

    A session can be lost under a running gateway (the token pulled out and put back, an HSM
    restarted, its network link reset): :meth:`use` then opens it again, once per call, so that
    signing resumes when the token is back instead of failing until a restart.
    """

    def __init__(self, ident: tuple[str, bytes], lib: Any, label: str, slot_id: int) -> None:
        self.ident, self.lib, self.label, self.slot_id = ident, lib, label, slot_id
        self.session: Any = None
        self.pin = b""  # a salted hash: what another key's PIN is compared with
        self._pin = ""  # the PIN itself, to log in again after a lost session
        self.lock = threading.Lock()
        self.refs = 0
        self.generation = 0  # one more at each session opened: object handles are per session
        self.refused: str | None = None  # the PIN was refused when logging in again

    def login(self, token: Any, pin: str) -> None:
        """Open and log in a session on ``token``. Raises PKCS11Error from the module."""
        from pkcs11.exceptions import PKCS11Error

        try:
            session = token.open(user_pin=pin)
        except PKCS11Error:
            # python-pkcs11 opens the session, then logs in; when C_Login fails it raises
            # without closing the session. No key of ours holds another session on this token
            # (there is one shared session per token, and it is not open), so every session of
            # this process on its slot is that one.
            _close_all_sessions(self.ident[0], self.slot_id)
            raise
        self.session, self.pin, self._pin = session, _pin_digest(pin), pin
        self.generation += 1

    def use(self, operation: Callable[[Any], T]) -> T:
        """``operation(session)`` under the lock. If the session was lost, it is opened again and
        ``operation`` run once more. Raises PKCS11Error from the module (``operation``'s, or what
        a lost session answered if the token cannot be opened again), KeyLoadError if the token
        refused the PIN when logging in again (never tried again: tokens lock the PIN)."""
        from pkcs11.exceptions import PKCS11Error

        with self.lock:
            if self.refused is not None:
                raise KeyLoadError(self.refused)
            if _logged_in(self.ident[0], self.session):
                try:
                    return operation(self.session)
                except PKCS11Error as exc:  # lost since it was asked
                    if not isinstance(exc, _lost_session_errors()):
                        raise
            self._reopen()
            return operation(self.session)

    def _reopen(self) -> None:
        """Log in again on the token of the same serial, found by its label. Caller holds the
        lock. Raises as :meth:`use`."""
        from pkcs11.exceptions import PinExpired, PinIncorrect, PinInvalid, PinLocked, PKCS11Error

        with contextlib.suppress(PKCS11Error):  # lost already: closing it may fail too
            self.session.close()
        try:
            token = self.lib.get_token(token_label=self.label)
            if bytes(token.serial) != self.ident[1]:
                raise KeyLoadError(
                    f"PKCS#11 token {self.label!r} lost its session, and the token of that label "
                    "now is another one (another serial number): restart to use it"
                )
            self.slot_id = token.slot.slot_id  # a token put back may sit in another slot
            self.login(token, self._pin)
        except (PinIncorrect, PinInvalid, PinLocked, PinExpired) as exc:
            self.refused = (
                f"PKCS#11 token {self.label!r} refused the PIN when its lost session was opened "
                f"again ({type(exc).__name__}): not tried again, as a token locks its PIN after a "
                "few wrong ones; restart with the token's PIN in LIENTHONG_PKCS11_PIN"
            )
            raise KeyLoadError(self.refused) from exc
        except PKCS11Error as exc:
            raise KeyLoadError(
                f"PKCS#11 token {self.label!r} lost its session and cannot be opened again "
                f"({type(exc).__name__}): is it present and its module working? Each signature "
                "tries again"
            ) from exc


def _lost_session_errors() -> tuple[type[Exception], ...]:
    """What a module answers on a session it no longer has (PKCS#11 2.40 §5.1): the session is
    opened again. Anything else (a mechanism the key does not do, a device fault) is the answer."""
    from pkcs11 import exceptions as e

    return (
        e.SessionHandleInvalid,
        e.SessionClosed,
        e.UserNotLoggedIn,
        e.ObjectHandleInvalid,
        e.KeyHandleInvalid,
        e.DeviceRemoved,
        e.TokenNotPresent,
        e.TokenNotRecognised,
    )


_tokens: dict[tuple[str, bytes], _TokenSession] = {}  # by (module path, token serial)
_tokens_lock = threading.Lock()
_PIN_SALT = os.urandom(16)  # another key's PIN is compared with a salted hash of the session's


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode()).digest()


def _open_token(lib: Any, module: str, token_label: str, pin: str) -> _TokenSession:
    """The token's shared session, logged in (opened now if no key holds it), with one more
    reference. Raises PKCS11Error from the module, KeyLoadError for a PIN other than the one the
    shared session was opened with."""
    with _tokens_lock:
        token = lib.get_token(token_label=token_label)
        ident = (module, bytes(token.serial))
        shared = _tokens.get(ident)
        if shared is None:
            shared = _TokenSession(ident, lib, token_label, token.slot.slot_id)
            shared.login(token, pin)
            _tokens[ident] = shared
        elif not hmac.compare_digest(shared.pin, _pin_digest(pin)):
            # The token is logged in already: a wrong PIN would otherwise be let through.
            raise KeyLoadError(
                f"PKCS#11 token {token_label!r} is open in this process with another PIN"
            )
        shared.refs += 1
        return shared


def _release_token(shared: _TokenSession) -> None:
    """Drop one reference; the last closes the session (and so logs the token out)."""
    with _tokens_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        del _tokens[shared.ident]
    from pkcs11.exceptions import PKCS11Error

    with shared.lock, contextlib.suppress(PKCS11Error):  # a token pulled out: nothing to close
        shared.session.close()


class _CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _CK_FUNCTION_LIST(ctypes.Structure):
    """The head of CK_FUNCTION_LIST, up to C_GetSessionInfo (PKCS#11 2.40 §5.1)."""

    _fields_ = [("version", _CK_VERSION)] + [
        (name, ctypes.c_void_p)
        for name in (
            "C_Initialize",
            "C_Finalize",
            "C_GetInfo",
            "C_GetFunctionList",
            "C_GetSlotList",
            "C_GetSlotInfo",
            "C_GetTokenInfo",
            "C_GetMechanismList",
            "C_GetMechanismInfo",
            "C_InitToken",
            "C_InitPIN",
            "C_SetPIN",
            "C_OpenSession",
            "C_CloseSession",
            "C_CloseAllSessions",
            "C_GetSessionInfo",
        )
    ]


class _CK_SESSION_INFO(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulong) for name in ("slotID", "state", "flags", "ulDeviceError")]


_CKS_USER_FUNCTIONS = (1, 3)  # CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS: logged in
_CKR_FUNCTION_NOT_SUPPORTED = 0x54


@functools.cache
def _function(module: str, name: str) -> int | None:
    """The address of ``name`` in ``module``'s function list, for the functions python-pkcs11 does
    not expose; None if the module gives none. The module is the one python-pkcs11 loaded (the
    same path: dlopen returns the same library)."""
    try:
        so = ctypes.CDLL(module)
        functions = ctypes.POINTER(_CK_FUNCTION_LIST)()
        if so.C_GetFunctionList(ctypes.byref(functions)) != 0 or not functions:
            return None
        address: int | None = getattr(functions.contents, name)
        return address
    except (OSError, AttributeError, ValueError):  # not a loadable module: nothing was opened
        return None


def _close_all_sessions(module: str, slot_id: int) -> None:
    """C_CloseAllSessions on ``slot_id``."""
    if address := _function(module, "C_CloseAllSessions"):
        ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong)(address)(slot_id)


def _logged_in(module: str, session: Any) -> bool:
    """Whether ``session`` is open and logged in (C_GetSessionInfo), asked before it is used: a
    search started on a lost session fails, and python-pkcs11 then ends it again when it is
    garbage-collected, which prints a traceback. True if the module cannot say."""
    address = _function(module, "C_GetSessionInfo")
    if not address:
        return True
    info = _CK_SESSION_INFO()
    function = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.POINTER(_CK_SESSION_INFO))
    rv = function(address)(session.handle, ctypes.byref(info))
    if rv == _CKR_FUNCTION_NOT_SUPPORTED:
        return True
    return rv == 0 and info.state in _CKS_USER_FUNCTIONS


class Pkcs11Key(SigningKey):
    """A key that never leaves its PKCS#11 token, used through the session this process shares
    for that token (see :class:`_TokenSession`); :meth:`close` gives the session back."""

    def __init__(
        self,
        token: _TokenSession,
        label: str,
        private_key: Any,
        certificate: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
    ) -> None:
        self._shared = token
        self._closed = False
        self._label = label
        self._key = private_key
        self._generation = token.generation  # of the session ``_key``'s handle belongs to
        self.certificate = certificate
        self.chain = chain

    def _handle(self, session: Any) -> Any:
        """The private key's object on ``session``: found again on a session opened again (object
        handles are per session), by the label it was loaded with."""
        if self._generation != self._shared.generation:
            what = f"PKCS#11 token {self._shared.label!r}, object {self._label!r}"
            self._key = _private_key(session, self._label, what)
            self._generation = self._shared.generation
        return self._key

    def sign(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error

        if self._closed:
            raise KeyLoadError("PKCS#11 key used after close()")
        rsa_key = self.algorithm == "rsa"

        def operation(session: Any) -> bytes:
            key = self._handle(session)
            if rsa_key:
                return bytes(key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
            # SoftHSM 2.6 has no CKM_ECDSA_SHA256: hash here, sign the digest with CKM_ECDSA.
            return bytes(key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))

        try:
            raw = self._shared.use(operation)
        except PKCS11Error as exc:
            raise KeyLoadError(f"PKCS#11 signing failed: {type(exc).__name__}") from exc
        if rsa_key:
            return raw
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def close(self) -> None:
        with _tokens_lock:  # once: a second close must not give back another key's share
            if self._closed:
                return
            self._closed = True
        _release_token(self._shared)


PSS_ONLY = "the certificate's key is RSA-PSS (id-RSASSA-PSS), restricted to PSS signatures"


def pss_only(certificate: x509.Certificate) -> bool:
    """Whether ``certificate``'s key is an RSA-PSS key (RFC 4055), which may make PSS signatures
    only: cryptography loads it as any RSA key, and signs and verifies PKCS#1 v1.5 with it."""
    return certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS


def pkcs1_not_allowed(algorithm: str) -> str:
    """Why a PKCS#1 v1.5 signature (``algorithm``, as the document names it) of a key that
    :func:`pss_only` is refused."""
    return f"signature algorithm {algorithm} (RSA PKCS#1 v1.5) not allowed: {PSS_ONLY}"


def _check_signing_algorithm(certificate: x509.Certificate) -> None:
    """Refuse a certificate whose key may make no signature of ours: ours are PKCS#1 v1.5 or
    ECDSA (verifiers refuse a PKCS#1 v1.5 signature of an RSA-PSS key)."""
    if pss_only(certificate):
        raise KeyLoadError(
            f"{PSS_ONLY}: lienthong signs with RSA PKCS#1 v1.5 or ECDSA; use an RSA "
            "(rsaEncryption) or ECDSA key"
        )


def _check_pair(public_key: Any, certificate: x509.Certificate) -> None:
    _check_signing_algorithm(certificate)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if public_key.public_bytes(*fmt) != certificate.public_key().public_bytes(*fmt):
        raise KeyLoadError("the certificate does not match the private key")


def _split_chain(
    certs: list[x509.Certificate],
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The key's certificate and the issuers to embed with it. A bundle may list its certificates
    in any order (an intermediate first is common): the key's own is the first one that issued
    none of the others. Self-signed roots are dropped: anchors come from the verifier's
    configuration, never from us."""
    if not certs:
        raise KeyLoadError("no certificate found for the key")
    certs = list(dict.fromkeys(certs))  # a certificate given twice is embedded once
    kept = [c for c in certs if c.subject != c.issuer] or certs
    leaf = next(
        (c for c in kept if not any(d is not c and d.issuer == c.subject for d in kept)), kept[0]
    )
    return leaf, tuple(c for c in kept if c is not leaf)


def _load_cert_file(path: str | Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyLoadError(f"cannot read certificate file {path}: {type(exc).__name__}") from exc


def _password(password: bytes | None) -> bytes | None:
    if password is not None:
        return password
    if (env := os.environ.get("LIENTHONG_KEY_PASSWORD")) is not None:
        return env.encode()
    if (file := os.environ.get("LIENTHONG_KEY_PASSWORD_FILE")) is not None:
        try:
            return Path(file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise KeyLoadError(f"cannot read password file {file}") from exc
    return None


def load_key(spec: str, *, cert: str | None = None, password: bytes | None = None) -> SigningKey:
    """Load a key from a PEM file, a PKCS#12 file (``.p12``/``.pfx``) or a ``pkcs11:`` URI.

    For a PEM key the certificate (and chain) comes from ``cert``, or from ``X.cert.pem`` beside
    ``X.key.pem``. Raises :class:`KeyLoadError` (never a foreign exception) on any failure; the
    message never contains the password or PIN.
    """
    if is_pkcs11_uri(spec):
        return _load_pkcs11(spec, cert=cert)
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read key file {spec}: {exc.strerror}") from exc
    pw = _password(password)
    if path.suffix.lower() in (".p12", ".pfx"):
        return _load_p12(data, pw, cert)
    try:
        key = serialization.load_pem_private_key(data, password=pw or None)
    except TypeError as exc:
        raise KeyLoadError("the key file is encrypted: a password is needed") from exc
    except ValueError as exc:
        raise KeyLoadError(
            f"cannot load key {spec}: bad password or not a PEM private key"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"unsupported key type {type(key).__name__}: use RSA or ECDSA")
    if cert is None:
        if not path.name.endswith(".key.pem"):
            raise KeyLoadError("no certificate given for the PEM key (use --cert)")
        cert = str(path.with_name(path.name[: -len(".key.pem")] + ".cert.pem"))
    leaf, chain = _split_chain(_load_cert_file(cert))
    return FileKey(key, leaf, chain)


def _load_p12(data: bytes, pw: bytes | None, cert: str | None) -> SigningKey:
    last: Exception | None = None
    # An "empty password" PKCS#12 may have been written with b"" or with no password at all.
    for candidate in [pw] if pw else [b"", None]:
        try:
            key, leaf, extra = pkcs12.load_key_and_certificates(data, candidate)
            break
        except ValueError as exc:
            last = exc
    else:
        raise KeyLoadError("cannot open PKCS#12 file: bad password or corrupt file") from last
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError("the PKCS#12 file holds no RSA or ECDSA private key")
    certs = _load_cert_file(cert) if cert else [c for c in [leaf, *extra] if c is not None]
    leaf_cert, chain = _split_chain(certs)
    return FileKey(key, leaf_cert, chain)


def is_pkcs11_uri(spec: str) -> bool:
    """Whether a key ``spec`` is a ``pkcs11:`` URI (not a file): its scheme in any case, as URI
    schemes are (RFC 3986 §3.1)."""
    return spec[:7].lower() == "pkcs11:"


def shown_key(spec: str) -> str:
    """A key ``spec`` as a message may show it: a file's path, or a token's key by its token and
    object labels — never the URI as written, whose other attributes (a ``pin-value`` above all)
    are not for logs and error lines."""
    if not is_pkcs11_uri(spec):
        return spec
    try:
        attrs = parse_pkcs11_uri(spec)
    except KeyLoadError:
        return "a pkcs11: URI"
    return f"PKCS#11 token {attrs.get('token', '')!r}, object {attrs.get('object', '')!r}"


# RFC 7512's PIN attributes: the PIN comes from LIENTHONG_PKCS11_PIN only, never from the URI,
# which is written in command lines (ps, shell history) and configuration files.
_PIN_ATTRIBUTES = ("pin-value", "pin-source")


def parse_pkcs11_uri(uri: str) -> dict[str, str]:
    """Parse the attributes of an RFC 7512 URI (``pkcs11:token=T;object=K``). Raises
    KeyLoadError for a malformed attribute or a PIN in the URI, naming neither's value."""
    body = uri[len("pkcs11:") :]
    path, _, query = body.partition("?")
    attrs: dict[str, str] = {}
    for part in [*path.split(";"), *query.split("&")]:
        if part:
            name, sep, value = part.partition("=")
            if not sep:  # not quoted: it may be a PIN written without its name
                raise KeyLoadError("malformed PKCS#11 URI: an attribute without '=' (name=value)")
            attrs[name] = unquote(value)
    if pin := next((name for name in attrs if name.lower() in _PIN_ATTRIBUTES), None):
        raise KeyLoadError(
            f"PKCS#11 URI with a PIN ({pin}): not accepted, as it would show in command lines "
            "and configuration; set LIENTHONG_PKCS11_PIN instead"
        )
    return attrs


def _load_pkcs11(uri: str, *, cert: str | None) -> SigningKey:
    import pkcs11
    from pkcs11.exceptions import PKCS11Error

    attrs = parse_pkcs11_uri(uri)
    token_label = attrs.get("token")
    label = attrs.get("object")
    if not token_label or not label:
        raise KeyLoadError("a PKCS#11 URI needs token=… and object=…")
    pin = os.environ.get("LIENTHONG_PKCS11_PIN")
    if not pin:
        raise KeyLoadError("no PKCS#11 PIN: set LIENTHONG_PKCS11_PIN")
    module = attrs.get("module-path") or os.environ.get(
        "LIENTHONG_PKCS11_MODULE", DEFAULT_PKCS11_MODULE
    )
    try:
        lib = pkcs11.lib(module)
    except (OSError, RuntimeError) as exc:  # PKCS11Error is a RuntimeError
        raise KeyLoadError(
            f"cannot load PKCS#11 module {module}: {_module_failure(exc, module)}"
        ) from exc
    what = f"PKCS#11 token {token_label!r}, object {label!r}"
    try:
        shared = _open_token(lib, module, token_label, pin)
    except PKCS11Error as exc:
        # Type names only (PinIncorrect, NoSuchToken…): never echo the PIN.
        raise KeyLoadError(f"{what}: {type(exc).__name__}") from exc

    def find(session: Any) -> Pkcs11Key:
        priv = _private_key(session, label, what)
        if cert is not None:
            leaf, chain = _split_chain(_load_cert_file(cert))
        else:
            leaf, chain = _token_certificates(session, label)
        return Pkcs11Key(shared, label, priv, leaf, chain)  # under the lock: of this generation

    try:
        key = shared.use(find)
    except PKCS11Error as exc:
        _release_token(shared)
        raise KeyLoadError(f"{what}: {type(exc).__name__}") from exc
    except BaseException:
        _release_token(shared)
        raise
    try:
        _check_token_pair(key)
    except BaseException:
        key.close()
        raise
    return key


def _private_key(session: Any, label: str, what: str) -> Any:
    """The one private key labelled ``label`` on the token. Raises KeyLoadError if there is none
    or more than one; PKCS11Error from the token."""
    from pkcs11 import Attribute, ObjectClass

    # The whole search is read (and ended) here. session.get_key() raised
    # MultipleObjectsReturned with its search still open; the session was then closed, and the
    # search, ended when garbage-collected, printed a SessionHandleInvalid traceback after our
    # one-line error.
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    )
    if not found:
        raise KeyLoadError(f"{what}: NoSuchKey")
    if len(found) > 1:
        raise KeyLoadError(
            f"{what}: {len(found)} private keys have this label on the token: "
            "give each its own label"
        )
    return found[0]


def _module_failure(exc: BaseException, module: str) -> str:
    """Why ``module`` could not be used: the loader's reason (no such file, not a library), or,
    for a module that loaded and whose C_Initialize failed (python-pkcs11 raises a PKCS11Error
    subclass with no text), where to look."""
    from pkcs11.exceptions import PKCS11Error

    if type(exc) is PKCS11Error or not isinstance(exc, PKCS11Error):
        text = str(exc).removeprefix(f"OS exception while loading {module}: ")
        return text.removeprefix(f"{module}: ") or type(exc).__name__
    return (
        f"it did not start ({type(exc).__name__}): is its configuration readable "
        "(for SoftHSM2, the file SOFTHSM2_CONF names)?"
    )


def _token_certificates(
    session: Any, label: str
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The certificate labelled ``label`` on the token and, from the token's other certificates,
    its issuers up to (not including) a self-signed root. Raises KeyLoadError if there is no such
    certificate or it is not DER; PKCS11Error from the token."""
    from pkcs11 import Attribute, ObjectClass

    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label})
    )
    if not found:
        raise KeyLoadError(f"no certificate labelled {label!r} on the token (use --cert)")
    try:
        leaf = x509.load_der_x509_certificate(bytes(found[0][Attribute.VALUE]))
    except ValueError as exc:
        raise KeyLoadError(
            f"the certificate labelled {label!r} on the token is not a DER certificate"
        ) from exc
    others = []
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
        try:
            others.append(x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE])))
        except ValueError:  # another certificate, unreadable: it cannot be an issuer anyway
            continue
    chain: list[x509.Certificate] = []
    current = leaf
    while current.issuer != current.subject and len(chain) < 8:
        issuer = next((c for c in others if c.subject == current.issuer and c != current), None)
        if issuer is None or issuer.subject == issuer.issuer:
            break  # anchors come from the verifier's configuration, never from the token
        chain.append(issuer)
        current = issuer
    return leaf, tuple(chain)


def _check_token_pair(key: Pkcs11Key) -> None:
    """The token's key must be the certificate's: a signature it makes must verify with the
    certificate's public key (the token may hold no public-key object to compare). Raises
    KeyLoadError if not."""
    _check_signing_algorithm(key.certificate)
    probe = b"lienthong: does this certificate belong to this key?"
    try:
        signature = key.sign(probe)
    except KeyLoadError as exc:  # e.g. an RSA key asked for ECDSA: another key than the cert's
        raise KeyLoadError(f"the certificate does not match the private key ({exc})") from exc
    public = key.certificate.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, probe, ec.ECDSA(hashes.SHA256()))
        else:
            raise KeyLoadError(f"unsupported certificate key type {type(public).__name__}")
    except InvalidSignature as exc:
        raise KeyLoadError("the certificate does not match the private key") from exc
