"""What an envelope's ``ds:Signature`` may hold besides what it signs: nothing.

The Reference (``URI=""``, enveloped-signature) takes the whole Signature out of the digest, so
anything put inside it after signing is signed by no one — and xmlsec1 verifies such a package
all the same. Found by probing: a ``ds:Object`` holding a forged ``MessageHeader`` and an
unsigned PDF ``Attachment`` was stored and handed to the recipient (202); a KeyInfo padded with
4,000 copies of a certificate (KeyInfo is not signed either) cost the hub 43 s.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gateway.exchange.errors import SignatureInvalid
from gateway.exchange.stream import scan_file
from gateway.exchange.xmldsig import check_envelope
from signing.pdf_limits import MAX_CMS_CERTIFICATES
from signing.testing import TestPKI, sample_pdf
from tests.e2e.test_documents import PROBLEM, Hub, package, running_hub

from .factories import NGHE_AN, TAY_NINH_STC

FORGED = (
    b"<ds:Object><edXML:MessageHeader><edXML:From><edXML:OrganId>000.00.00.G15</edXML:OrganId>"
    b"</edXML:From><edXML:Subject>FORGED SUBJECT</edXML:Subject></edXML:MessageHeader>"
    b"<edXML:AttachmentEncoded><edXML:Attachment><edXML:ContentId>x</edXML:ContentId>"
    b"<edXML:AttachmentName>lenh-chi.pdf</edXML:AttachmentName>"
    b"<edXML:ContentType>application/pdf</edXML:ContentType><edXML:ContentTransferEncoded>"
    + base64.b64encode(sample_pdf("unsigned order"))
    + b"</edXML:ContentTransferEncoded></edXML:Attachment></edXML:AttachmentEncoded></ds:Object>"
)


@pytest.fixture
async def running(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


def _scan(tmp_path: Path, data: bytes) -> Any:
    p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.xml"
    p.write_bytes(data)
    return scan_file(p, None)


def _inserted(data: bytes, before: bytes, what: bytes) -> bytes:
    """``what`` put in ``data`` before the first ``before``."""
    assert before in data, before
    return data.replace(before, what + before, 1)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed")
def test_xmlsec1_verifies_a_package_with_a_ds_object_put_in_its_signature(
    tmp_path: Path, pki: TestPKI, make_package: Callable[..., bytes]
) -> None:
    """Why the hub's own profile must refuse it: to XMLDSig the signature holds."""
    path = tmp_path / "forged.xml"
    path.write_bytes(_inserted(make_package(), b"</ds:Signature>", FORGED))
    done = subprocess.run(
        ["xmlsec1", "--verify", "--trusted-pem", str(pki.root_pem), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_a_ds_object_put_in_the_signature_is_refused(
    running: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    async with await running.send(TAY_NINH_STC, _inserted(data, b"</ds:Signature>", FORGED)) as r:
        assert r.status == 422, await r.text()
        body = await r.json(content_type=None)
        assert body["type"] == PROBLEM + "signature-invalid", body
        assert "ds:Signature holds ds:Object, which is not signed" in body["detail"], body
    status, inbox = await running.json("GET", "/v1/documents/inbox", NGHE_AN)
    assert (status, inbox["items"]) == (200, [])
    async with await running.send(TAY_NINH_STC, data) as r:  # the package as it was signed
        assert r.status == 202, await r.text()


@pytest.mark.parametrize(
    ("before", "what", "says"),
    [
        (b"</ds:Signature>", b"<ds:Object>text</ds:Object>", "ds:Object"),
        (b"<ds:KeyInfo>", b"<ds:Object/>", "ds:Object"),
        (b"</ds:Signature>", b"<x:Note xmlns:x='urn:x'>hi</x:Note>", "{urn:x}Note"),
        (b"<ds:X509Data>", b"<ds:KeyName>agency-000.00.00.G15</ds:KeyName>", "ds:KeyName"),
        (b"</ds:KeyInfo>", b"<ds:KeyValue/>", "ds:KeyValue"),
        (
            b"</ds:X509Data>",
            b"<ds:X509SubjectName>CN=G15</ds:X509SubjectName>",
            "ds:X509SubjectName",
        ),
        (b"</ds:X509Certificate>", b"<edXML:Subject>FORGED</edXML:Subject>", "edXML"),
        (b"</ds:SignatureValue>", b"<edXML:Subject>FORGED</edXML:Subject>", "edXML"),
        (b"<ds:X509Data>", b"FORGED SUBJECT", "text"),
        (b"</ds:Signature>", b"FORGED SUBJECT", "text"),
    ],
    ids=[
        "object",
        "object-before-keyinfo",
        "foreign-element",
        "keyname",
        "keyvalue",
        "subject-name",
        "inside-certificate",
        "inside-signature-value",
        "text-in-keyinfo",
        "text-in-signature",
    ],
)
def test_anything_the_signature_does_not_sign_is_refused(
    tmp_path: Path, make_package: Callable[..., bytes], before: bytes, what: bytes, says: str
) -> None:
    data = make_package()
    check_envelope(_scan(tmp_path, data))  # as signed: fine
    with pytest.raises(SignatureInvalid) as info:
        check_envelope(_scan(tmp_path, _inserted(data, before, what)))
    assert says in info.value.detail and "not signed" in info.value.detail, info.value.detail
    assert info.value.slug == "signature-invalid"


def test_a_signature_without_key_info_names_what_is_missing(
    tmp_path: Path, make_package: Callable[..., bytes]
) -> None:
    data = re.sub(rb"<ds:KeyInfo>.*</ds:KeyInfo>", b"", make_package(), flags=re.S)
    with pytest.raises(SignatureInvalid, match="no X509Certificate in KeyInfo"):
        check_envelope(_scan(tmp_path, data))


def _padded(data: bytes, copies: int, certificate: bytes | None = None) -> bytes:
    """``data`` with ``copies`` more X509Certificates before the signer's (the first)."""
    found = re.findall(rb"<ds:X509Certificate>(.*?)</ds:X509Certificate>", data, flags=re.S)
    pad = certificate if certificate is not None else found[1]  # the intermediate
    extra = b"".join(
        b"<ds:X509Certificate>" + pad + b"</ds:X509Certificate>" for _ in range(copies)
    )
    return data.replace(b"<ds:X509Data>", b"<ds:X509Data>" + extra, 1)


async def test_key_info_holds_at_most_as_many_certificates_as_a_pdf_signature(
    running: Hub, pki: TestPKI, signed_pdf: bytes
) -> None:
    data = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf)
    held = data.count(b"<ds:X509Certificate>")
    async with await running.send(TAY_NINH_STC, _padded(data, MAX_CMS_CERTIFICATES - held)) as r:
        assert r.status == 202, await r.text()
    other = package(pki, TAY_NINH_STC, (NGHE_AN,), signed_pdf, number="2492")
    async with await running.send(
        TAY_NINH_STC, _padded(other, MAX_CMS_CERTIFICATES + 1 - held)
    ) as r:
        assert r.status == 422, await r.text()
        body = await r.json(content_type=None)
        assert body["type"] == PROBLEM + "signature-invalid", body
        assert body["detail"] == (
            f"too many certificates in KeyInfo: it carries {MAX_CMS_CERTIFICATES + 1}, more than"
            f" the {MAX_CMS_CERTIFICATES} checked"
        )


def test_certificates_are_counted_before_any_is_read(
    tmp_path: Path, make_package: Callable[..., bytes]
) -> None:
    data = _padded(make_package(), MAX_CMS_CERTIFICATES, certificate=b"bm90IGEgY2VydGlmaWNhdGU=")
    with pytest.raises(SignatureInvalid, match="too many certificates in KeyInfo"):
        check_envelope(_scan(tmp_path, data))


def test_the_signer_is_found_comparing_each_certificate_a_bounded_number_of_times(
    tmp_path: Path, make_package: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer was searched for by comparing every pair of certificates (4,000 copies: 43 s).
    Counted, not timed: the names compared grow with the certificates, not with their square."""
    data = make_package()
    held = data.count(b"<ds:X509Certificate>")
    compared = {"n": 0}
    equal = x509.Name.__eq__

    def counting(self: x509.Name, other: object) -> bool:
        compared["n"] += 1
        return equal(self, other)

    monkeypatch.setattr(x509.Name, "__eq__", counting)
    for copies in (0, MAX_CMS_CERTIFICATES - held):
        compared["n"] = 0
        signature, others = check_envelope(_scan(tmp_path, _padded(data, copies)))
        assert signature.signer == f"agency-{TAY_NINH_STC}" and len(others) == held - 1 + copies
        assert compared["n"] <= 4 * (held + copies), (copies, compared["n"])
