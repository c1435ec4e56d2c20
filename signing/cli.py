"""Click commands the root CLI adds: ``sign``, ``verify``, ``pki``, ``tsa``.

Exit codes: 0 success (for ``verify``: every signature valid), 1 invalid signature, 2 bad input
or usage (also: IN is not an XML / PDF document at all, a server cannot listen). Errors are one
line on stderr; secrets never appear in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from .errors import SignatureInvalid, SigningError, UntrustedSigner
from .keys import SigningKey, load_key
from .report import SignatureReport
from .trust import TrustStore, check_strength, check_usage, check_valid_now

__all__ = ["commands", "pki", "quiet_pyhanko", "sign", "silence_pyhanko", "tsa", "verify"]


def _fail(message: str, code: int = 2) -> NoReturn:
    # One line whatever the message carries (an exception's text may hold newlines), and a file
    # name's bytes that are not UTF-8 shown as such ('\xff'), not as Python's surrogates ('\udcff').
    try:
        shown = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name's byte makes
        shown = message.encode("utf-8", "backslashreplace").decode("utf-8")
    click.echo(f"error: {' '.join(shown.split())}", err=True)
    sys.exit(code)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


def _check_writable(path: str) -> None:
    """Refuse an OUT that cannot be written before any signing work (a PIN, a TSA request)."""
    if not path:
        _fail("OUT is empty: name the file to write")
    target = Path(path)
    if target.is_dir():
        _fail(f"cannot write {path}: it is a folder")
    if not target.parent.is_dir():
        _fail(f"cannot write {path}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        _fail(f"cannot write {path}: permission denied")


def _write(path: str, data: bytes) -> None:
    """OUT whole or not at all: written beside it, then renamed over it, so that a full disk
    leaves neither half a signed document nor a good earlier OUT cut short."""
    target = Path(path)
    part = target.with_name(f".{target.name}.part")
    try:
        with part.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
    except BaseException as exc:  # a Ctrl-C too: no .OUT.part left behind
        part.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        _fail(f"cannot write {path}: {exc.strerror or exc}")


def silence_pyhanko() -> Callable[[], None]:
    """Silence pyHanko's and pyhanko-certvalidator's loggers; return what restores them.

    They log each failed validation (a warning with the whole story, or a traceback), and at INFO
    each certificate they check, each time naming it by its full subject: a personal
    certificate's holds its holder's name and CCCD number (``UID=CCCD:…``). The commands print
    their own report; ``serve`` answers with a problem and never logs a subject."""
    loggers = [logging.getLogger(n) for n in ("pyhanko", "pyhanko_certvalidator")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)

    return restore


@contextlib.contextmanager
def quiet_pyhanko() -> Any:
    """pyHanko silenced (:func:`silence_pyhanko`) while the command runs. (Every ``lienthong``
    command but ``serve`` runs inside it, ``audit verify`` checking timestamps with pyHanko too;
    ``serve`` silences it for good: gateway.logs.configure_logging.)"""
    restore = silence_pyhanko()
    try:
        yield
    finally:
        restore()


def _check_signer(key: SigningKey, trust: TrustStore | None) -> None:
    """Refuse a key that may sign no document, by the rule the gateway applies to ``[signing]``
    at start (signing.trust.check_usage: key usage, and an EKU that dedicates the key to a TSA,
    an OCSP responder, a TLS server or code signing), and one whose certificate, or an issuer
    given with it, is not valid now: a signature made with it proves nothing (B-B, B-T and B-LT
    alike; a verifier refuses it). With ``trust`` (B-LT), the chain and its revocation status
    are checked too, so a revoked signer is refused."""
    cert = key.certificate
    try:
        check_usage(cert, "signing")
        check_strength((cert, *key.chain))
    except UntrustedSigner as exc:
        _fail(f"this key may sign no document: {exc.reason}")
    try:
        check_valid_now((cert, *key.chain))
    except UntrustedSigner as exc:
        _fail(f"{exc.reason}: it signs no document")
    if trust is not None:
        try:
            asyncio.run(trust.validate(cert, key.chain))
        except UntrustedSigner as exc:
            _fail(f"the signer's certificate is refused: {exc.reason}")


def _not_a_document(path: str, kind: str, data: bytes, reason: str) -> str | None:
    """The one-line error when ``reason`` (a signing error's text) says that IN is not an XML or
    PDF document at all, as opposed to a document whose signature is missing or does not verify."""
    if kind == "pdf":
        if b"%PDF-" not in data[:1024]:
            return f"{path} is not a PDF"
        for prefix in ("not a readable PDF: ", "cannot sign PDF: PdfReadError: "):
            if reason.startswith(prefix):
                return f"{path} is not a readable PDF: {reason[len(prefix) :]}"
        return None
    if reason.startswith("the document already holds a signature"):
        return f"{path} already holds a signature: co-signing XML is not supported"
    if reason.startswith("the document holds the id "):
        return f"{path} {reason.removeprefix('the document ')}"
    if reason.startswith("not well-formed XML"):
        return f"{path} is {reason.replace(' (<string>, line 1)', '')}"
    if reason == "DOCTYPE not allowed":
        return f"{path} has a DOCTYPE, refused"
    return None


def _base_url_port(url: str) -> int:
    """The port of a test PKI's base URL (``pki serve`` listens on it); ValueError says what is
    wrong with the URL."""
    example = "e.g. http://127.0.0.1:8791"
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        raise ValueError(f"{url!r} is not a URL: it holds blanks or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http:// URL with a host ({example})")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        raise ValueError(
            f"{url!r} must be http://HOST[:PORT] alone, without user, path, query or fragment "
            f"(pki serve serves the CRLs and OCSP at the root; {example})"
        )
    if port == 0:
        raise ValueError(f"{url!r}: port 0 cannot be baked into certificates ({example})")
    return port or 80


def listen_failure(exc: OSError) -> str:
    """Why a server could not bind, in words (the sandbox command says it the same way)."""
    return {
        errno.EADDRINUSE: "address already in use",
        errno.EADDRNOTAVAIL: "address not available on this machine",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }.get(exc.errno or 0, exc.strerror or str(exc))


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """One line for a server that could not bind ``host:port``."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: unknown host {host!r} ({exc.strerror})"
    return f"cannot listen on {where}: {listen_failure(exc)}"


@click.command()
@click.argument("kind", type=click.Choice(["xml", "pdf"]))
@click.argument("infile", metavar="IN")
@click.argument("outfile", metavar="OUT")
@click.option("--key", "key_spec", required=True, help="PEM key, .p12 file or pkcs11: URI")
@click.option("--cert", default=None, help="certificate (+ chain) PEM, if not beside the key")
@click.option(
    "--level",
    default=None,
    type=click.Choice(["XMLDSig", "B-B", "B-T", "B-LT"]),
    help="XML: XMLDSig (default), B-B, B-T (not B-LT); PDF: B-B (default), B-T, B-LT (not XMLDSig)",
)
@click.option("--tsa", "tsa_url", default=None, help="RFC 3161 TSA URL (for B-T, B-LT)")
@click.option(
    "--trust", "trust_files", multiple=True, help="anchors, for B-LT revocation data (PDF only)"
)
def sign(
    kind: str,
    infile: str,
    outfile: str,
    key_spec: str,
    cert: str | None,
    level: str | None,
    tsa_url: str | None,
    trust_files: tuple[str, ...],
) -> None:
    """Sign IN (XML or PDF) into OUT."""
    chosen: Any = level or ("XMLDSig" if kind == "xml" else "B-B")
    if kind == "xml" and chosen == "B-LT":
        _fail("XML signatures support XMLDSig, B-B and B-T")
    if kind == "pdf" and chosen == "XMLDSig":
        _fail("PDF signatures support B-B, B-T and B-LT")
    if tsa_url is not None and chosen not in ("B-T", "B-LT"):
        needs = "--level B-T" if kind == "xml" else "--level B-T or B-LT"
        _fail(f"--tsa needs {needs}: a signature at level {chosen} carries no timestamp")
    if tsa_url is None and chosen in ("B-T", "B-LT"):
        _fail(f"--level {chosen} needs --tsa URL (an RFC 3161 timestamp authority)")
    if trust_files and chosen != "B-LT":
        _fail("--trust needs --level B-LT (PDF): only B-LT embeds revocation data")
    data = _read(infile)
    if kind == "pdf" and b"%PDF-" not in data[:1024]:
        _fail(f"{infile} is not a PDF")
    _check_writable(outfile)
    try:
        with quiet_pyhanko():
            out = _sign_with(kind, data, key_spec, cert, chosen, tsa_url, trust_files)
    except SigningError as exc:
        _fail(_not_a_document(infile, kind, data, str(exc)) or str(exc))
    except UnicodeError as exc:  # a UTF-16 byte-order mark before bytes that are not UTF-16
        _fail(f"{infile} is not well-formed XML: {exc}")
    _write(outfile, out)
    click.echo(f"signed {infile} -> {outfile}")


def _sign_with(
    kind: str,
    data: bytes,
    key_spec: str,
    cert: str | None,
    chosen: Any,
    tsa_url: str | None,
    trust_files: tuple[str, ...],
) -> bytes:
    from .pdf import sign_pdf
    from .xml import sign_xml

    trust = TrustStore.from_pem_files(trust_files) if trust_files else None
    key = load_key(key_spec, cert=cert)
    try:
        _check_signer(key, trust)
        if kind == "xml":
            return asyncio.run(sign_xml(data, key, level=chosen, tsa_url=tsa_url))
        return asyncio.run(sign_pdf(data, key, level=chosen, tsa_url=tsa_url, trust=trust))
    finally:
        key.close()


@click.command()
@click.argument("kind", type=click.Choice(["xml", "pdf"]))
@click.argument("infile", metavar="IN")
@click.option("--trust", "trust_files", multiple=True, required=True, help="anchor PEM (repeat)")
@click.option(
    "--revocation",
    type=click.Choice(["hard-fail", "soft-fail", "off"]),
    default="soft-fail",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def verify(
    kind: str, infile: str, trust_files: tuple[str, ...], revocation: Any, as_json: bool
) -> None:
    """Verify the signatures in IN; exit 0 only when valid (1 invalid, 2 bad input)."""
    from .pdf import verify_pdf
    from .xml import verify_xml

    data = _read(infile)
    try:
        trust = TrustStore.from_pem_files(trust_files, revocation=revocation)
    except SigningError as exc:
        _fail(str(exc))
    if kind == "pdf" and b"%PDF-" not in data[:1024]:
        _fail(f"{infile} is not a PDF")
    reports: list[SignatureReport]
    try:
        with quiet_pyhanko():
            if kind == "xml":
                reports = [asyncio.run(verify_xml(data, trust)).report]
            else:
                reports = asyncio.run(verify_pdf(data, trust))
    except SignatureInvalid as exc:
        problem = _not_a_document(infile, kind, data, exc.reason)
        if problem:
            _fail(problem)
        reports = getattr(exc, "reports", None) or [
            SignatureReport(valid=False, signer="unknown", level="unknown", reason=exc.reason)
        ]
    except SigningError as exc:  # TimestampError: a B-T token that does not verify
        reports = getattr(exc, "reports", None) or [
            SignatureReport(valid=False, signer="unknown", level="unknown", reason=str(exc))
        ]
    except UnicodeError as exc:  # a UTF-16 byte-order mark before bytes that are not UTF-16
        _fail(f"{infile} is not well-formed XML: {exc}")
    ok = all(r.valid for r in reports)
    if as_json:
        click.echo(
            json.dumps(
                {"valid": ok, "signatures": [r.as_dict() for r in reports]},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        click.echo("\n".join(r.as_text() for r in reports))
    sys.exit(0 if ok else 1)


@click.group()
def pki() -> None:
    """A throw-away test PKI (root, intermediate, signers, TSA, OCSP, CRLs)."""


@pki.command("init")
@click.argument("directory")
@click.option(
    "--base-url",
    default="http://127.0.0.1:8791",
    show_default=True,
    help="http://HOST:PORT where CRLs and OCSP are served (baked into the certificates)",
)
def pki_init(directory: str, base_url: str) -> None:
    """Create a test PKI in DIRECTORY (new or empty: an existing PKI is never overwritten)."""
    from .testing import TestPKI

    if not directory:
        _fail("DIRECTORY is empty: name a new or empty folder for the test PKI")
    try:
        _base_url_port(base_url)
    except ValueError as exc:
        _fail(f"--base-url {exc}")
    folder = Path(directory)
    existed = folder.exists()
    try:
        if existed and not folder.is_dir():
            _fail(f"{directory} is not a folder")
        if existed and any(folder.iterdir()):
            _fail(
                f"{directory} is not empty: a test PKI is never overwritten; choose another folder"
            )
    except OSError as exc:
        _fail(f"cannot read {directory}: {exc.strerror or exc}")
    try:
        made = TestPKI.create(folder, base_url=base_url)
    except (SigningError, OSError) as exc:
        if not existed:  # what was written is ours alone: do not leave half a PKI behind
            shutil.rmtree(folder, ignore_errors=True)
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        _fail(f"cannot create the test PKI in {directory}: {why}")
    click.echo(f"test PKI in {directory}: {', '.join(made.subjects)}")


@pki.command("serve")
@click.argument("directory")
def pki_serve(directory: str) -> None:
    """Serve DIRECTORY's CRLs and OCSP at its base URL until interrupted."""
    from .testing import TestPKI, serve_pki

    if not directory:
        _fail("DIRECTORY is empty: name the folder of a test PKI (lienthong pki init)")
    try:
        made = TestPKI.load(Path(directory))
    except SigningError as exc:
        _fail(str(exc))
    except (KeyError, TypeError, AttributeError):
        _fail(f"{directory} is not a test PKI (index.json has no base_url)")
    try:
        port = _base_url_port(made.base_url)
    except ValueError as exc:
        _fail(f"{directory} has an unusable base URL: {exc}")
    try:
        made.crls()  # the CA key and certificates are readable: serving them will work
    except (OSError, ValueError, KeyError, SigningError) as exc:
        _fail(f"{directory} is not a usable test PKI: {exc}")
    host = "127.0.0.1"

    async def run() -> None:
        async with serve_pki(made, host=host, port=port) as url:
            click.echo(f"CRLs and OCSP at {url}")
            sys.stdout.flush()
            await asyncio.Event().wait()

    try:
        with _interruptible():
            asyncio.run(run())
    except OSError as exc:
        _fail(_listen_error(host, port, exc), code=1)  # a runtime failure, as serve's


@click.group()
def tsa() -> None:
    """A local RFC 3161 timestamp authority for development."""


@tsa.command("serve")
@click.option("--pki", "pki_dir", required=True, help="test PKI directory (uses its tsa key)")
@click.option("--port", type=click.IntRange(0, 65535), default=8792, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def tsa_serve(pki_dir: str, port: int, host: str) -> None:
    """Serve a TSA signing with PKI's tsa certificate until interrupted."""
    from .timestamps import serve_tsa

    if not pki_dir:
        _fail("--pki is empty: name the folder of a test PKI (lienthong pki init)")

    async def run() -> None:
        async with serve_tsa(pki_dir, host=host, port=port) as url:
            click.echo(f"TSA at {url}")
            sys.stdout.flush()
            await asyncio.Event().wait()

    try:
        with _interruptible():
            asyncio.run(run())
    except SigningError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(_listen_error(host, port, exc), code=1)  # a runtime failure, as serve's


class _interruptible:
    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: Any, val: Any, tb: Any) -> bool:
        return tp is KeyboardInterrupt


commands: list[click.Command] = [sign, verify, pki, tsa]
