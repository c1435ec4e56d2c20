"""Checks on the attachments themselves: manifest consistency and PDF signatures.

Attached PDFs carry their own signatures (``adbe.pkcs7.detached`` or PAdES); each one, also when
zipped (as many systems in service send them), must verify against the configured trust anchors.
pyHanko needs the PDF in memory, so PDFs are capped (``max_pdf_bytes``); a bigger PDF is refused
rather than passed unchecked.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from typing import Any

from gateway.exchange.blobs import BlobStore
from gateway.exchange.errors import BlobError, InvalidEdxml, PayloadTooLarge, SignatureInvalid
from gateway.exchange.model import Package

__all__ = ["DEFAULT_MAX_PDF", "check_manifest", "pdf_sources", "verify_pdfs"]

DEFAULT_MAX_PDF = 64 * 1024 * 1024


def _cid(value: str) -> str:
    return value.strip().removeprefix("cid:").strip("<>")


def check_manifest(pkg: Package) -> None:
    """Every manifest Reference has its Attachment and no ContentId repeats. Raises InvalidEdxml."""
    seen: set[str] = set()
    for a in pkg.attachments:
        cid = _cid(a.content_id)
        if cid in seen:
            raise InvalidEdxml(f"attachment ContentId {a.content_id} repeats", field="ContentId")
        seen.add(cid)
    for r in pkg.references:
        if _cid(r.content_id) not in seen:
            raise InvalidEdxml(
                f"manifest Reference {r.content_id} has no attachment", field="Reference"
            )


def _is_pdf(name: str, content_type: str) -> bool:
    return content_type.lower() == "application/pdf" or name.lower().endswith(".pdf")


def _is_zip(name: str, content_type: str) -> bool:
    return content_type.lower() in ("application/zip", "application/x-zip-compressed") or (
        name.lower().endswith(".zip")
    )


def pdf_sources(
    pkg: Package, blobs: BlobStore, max_pdf_bytes: int = DEFAULT_MAX_PDF
) -> list[tuple[str, bytes]]:
    """``(label, pdf bytes)`` for each PDF attached, directly or inside a zip.

    Synchronous (run in a thread). Raises PayloadTooLarge for a PDF over the cap, InvalidEdxml
    for a broken zip, BlobError.
    """
    out: list[tuple[str, bytes]] = []
    for a in pkg.attachments:
        if _is_pdf(a.name, a.content_type):
            if a.size > max_pdf_bytes:
                raise PayloadTooLarge(
                    f"PDF {a.name} is over {max_pdf_bytes} bytes: its signature cannot be checked",
                    max_bytes=max_pdf_bytes,
                )
            out.append((a.name, blobs.read(a.sha256)))
        elif _is_zip(a.name, a.content_type):
            try:
                with blobs.open(a.sha256) as f, zipfile.ZipFile(f) as zf:
                    for info in zf.infolist():
                        if info.is_dir() or not info.filename.lower().endswith(".pdf"):
                            continue
                        if info.file_size > max_pdf_bytes:
                            raise PayloadTooLarge(
                                f"PDF {a.name}/{info.filename} is over {max_pdf_bytes} bytes",
                                max_bytes=max_pdf_bytes,
                            )
                        with zf.open(info) as member:
                            # Read one byte past the cap: the header's size may lie (zip bomb).
                            data = member.read(max_pdf_bytes + 1)
                        if len(data) > max_pdf_bytes:
                            raise PayloadTooLarge(
                                f"PDF {a.name}/{info.filename} is over {max_pdf_bytes} bytes",
                                max_bytes=max_pdf_bytes,
                            )
                        out.append((f"{a.name}/{info.filename}", data))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
                raise InvalidEdxml(f"attachment {a.name} is not a readable zip: {exc}") from exc
            except OSError as exc:
                raise BlobError(f"cannot read attachment {a.name}: {exc}") from exc
    return out


async def verify_pdfs(sources: Sequence[tuple[str, bytes]], trust: Any) -> list[dict[str, Any]]:
    """Verify every signature of every PDF; all must be valid and trusted.

    Returns one report dict per PDF. Raises SignatureInvalid naming the attachment.
    """
    from signing.errors import SignatureInvalid as SigningInvalid
    from signing.pdf import verify_pdf

    reports: list[dict[str, Any]] = []
    for label, data in sources:
        try:
            found = await verify_pdf(data, trust)
        except SigningInvalid as exc:
            raise SignatureInvalid(f"attachment {label}: {exc.reason}", attachment=label) from exc
        bad = [r for r in found if not r.valid]
        if bad:
            raise SignatureInvalid(
                f"attachment {label}: {bad[0].reason or 'invalid signature'}", attachment=label
            )
        reports.append({"attachment": label, "signatures": [r.as_dict() for r in found]})
    return reports
