"""An attached PDF whose checking would cost more than its size says is refused before the work
(413, as a PDF over the size cap), a padded signature is invalid (422), and the gateway verifies
a bounded number of PDFs at once, whatever the number of packages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gateway.exchange.attachments as attachments
import signing.pdf
from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import NewAttachment
from gateway.exchange.check import check_package
from gateway.exchange.errors import PayloadTooLarge, SignatureInvalid
from signing.testing import sample_pdf
from tests.signing import pdf_bombs

from .factories import AGENCIES, TAY_NINH_STC


async def _check(tmp_path: Path, blobs: BlobStore, trust: Any, data: bytes) -> Any:
    path = tmp_path / "in.xml"
    path.write_bytes(data)
    return await check_package(
        path, blobs, sender=TAY_NINH_STC, known_agencies=AGENCIES, trust=trust
    )


async def test_a_pdf_with_too_many_signatures_is_413_before_any_is_validated(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validated: list[Any] = []
    monkeypatch.setattr(
        signing.pdf, "async_validate_pdf_signature", lambda *a, **kw: validated.append(a)
    )
    bomb = pdf_bombs.with_signature_fields(signed_pdf, 1000)  # 37 s and 560 MB before
    data = make_package(attachments=[NewAttachment("cong-van.pdf", bomb)])
    with pytest.raises(PayloadTooLarge) as info:
        await _check(tmp_path, blobs, trust, data)
    problem = info.value.problem()
    assert problem["status"] == 413
    assert problem["type"] == "urn:lienthong:problem:payload-too-large"
    assert problem["detail"] == (
        "attachment cong-van.pdf: too many signatures: the PDF has more than 32 signed fields, "
        "each of which would be checked: its signatures cannot be checked"
    )
    assert info.value.extra == {"attachment": "cong-van.pdf"}
    assert validated == []


async def test_a_costly_object_stream_is_413(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    bomb = pdf_bombs.with_text_fields(signed_pdf, 1500, per_stream=1500)
    data = make_package(attachments=[NewAttachment("cv.pdf", bomb, zipped=True)])
    with pytest.raises(PayloadTooLarge, match=r"cv\.pdf\.zip/cv\.pdf: too complex a PDF"):
        await _check(tmp_path, blobs, trust, data)


async def test_a_signature_padded_with_certificates_is_422(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    key: Callable[[str], Any],
    make_package: Callable[..., bytes],
) -> None:
    padded = await pdf_bombs.sign_with_extra_certificates(sample_pdf(), key(TAY_NINH_STC), 100)
    data = make_package(attachments=[NewAttachment("cong-van.pdf", padded)])
    with pytest.raises(SignatureInvalid) as info:
        await _check(tmp_path, blobs, trust, data)
    assert info.value.problem()["status"] == 422
    assert info.value.detail == (
        "attachment cong-van.pdf: too many certificates in the signature: its CMS carries 102, "
        "more than the 64 checked"
    )


async def test_pdf_verifications_at_once_are_bounded(
    trust: Any, signed_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verification waits on a gate; however many are asked for, no more than
    MAX_CONCURRENT_PDF_CHECKS are inside verify_pdf at once, and the rest run as they finish."""
    running, most = 0, 0
    gate = asyncio.Event()
    real = signing.pdf.verify_pdf

    async def held(data: bytes, trust: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await gate.wait()
            return await real(data, trust)
        finally:
            running -= 1

    monkeypatch.setattr(signing.pdf, "verify_pdf", held)
    tasks = [
        asyncio.create_task(attachments.verify_pdf_source(f"pl{i}.pdf", signed_pdf, trust))
        for i in range(3 * attachments.MAX_CONCURRENT_PDF_CHECKS)
    ]
    for _ in range(50):  # every task runs until it waits, on the gate or for a slot
        await asyncio.sleep(0)
    assert running == most == attachments.MAX_CONCURRENT_PDF_CHECKS
    gate.set()
    reports = await asyncio.gather(*tasks)
    assert [r["signatures"][0]["valid"] for r in reports] == [True] * len(tasks)
    assert most == attachments.MAX_CONCURRENT_PDF_CHECKS


async def test_a_cancelled_verification_keeps_its_slot_until_its_thread_ends(
    trust: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` cancels a handler whose client went away, but not the thread checking its PDF:
    the slot went free at once, and a client uploading and hanging up had any number of checks
    running. The slot is now held until the thread is done."""
    release, lock = threading.Event(), threading.Lock()
    threads, most = 0, 0

    def check() -> list[Any]:
        nonlocal threads, most
        with lock:
            threads += 1
            most = max(most, threads)
        release.wait()
        with lock:
            threads -= 1
        return []

    async def in_a_thread(data: bytes, trust: Any) -> Any:
        return await asyncio.to_thread(check)

    monkeypatch.setattr(signing.pdf, "verify_pdf", in_a_thread)
    n = attachments.MAX_CONCURRENT_PDF_CHECKS
    tasks = [
        asyncio.create_task(attachments.verify_pdf_source(f"c{i}.pdf", b"%PDF-", trust))
        for i in range(2 * n)
    ]
    try:
        for _ in range(500):  # until the first n are in their threads
            if threads == n:
                break
            await asyncio.sleep(0.01)
        assert threads == n
        for t in tasks[:n]:
            t.cancel()
        for _ in range(20):  # the others' chance to take a slot the cancelled let go
            await asyncio.sleep(0.01)
        assert most == n, f"{most} checks ran at once"
    finally:
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert [t.cancelled() for t in tasks] == [True] * n + [False] * n
