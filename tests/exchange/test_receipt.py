"""The hub's signed receipt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from gateway.exchange.errors import InvalidEdxml
from gateway.exchange.model import VN_TZ, AttachmentInfo, TraceHeader
from gateway.exchange.receipt import Receipt, build_receipt, read_receipt, sign_receipt
from signing.errors import SignatureInvalid as SigningInvalid
from signing.xml import verify_xml

RECEIPT = Receipt(
    id="doc-01HF",
    document_id="000.00.11.H53,2020/10/30,2491/STC-BCTC",
    sender="000.00.11.H53",
    recipients=("000.00.00.H41", "000.00.00.G15"),
    received_at=datetime(2020, 10, 30, 9, 16, 3, tzinfo=VN_TZ),
    package_sha256="a" * 64,
    package_size=123456,
    attachments=(
        AttachmentInfo("cid:1", "Công văn 2491.pdf", "application/pdf", "", "b" * 64, 4567),
    ),
    trace=TraceHeader("000.00.00.G22", datetime(2020, 10, 30, 9, 16, 3, tzinfo=VN_TZ)),
)


async def test_signed_receipt_verifies_and_reads_back(pki: Any, trust: Any) -> None:
    signed = await sign_receipt(build_receipt(RECEIPT), pki.key("gateway"))
    result = await verify_xml(signed, trust)
    assert result.report.valid and result.report.signer == "gateway"
    back = read_receipt(signed)
    assert back.signed
    assert back.document_id == RECEIPT.document_id
    assert back.recipients == RECEIPT.recipients
    assert back.received_at == RECEIPT.received_at
    assert (
        back.attachments[0].sha256 == "b" * 64 and back.attachments[0].name == "Công văn 2491.pdf"
    )
    assert back.trace == RECEIPT.trace


async def test_altered_receipt_fails_verification(pki: Any, trust: Any) -> None:
    signed = await sign_receipt(build_receipt(RECEIPT), pki.key("gateway"))
    with pytest.raises(SigningInvalid):
        await verify_xml(signed.replace(b"a" * 64, b"c" * 64), trust)


@pytest.mark.parametrize("data", [b"<x/>", b"<!DOCTYPE x><x/>", b"not xml"])
def test_read_receipt_refuses(data: bytes, key: Callable[[str], Any]) -> None:
    with pytest.raises(InvalidEdxml):
        read_receipt(data)
