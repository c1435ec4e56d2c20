# mypy: disable-error-code="no-untyped-call"
# (pyHanko and pyhanko-certvalidator are only partly annotated)
"""A throw-away PKI for tests and the demo: root, intermediate, signers, TSA, OCSP responder, CRLs.

`TestPKI.create(dir)` writes (per API.md) ``root.pem``, ``intermediate.pem``, ``crl/*.crl`` and, per
subject, ``<subject>.cert.pem`` (certificate + intermediate), ``<subject>.key.pem`` and
``<subject>.p12`` (empty password). CRL distribution points and the OCSP URL are baked into the
certificates from ``base_url``; :func:`serve_pki` serves them on loopback.
Not for production: keys are written unencrypted (readable by their owner alone, 0600).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fcntl
import glob
import ipaddress
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import SigningError
from .files import write_private
from .keys import FileKey, SigningKey, load_key
from .trust import RevocationMode, TrustStore

__all__ = [
    "AGENCIES",
    "SUBJECTS",
    "TestPKI",
    "self_signed",
    "serve_pki",
]

UTC = dt.UTC
AGENCIES = ("agency-000.00.00.H41", "agency-000.00.11.H53", "agency-000.00.00.G15")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SubjectSpec:
    key: Literal["rsa", "ec", "rsa1024"] = "ec"
    usage: Literal["signing", "tsa", "ocsp", "none"] = "signing"
    crl: bool = True
    ocsp: bool = True
    revoked: bool = False
    expired: bool = False


# ECDSA P-256 where nothing needs RSA (key generation is ~100x faster); RSA where the norm or a
# tool does (gateway and the first agency: the Government CA issues RSA-2048; pyHanko's TSA: RSA).
SUBJECTS: dict[str, SubjectSpec] = {
    "gateway": SubjectSpec(key="rsa"),
    AGENCIES[0]: SubjectSpec(key="rsa"),
    AGENCIES[1]: SubjectSpec(),
    AGENCIES[2]: SubjectSpec(),
    "register": SubjectSpec(),
    "tsa": SubjectSpec(key="rsa", usage="tsa"),
    "ocsp": SubjectSpec(usage="ocsp", crl=False, ocsp=False),
    "revoked": SubjectSpec(revoked=True),
    "revoked-crl": SubjectSpec(revoked=True, ocsp=False),  # only a CRL can tell
    "revoked-ocsp": SubjectSpec(revoked=True, crl=False),  # only OCSP can tell
    "expired": SubjectSpec(expired=True),
    "no-signing-usage": SubjectSpec(usage="none"),
    "weak-rsa1024": SubjectSpec(key="rsa1024"),
}


# How long ago the CAs and the current certificates were issued: long enough that the ``expired``
# certificate (valid from 400 to 30 days ago) has a valid chain, and a TSA's token, within its life.
_ISSUED = dt.timedelta(days=500)


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _new_key(kind: str) -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(65537, 1024 if kind == "rsa1024" else 2048)


def _name(cn: str, org: str = "lienthong test PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _ku(*, signing: bool = False, ca: bool = False, agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=signing and not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=agreement,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class TestPKI:
    """Root → intermediate → leaf certificates on disk, with CRLs and an OCSP responder."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, base_url: str, index: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.base_url = base_url.rstrip("/")
        self.index = index

    # --- paths -----------------------------------------------------------------------------
    @property
    def root_pem(self) -> Path:
        return self.directory / "root.pem"

    @property
    def intermediate_pem(self) -> Path:
        return self.directory / "intermediate.pem"

    def cert_path(self, subject: str) -> Path:
        return self._subject_file(subject, ".cert.pem")

    def key_path(self, subject: str) -> Path:
        return self._subject_file(subject, ".key.pem")

    def p12_path(self, subject: str) -> Path:
        return self._subject_file(subject, ".p12")

    def _subject_file(self, subject: str, suffix: str) -> Path:
        if subject not in self.index["subjects"] and subject not in ("root", "intermediate"):
            raise KeyError(f"unknown PKI subject {subject!r}")
        return self.directory / f"{subject}{suffix}"

    @property
    def subjects(self) -> list[str]:
        return list(self.index["subjects"])

    def key(self, subject: str) -> SigningKey:
        return load_key(str(self.key_path(subject)))

    def certificate(self, subject: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path(subject).read_bytes())

    def trust(self, *, revocation: RevocationMode = "soft-fail") -> TrustStore:
        return TrustStore.from_pem_files([self.root_pem], revocation=revocation)

    def _ca(self, name: str) -> tuple[x509.Certificate, PrivateKey]:
        cert = x509.load_pem_x509_certificate((self.directory / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (self.directory / f"{name}.key.pem").read_bytes(), None
        )
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return cert, key

    # --- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, base_url: str = "http://127.0.0.1:8791") -> TestPKI:
        """Generate the whole PKI into ``directory``, a missing or empty folder. It is built in a
        folder beside it, renamed into place once complete: a creation that fails (no openssl,
        a full disk) leaves nothing behind, and a later one finds the folder as it was. Private
        keys are written readable by their owner alone. Raises SigningError if ``openssl`` (used
        to write empty-password PKCS#12 files) is missing or fails; OSError if the folder or
        the one beside it cannot be written (``directory`` not empty: ENOTEMPTY)."""
        directory = Path(directory)
        base = base_url.rstrip("/")
        target = directory.resolve()  # "." has no name to build beside; a link stays a link
        target.parent.mkdir(parents=True, exist_ok=True)
        with _building_beside(target):
            building = _folder_beside(target)
            try:
                index = cls._generate(building, base)
                os.replace(building, target)  # rename(2) takes the place of an empty folder
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
        return cls(directory, base, index)

    @classmethod
    def _generate(cls, directory: Path, base: str) -> dict[str, Any]:
        """Write every file of the PKI into the (empty) ``directory``; returns its index."""
        (directory / "crl").mkdir()
        now = _now()
        root_key = _new_key("rsa")
        root_name = _name("lienthong Test Root CA")
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ISSUED)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ku(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
            .sign(root_key, hashes.SHA256())
        )
        inter_key = _new_key("rsa")
        inter = (
            cls._leaf_builder(
                "lienthong Test Intermediate CA", inter_key, root, root_key, now, days=1825
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ku(ca=True), critical=True)
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(f"{base}/crl/root.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            )
            .sign(root_key, hashes.SHA256())
        )
        (directory / "root.pem").write_bytes(_pem_cert(root))
        write_private(directory / "root.key.pem", _pem_key(root_key))
        (directory / "intermediate.pem").write_bytes(_pem_cert(inter))
        write_private(directory / "intermediate.key.pem", _pem_key(inter_key))
        subjects: dict[str, Any] = {}
        for subject, spec in SUBJECTS.items():
            key = _new_key(spec.key)
            cert = cls._issue(subject, key.public_key(), spec, inter, inter_key, base, now)
            subjects[subject] = {"serial": cert.serial_number, "revoked": spec.revoked}
            write_private(directory / f"{subject}.key.pem", _pem_key(key))
            (directory / f"{subject}.cert.pem").write_bytes(_pem_cert(cert, inter))
            _write_p12(directory, subject)
        index = {"base_url": base, "subjects": subjects, "revoked_at": now.isoformat()}
        (directory / "index.json").write_text(json.dumps(index, indent=1))
        for name, data in cls(directory, base, index).crls().items():
            (directory / "crl" / name).write_bytes(data)
        return index

    @classmethod
    def load(cls, directory: Path) -> TestPKI:
        """Open a PKI written by :meth:`create`. Raises SigningError saying why it is not one."""
        try:
            text = (Path(directory) / "index.json").read_text()
        except FileNotFoundError:
            raise SigningError(f"{directory} is not a test PKI (no index.json)") from None
        except (OSError, ValueError) as exc:  # not a folder, unreadable, not UTF-8
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SigningError(f"{directory} is not a test PKI (index.json: {why})") from None
        try:
            index = json.loads(text)
        except ValueError as exc:
            raise SigningError(
                f"{directory} is not a test PKI (index.json is not JSON: {exc})"
            ) from None
        for key, kind in (("base_url", str), ("subjects", dict)):
            if not isinstance(index, dict) or not isinstance(index.get(key), kind):
                raise SigningError(f"{directory} is not a test PKI (index.json has no {key})")
        return cls(Path(directory), index["base_url"], index)

    @staticmethod
    def _leaf_builder(
        cn: str,
        key: PrivateKey,
        issuer: x509.Certificate,
        issuer_key: PrivateKey,
        now: dt.datetime,
        days: int = 730,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ISSUED)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )

    @staticmethod
    def _issue(
        subject: str,
        public_key: Any,
        spec: SubjectSpec,
        issuer: x509.Certificate,
        issuer_key: PrivateKey,
        base: str,
        now: dt.datetime,
    ) -> x509.Certificate:
        start, end = now - _ISSUED, now + dt.timedelta(days=730)
        if spec.expired:
            start, end = now - dt.timedelta(days=400), now - dt.timedelta(days=30)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if spec.usage == "none":
            # Key agreement only: a certificate that must not be accepted for signatures.
            b = b.add_extension(_ku(agreement=True), critical=True)
        else:
            b = b.add_extension(_ku(signing=True), critical=True)
        if spec.usage == "tsa":
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
        elif spec.usage == "ocsp":
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
            b = b.add_extension(x509.OCSPNoCheck(), False)
        if spec.crl:
            b = b.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(f"{base}/crl/intermediate.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            )
        if spec.ocsp:
            b = b.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(f"{base}/ocsp"),
                        )
                    ]
                ),
                False,
            )
        return b.sign(issuer_key, hashes.SHA256())

    def issue(
        self,
        subject: str,
        public_key: Any,
        *,
        usage: Literal["signing", "none"] = "signing",
    ) -> x509.Certificate:
        """Issue a signing certificate from the intermediate for a key held elsewhere (a token).
        Not recorded in the index: OCSP answers "unknown" for it, the CRL does not list it."""
        inter, inter_key = self._ca("intermediate")
        return self._issue(
            subject,
            public_key,
            SubjectSpec(usage=usage, ocsp=False),
            inter,
            inter_key,
            self.base_url,
            _now(),
        )

    # --- revocation data -------------------------------------------------------------------
    def _revoked(self) -> list[int]:
        return [s["serial"] for s in self.index["subjects"].values() if s["revoked"]]

    def crls(self) -> dict[str, bytes]:
        """Freshly signed DER CRLs by file name (``root.crl``, ``intermediate.crl``)."""
        now = _now()
        revoked_at = dt.datetime.fromisoformat(self.index["revoked_at"])
        out = {}
        for name, serials in (("root", []), ("intermediate", self._revoked())):
            cert, key = self._ca(name)
            b = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(cert.subject)
                .last_update(now - dt.timedelta(minutes=5))
                .next_update(now + dt.timedelta(days=7))
                .add_extension(x509.CRLNumber(int(now.timestamp())), False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
                )
            )
            for serial in serials:
                b = b.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(serial)
                    .revocation_date(revoked_at)
                    .build()
                )
            out[f"{name}.crl"] = b.sign(key, hashes.SHA256()).public_bytes(
                serialization.Encoding.DER
            )
        return out

    def ocsp_response(self, request_der: bytes) -> bytes:
        """Answer one DER OCSP request as the delegated ``ocsp`` responder."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        responder = self.certificate("ocsp")
        responder_key = serialization.load_pem_private_key(self.key_path("ocsp").read_bytes(), None)
        assert isinstance(responder_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        by_serial = {s["serial"]: s for s in self.index["subjects"].values()}
        now = _now()
        entry = by_serial.get(req.serial_number)
        status = ocsp.OCSPCertStatus.UNKNOWN
        if entry is not None:
            status = ocsp.OCSPCertStatus.REVOKED if entry["revoked"] else ocsp.OCSPCertStatus.GOOD
        b = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=req.issuer_name_hash,
                issuer_key_hash=req.issuer_key_hash,
                serial_number=req.serial_number,
                algorithm=req.hash_algorithm,
                cert_status=status,
                this_update=now - dt.timedelta(minutes=1),
                next_update=now + dt.timedelta(hours=1),
                revocation_time=(
                    dt.datetime.fromisoformat(self.index["revoked_at"])
                    if status == ocsp.OCSPCertStatus.REVOKED
                    else None
                ),
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
            .certificates([responder])
        )
        for ext in req.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                b = b.add_extension(ext.value, critical=False)
        return b.sign(responder_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@contextlib.contextmanager
def _building_beside(directory: Path) -> Iterator[None]:
    """Hold the lock of ``directory``'s parent while a PKI is built beside it, and first remove
    the folders an earlier creation was building there when it was killed (SIGKILL, a power
    cut: its ``except`` never ran), each holding a CA's private keys. Every creation under way
    holds this lock, which the kernel releases when its process dies, so a folder found while
    holding it is no live creation's. Where the parent cannot be locked (a file system without
    flock), nothing is removed."""
    try:
        fd = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        else:
            for left in directory.parent.glob(f".{glob.escape(directory.name)}.*.partial"):
                if building_name(directory.name, left.name) and left.is_dir():
                    shutil.rmtree(left, ignore_errors=True)
        yield
    finally:
        os.close(fd)  # and the lock with it


def building_name(name: str, other: str) -> bool:
    """Whether ``other`` names a folder that a creation of a test PKI named ``name`` builds in
    (beside it: see :func:`_folder_beside`)."""
    prefix = f".{name}."
    return other.startswith(prefix) and _BUILDING.fullmatch(other[len(prefix) :]) is not None


_BUILDING = re.compile(r"[0-9a-f]{8}\.partial")  # what _folder_beside adds to the name


def _folder_beside(directory: Path) -> Path:
    """A new folder beside ``directory`` (whose parent exists), to build it in: with the mode
    ``directory`` has, or else the one a new folder gets (the umask's)."""
    building = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}.partial")
    building.mkdir()
    with contextlib.suppress(FileNotFoundError):
        building.chmod(stat.S_IMODE(directory.stat().st_mode))
    return building


def _write_p12(directory: Path, subject: str) -> None:
    # cryptography refuses an empty PKCS#12 password; openssl writes one NSS's pk12util accepts.
    try:
        proc = subprocess.run(
            [
                "openssl",
                "pkcs12",
                "-export",
                "-passout",
                "pass:",
                "-name",
                subject,
                "-inkey",
                str(directory / f"{subject}.key.pem"),
                "-in",
                str(directory / f"{subject}.cert.pem"),
                "-out",
                str(directory / f"{subject}.p12"),
            ],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise SigningError(
            "openssl not found on PATH: it writes the test PKI's .p12 files (install openssl)"
        ) from None
    if proc.returncode != 0:
        raise SigningError(f"openssl pkcs12 failed for {subject}: {proc.stderr.decode()[:200]}")


@contextlib.asynccontextmanager
async def serve_pki(
    pki: TestPKI, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """Serve the PKI's CRLs (``GET /crl/<name>.crl``) and OCSP (``POST /ocsp``, ``GET /ocsp/<b64>``).

    The port defaults to the one in the PKI's base URL (the URLs baked into its certificates).
    Yields the base URL.
    """
    if port is None:
        port = urlsplit(pki.base_url).port or 80
    crls = await asyncio.to_thread(pki.crls)

    async def crl(request: web.Request) -> web.Response:
        data = crls.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/pkix-crl")

    async def answer(der: bytes) -> web.Response:
        body = await asyncio.to_thread(pki.ocsp_response, der)
        return web.Response(body=body, content_type="application/ocsp-response")

    async def ocsp_post(request: web.Request) -> web.Response:
        return await answer(await request.read())

    async def ocsp_get(request: web.Request) -> web.Response:
        try:
            der = base64.b64decode(request.match_info["req"])
        except ValueError as exc:
            raise web.HTTPBadRequest() from exc
        return await answer(der)

    app = web.Application()
    app.router.add_get("/crl/{name}", crl)
    app.router.add_post("/ocsp", ocsp_post)
    app.router.add_get("/ocsp/{req:.+}", ocsp_get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        bound = runner.addresses[0][1]  # port 0: the one the system chose
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound}"  # IPv6 in brackets
    finally:
        await runner.cleanup()


def self_signed(folder: Path, name: str, *, ip: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate named ``name`` (for ``ip``, if given) and its key, as PEM files
    in ``folder``: a test's TLS server, trusted by naming the certificate as the client's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, _pem_key(key))
    return cert_path, key_path


def free_port() -> int:
    """A free TCP port on loopback (for a base URL chosen before the server starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_pki(base_dir: Path | None = None) -> TestPKI:
    """A PKI in a fresh temporary directory with a free port (for scripts and benches)."""
    directory = Path(tempfile.mkdtemp(prefix="lienthong-pki-", dir=base_dir))
    return TestPKI.create(directory, base_url=f"http://127.0.0.1:{free_port()}")


def file_key(pki: TestPKI, subject: str) -> FileKey:
    key = pki.key(subject)
    assert isinstance(key, FileKey)
    return key


def one_page_pdf(content: bytes) -> bytes:
    """An A4 page with ``content`` (PDF text operators, Helvetica as /F1): documents to sign."""
    import io

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    font = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Font"),
            generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
            generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
            generic.NameObject("/Encoding"): generic.NameObject("/WinAnsiEncoding"),
        }
    )
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]
            ),
            generic.NameObject("/Contents"): w.add_object(
                generic.StreamObject(stream_data=content)
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(
                {
                    generic.NameObject("/Font"): generic.DictionaryObject(
                        {generic.NameObject("/F1"): w.add_object(font)}
                    )
                }
            ),
        }
    )
    w.insert_page(page)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def sample_pdf(text: str = "Giay khai sinh") -> bytes:
    """A small one-page PDF (ASCII text) to sign in tests and benches."""
    return one_page_pdf(f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode())


SAMPLE_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
    b"<edXML:edXMLHeader><edXML:MessageHeader><edXML:From><edXML:OrganId>000.00.00.H41"
    b"</edXML:OrganId></edXML:From><edXML:Subject>Gi\xe1\xba\xa5y khai sinh</edXML:Subject>"
    b"</edXML:MessageHeader></edXML:edXMLHeader><edXML:edXMLBody><Content>Nguy\xe1\xbb\x85n"
    b" Th\xe1\xbb\x8b Lan</Content><Attachment>"
    + b"QUJDREVGR0hJSktMTU5PUA==" * 40
    + b"</Attachment></edXML:edXMLBody></edXML:edXMLEnvelope>\n"
)
EDXML_HEADER = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}edXMLHeader"
