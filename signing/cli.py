"""Click commands the root CLI adds: ``sign``, ``verify``, ``pki``, ``tsa``.

Exit codes: 0 success (for ``verify``: every signature valid), 1 invalid signature, 2 bad input
or usage. Errors are one line on stderr; secrets never appear in them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from .errors import SignatureInvalid, SigningError
from .keys import load_key
from .report import SignatureReport
from .trust import TrustStore

__all__ = ["commands", "pki", "sign", "tsa", "verify"]


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
        raise AssertionError from exc  # unreachable


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
    help="XML: XMLDSig (default), B-B, B-T; PDF: B-B (default), B-T, B-LT",
)
@click.option("--tsa", "tsa_url", default=None, help="RFC 3161 TSA URL (for B-T, B-LT)")
@click.option("--trust", "trust_files", multiple=True, help="anchors, for B-LT revocation data")
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
    from .pdf import sign_pdf
    from .xml import sign_xml

    data = _read(infile)
    try:
        key = load_key(key_spec, cert=cert)
        trust = TrustStore.from_pem_files(trust_files) if trust_files else None
        if kind == "xml":
            xml_level: Any = level or "XMLDSig"
            if xml_level == "B-LT":
                _fail("XML signatures support XMLDSig, B-B and B-T")
            out = asyncio.run(sign_xml(data, key, level=xml_level, tsa_url=tsa_url))
        else:
            pdf_level: Any = level or "B-B"
            if pdf_level == "XMLDSig":
                _fail("PDF signatures support B-B, B-T and B-LT")
            out = asyncio.run(sign_pdf(data, key, level=pdf_level, tsa_url=tsa_url, trust=trust))
        key.close()
    except SigningError as exc:
        _fail(str(exc))
    Path(outfile).write_bytes(out)
    click.echo(f"signed {infile} -> {outfile}")


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
    """Verify the signatures in IN; exit 0 only when valid."""
    from .pdf import verify_pdf
    from .xml import verify_xml

    data = _read(infile)
    try:
        trust = TrustStore.from_pem_files(trust_files, revocation=revocation)
    except SigningError as exc:
        _fail(str(exc))
    reports: list[SignatureReport]
    try:
        if kind == "xml":
            reports = [asyncio.run(verify_xml(data, trust)).report]
        else:
            reports = asyncio.run(verify_pdf(data, trust))
    except SignatureInvalid as exc:
        reports = getattr(exc, "reports", None) or [
            SignatureReport(valid=False, signer="", level="unknown", reason=exc.reason)
        ]
    except SigningError as exc:
        reports = [SignatureReport(valid=False, signer="", level="unknown", reason=str(exc))]
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
    help="where CRLs and OCSP are served (baked into the certificates)",
)
def pki_init(directory: str, base_url: str) -> None:
    """Create a test PKI in DIRECTORY."""
    from .testing import TestPKI

    try:
        made = TestPKI.create(Path(directory), base_url=base_url)
    except (SigningError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"test PKI in {directory}: {', '.join(made.subjects)}")


@pki.command("serve")
@click.argument("directory")
def pki_serve(directory: str) -> None:
    """Serve DIRECTORY's CRLs and OCSP at its base URL until interrupted."""
    from .testing import TestPKI, serve_pki

    made = TestPKI.load(Path(directory))

    async def run() -> None:
        async with serve_pki(made) as url:
            click.echo(f"CRLs and OCSP at {url}")
            await asyncio.Event().wait()

    with _interruptible():
        asyncio.run(run())


@click.group()
def tsa() -> None:
    """A local RFC 3161 timestamp authority for development."""


@tsa.command("serve")
@click.option("--pki", "pki_dir", required=True, help="test PKI directory (uses its tsa key)")
@click.option("--port", default=8792, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def tsa_serve(pki_dir: str, port: int, host: str) -> None:
    """Serve a TSA signing with PKI's tsa certificate until interrupted."""
    from .timestamps import serve_tsa

    async def run() -> None:
        async with serve_tsa(pki_dir, host=host, port=port) as url:
            click.echo(
                f"TSA at {url}",
            )
            sys.stdout.flush()
            await asyncio.Event().wait()

    try:
        with _interruptible():
            asyncio.run(run())
    except SigningError as exc:
        _fail(str(exc))


class _interruptible:
    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: Any, val: Any, tb: Any) -> bool:
        return tp is KeyboardInterrupt


commands: list[click.Command] = [sign, verify, pki, tsa]
