"""The whole acceptance check of a package or status message, with real signed PDFs."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway.exchange.attachments import (
    MAX_ZIP_DIRECTORY,
    _zip_directory_size,
    looks_like_pdf,
    pdf_body_in,
)
from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.check import (
    CheckPolicy,
    certificate_agency,
    check_package,
    check_status,
    signer_is,
)
from gateway.exchange.edxml import q
from gateway.exchange.errors import (
    ExchangeError,
    ForgedSender,
    InvalidEdxml,
    PayloadTooLarge,
    SignatureInvalid,
    UnknownRecipient,
)
from gateway.exchange.xmldsig import sign_bytes, sign_file
from signing.keys import FileKey
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf

from .factories import (
    AGENCIES,
    NGHE_AN,
    SAMPLES,
    TAY_NINH_STC,
    TU_PHAP,
    cong_van_header,
    trace_for,
)


def _file(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / f"in{len(list(tmp_path.glob('in*')))}.xml"
    p.write_bytes(data)
    return p


async def _check(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    data: bytes,
    *,
    sender: str = TAY_NINH_STC,
    **kw: Any,
) -> Any:
    """check_package on ``data`` from ``sender`` (Tây Ninh's finance department), with the test
    directory of agencies and trust anchors."""
    return await check_package(
        _file(tmp_path, data), blobs, sender=sender, known_agencies=AGENCIES, trust=trust, **kw
    )


async def test_accepts_a_signed_cong_van_with_signed_pdf(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    data = make_package(to=(NGHE_AN, TU_PHAP))
    checked = await _check(tmp_path, blobs, trust, data)
    assert checked.package.header.document_id == "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    assert [t.organ_id for t in checked.package.header.to] == [NGHE_AN, TU_PHAP]
    assert checked.signature is not None and checked.signature.signer == f"agency-{TAY_NINH_STC}"
    (report,) = checked.pdf_reports
    assert report["signatures"][0]["valid"] is True
    assert blobs.read(checked.package.attachments[0].sha256) == signed_pdf


async def test_zipped_signed_pdf_is_checked_inside_the_zip(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    ok = make_package(attachments=[NewAttachment("cv.pdf", signed_pdf, zipped=True)])
    checked = await _check(tmp_path, blobs, trust, ok)
    assert checked.pdf_reports[0]["attachment"] == "cv.pdf.zip/cv.pdf"
    unsigned = make_package(attachments=[NewAttachment("cv.pdf", sample_pdf(), zipped=True)])
    with pytest.raises(SignatureInvalid, match=r"cv\.pdf\.zip/cv\.pdf"):
        await _check(tmp_path, blobs, trust, unsigned)


async def test_tampered_signed_pdf_is_refused_even_when_the_envelope_is_resigned(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    # A middleman who can sign envelopes still cannot alter the official's PDF.
    tampered = signed_pdf.replace(b"Cong van 2491", b"Cong van 9999")
    assert tampered != signed_pdf
    data = make_package(attachments=[NewAttachment("cv.pdf", tampered)])
    with pytest.raises(SignatureInvalid) as info:
        await _check(tmp_path, blobs, trust, data)
    assert info.value.extra["attachment"] == "cv.pdf"


async def test_pdf_signed_by_untrusted_ca(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    other_pki: TestPKI,
) -> None:
    pdf = await sign_pdf(sample_pdf(), other_pki.key(f"agency-{TAY_NINH_STC}"))
    data = make_package(attachments=[NewAttachment("cv.pdf", pdf)])
    with pytest.raises(SignatureInvalid, match=r"cv\.pdf"):
        await _check(tmp_path, blobs, trust, data)


async def test_a_pdf_signed_with_an_rsa_1024_key_is_refused(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    pki: TestPKI,
    make_package: Callable[..., bytes],
) -> None:
    # Accepted before, the key listed under the PDF report's weaknesses.
    pdf = await sign_pdf(sample_pdf(), pki.key("weak-rsa1024"))
    data = make_package(attachments=[NewAttachment("cv.pdf", pdf)])
    with pytest.raises(SignatureInvalid) as info:
        await _check(tmp_path, blobs, trust, data)
    assert info.value.extra["attachment"] == "cv.pdf"
    assert "a 1024-bit key is too weak to sign (RSA keys of at least 2048 bits): weak-rsa1024" in (
        str(info.value)
    )


@pytest.mark.parametrize(
    ("kwargs", "sender", "error", "slug"),
    [
        ({}, NGHE_AN, ForgedSender, "forged-sender"),  # From says Tây Ninh, Nghệ An is logged in
        (
            {"signer": NGHE_AN},
            TAY_NINH_STC,
            ForgedSender,
            "forged-sender",
        ),  # signed by someone else
        ({"to": (NGHE_AN, "000.00.99.H99")}, TAY_NINH_STC, UnknownRecipient, "unknown-recipient"),
        ({"signed": False}, TAY_NINH_STC, SignatureInvalid, "signature-invalid"),
    ],
)
async def test_refusals(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    kwargs: dict[str, Any],
    sender: str,
    error: type[ExchangeError],
    slug: str,
) -> None:
    data = make_package(**kwargs)
    with pytest.raises(error) as info:
        await _check(tmp_path, blobs, trust, data, sender=sender)
    assert info.value.problem()["type"] == f"urn:lienthong:problem:{slug}"


async def test_oversized_package(
    tmp_path: Path, blobs: BlobStore, trust: Any, make_package: Callable[..., bytes]
) -> None:
    data = make_package()
    with pytest.raises(PayloadTooLarge):
        await _check(tmp_path, blobs, trust, data, policy=CheckPolicy(max_bytes=len(data) // 2))
    assert not list(blobs.root.rglob("sha256/*/*/*"))


async def test_pdf_over_the_pdf_cap_is_refused_not_skipped(
    tmp_path: Path, blobs: BlobStore, trust: Any, make_package: Callable[..., bytes]
) -> None:
    data = make_package()
    with pytest.raises(PayloadTooLarge, match="PDF"):
        await _check(tmp_path, blobs, trust, data, policy=CheckPolicy(max_pdf_bytes=100))


async def test_sample_shaped_like_service_is_accepted(
    tmp_path: Path, blobs: BlobStore, trust: Any, key: Callable[[str], Any]
) -> None:
    signed = tmp_path / "signed.xml"
    await asyncio.to_thread(
        sign_file, SAMPLES / "cong-van-stc-tay-ninh.xml", signed, key(TAY_NINH_STC)
    )
    checked = await check_package(
        signed, blobs, sender=TAY_NINH_STC, known_agencies=AGENCIES, trust=trust
    )
    att = checked.package.attachments[0]
    with zipfile.ZipFile(io.BytesIO(blobs.read(att.sha256))) as zf:
        assert zf.namelist() == ["BangTongHop_DuToan_2020.csv"]
    replaced = tmp_path / "replaced.xml"
    await asyncio.to_thread(
        sign_file, SAMPLES / "thay-the-stc-tay-ninh.xml", replaced, key(TAY_NINH_STC)
    )
    checked = await check_package(
        replaced, blobs, sender=TAY_NINH_STC, known_agencies=AGENCIES, trust=trust
    )
    assert checked.package.doc_type == 3
    assert checked.package.trace.business is not None
    assert checked.package.trace.business.replacements[0].organ_ids == (NGHE_AN,)


async def test_status_messages(tmp_path: Path, trust: Any, key: Callable[[str], Any]) -> None:
    data = sign_bytes((SAMPLES / "trang-thai-03-ubnd-nghe-an.xml").read_bytes(), key(NGHE_AN))
    checked = await check_status(_file(tmp_path, data), sender=NGHE_AN, trust=trust)
    assert checked.status.status_code == "03"
    assert checked.status.response_for.document_id == "000.00.11.H53,2020/10/30,2491/STC-BCTC"
    with pytest.raises(ForgedSender):
        await check_status(_file(tmp_path, data), sender=TAY_NINH_STC, trust=trust)
    with pytest.raises(SignatureInvalid):
        await check_status(
            _file(tmp_path, (SAMPLES / "trang-thai-03-ubnd-nghe-an.xml").read_bytes()),
            sender=NGHE_AN,
            trust=trust,
        )


async def test_package_and_status_endpoints_do_not_mix(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    key: Callable[[str], Any],
) -> None:
    with pytest.raises(InvalidEdxml, match="not a status message"):
        await check_status(_file(tmp_path, make_package()), sender=TAY_NINH_STC, trust=trust)
    status = sign_bytes((SAMPLES / "trang-thai-03-ubnd-nghe-an.xml").read_bytes(), key(NGHE_AN))
    with pytest.raises(InvalidEdxml, match="status message"):
        await _check(tmp_path, blobs, trust, status, sender=NGHE_AN)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


async def _check_zip(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    zipped: bytes,
    policy: CheckPolicy,
) -> Any:
    data = make_package(attachments=[NewAttachment("phu-luc.zip", zipped, "application/zip")])
    return await _check(tmp_path, blobs, trust, data, policy=policy)


async def test_pdfs_unzipped_are_capped_in_total_not_only_each(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    # Each PDF is under the per-PDF cap; together they are not: a zip bomb of many members,
    # every one just under the cap, is refused once the total is passed.
    size = len(signed_pdf)
    zipped = _zip([(f"pl{i}.pdf", signed_pdf) for i in range(3)])
    policy = CheckPolicy(max_pdf_bytes=size, max_pdf_total_bytes=2 * size + size // 2)
    with pytest.raises(PayloadTooLarge, match="together") as info:
        await _check_zip(tmp_path, blobs, trust, make_package, zipped, policy)
    assert info.value.extra == {"max_bytes": 2 * size + size // 2}
    policy = CheckPolicy(max_pdf_bytes=size, max_pdf_total_bytes=3 * size)
    checked = await _check_zip(tmp_path, blobs, trust, make_package, zipped, policy)
    assert [r["attachment"] for r in checked.pdf_reports] == [
        "phu-luc.zip/pl0.pdf",
        "phu-luc.zip/pl1.pdf",
        "phu-luc.zip/pl2.pdf",
    ]


async def test_the_number_of_pdfs_per_package_is_capped(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    zipped = _zip([(f"pl{i}.pdf", signed_pdf) for i in range(3)])
    with pytest.raises(PayloadTooLarge, match="more than 2 PDFs") as info:
        await _check_zip(tmp_path, blobs, trust, make_package, zipped, CheckPolicy(max_pdfs=2))
    assert info.value.extra == {"max_pdfs": 2}
    checked = await _check_zip(
        tmp_path, blobs, trust, make_package, zipped, CheckPolicy(max_pdfs=3)
    )
    assert len(checked.pdf_reports) == 3


async def test_each_pdf_is_checked_before_the_next_is_read(
    tmp_path: Path, blobs: BlobStore, trust: Any, make_package: Callable[..., bytes]
) -> None:
    # An unsigned PDF, then one over the cap: the first is refused before the second is read
    # (PDFs are not all read into memory first).
    zipped = _zip([("a.pdf", sample_pdf()), ("b.pdf", b"%PDF-1.7\n" + b"\0" * 5000)])
    with pytest.raises(SignatureInvalid, match=r"phu-luc\.zip/a\.pdf"):
        await _check_zip(
            tmp_path, blobs, trust, make_package, zipped, CheckPolicy(max_pdf_bytes=4000)
        )


def _cert(cn: str | None, org: str = "lienthong test PKI", uris: tuple[str, ...] = ()) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    name = x509.Name(attrs)
    now = datetime.now(UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if uris:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), False
        )
    return b.sign(key, hashes.SHA256())


PROVINCE = "000.00.00.H53"  # UBND tỉnh Tây Ninh; TAY_NINH_STC is its Finance Department


@pytest.mark.parametrize(
    ("cert", "agency"),
    [
        (_cert(f"agency-{TAY_NINH_STC}"), TAY_NINH_STC),  # the test PKI's agency certificates
        (_cert(TAY_NINH_STC), TAY_NINH_STC),
        (_cert(f"Sở Tài chính {TAY_NINH_STC}", f"UBND tỉnh Tây Ninh ({PROVINCE})"), TAY_NINH_STC),
        (_cert("Sở Tài chính", f"UBND tỉnh Tây Ninh ({PROVINCE})"), None),  # O is not read
        (_cert("Sở Tài chính", uris=(f"urn:x:{PROVINCE}",)), None),  # nor the SANs
        (_cert(f"{TAY_NINH_STC} {PROVINCE}"), None),  # two: which one?
        (_cert(f"agency-{PROVINCE}1"), None),  # not an agency id, nor is 000.00.00.H5
        (_cert(f"agency-1{PROVINCE}"), None),
        (_cert(None, PROVINCE), None),
    ],
)
def test_a_certificate_names_its_agency_in_its_cn_exactly(cert: Any, agency: str | None) -> None:
    assert certificate_agency(cert) == agency
    for candidate in (TAY_NINH_STC, PROVINCE):
        assert signer_is(cert, candidate) is (candidate == agency)


async def test_a_department_certificate_does_not_sign_for_its_province(
    tmp_path: Path,
    blobs: BlobStore,
    pki: TestPKI,
    trust: Any,
    key: Callable[[str], Any],
    make_package: Callable[..., bytes],
) -> None:
    # Issued by the trusted CA to the department; its subject also names the province.
    private = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue(f"So Tai chinh {TAY_NINH_STC} thuoc UBND {PROVINCE}", private.public_key())
    dept = FileKey(private, cert, key(TAY_NINH_STC).chain)
    data = sign_bytes(make_package(sender=PROVINCE, signed=False), dept)
    with pytest.raises(ForgedSender, match=r"not by 000\.00\.00\.H53"):
        await _check(tmp_path, blobs, trust, data, sender=PROVINCE)


@pytest.mark.parametrize(
    ("document_id", "why"),
    [
        # Numbered as another agency's document (Tây Ninh's Finance Department's number).
        (f"{TAY_NINH_STC},2020/10/30,2491/STC-BCTC", "must begin with the sender's OrganId"),
        (f"{TAY_NINH_STC}x,2020/10/30,2491/BTP", "must begin with the sender's OrganId"),
        ("2491/BTP", "must begin with the sender's OrganId"),
        (f"{TU_PHAP}", "is not three parts"),
        (f"{TU_PHAP},hello", "is not three parts"),
        (f"{TU_PHAP}, 2020/10/30,2491/STC-BCTC", "is not three parts"),
        (f"{TU_PHAP},2020/10/30,2491/STC-BCTC,x", "is not three parts"),
        (f"{TU_PHAP},2020/10/30,2491", "has no {CodeNumber}/{CodeNotation}"),
        (f"{TU_PHAP},30 Oct 2020,2491/STC-BCTC", "has no date"),
        (f"{TU_PHAP},2019/01/01,2491/STC-BCTC", "the header's PromulgationDate says 2020/10/30"),
        (f"{TU_PHAP},2020/10/30,999/XX", "the header's Code says 2491/STC-BCTC"),
    ],
)
async def test_a_document_id_must_say_what_the_header_says(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    key: Callable[[str], Any],
    signed_pdf: bytes,
    document_id: str,
    why: str,
) -> None:
    """Recipients file and answer a document by its DocumentId: one whose date or number is not
    the header's would be registered under another number."""
    header = dataclasses.replace(cong_van_header(TU_PHAP, (NGHE_AN,)), document_id=document_id)
    pdf = [NewAttachment("cv.pdf", signed_pdf)]
    data = sign_bytes(build_package(header, trace_for(header), pdf), key(TU_PHAP))
    with pytest.raises(InvalidEdxml, match=re.escape(why)) as info:
        await _check(tmp_path, blobs, trust, data, sender=TU_PHAP)
    assert info.value.extra == {"field": "MessageHeader/DocumentId"}


@pytest.mark.parametrize("day", ["2020/10/30", "30/10/2020"])  # the standard's, and the seen
async def test_a_document_id_of_the_sender_that_says_what_the_header_says_passes(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    key: Callable[[str], Any],
    signed_pdf: bytes,
    day: str,
) -> None:
    document_id = f"{TU_PHAP},{day},2491/STC-BCTC"
    header = dataclasses.replace(cong_van_header(TU_PHAP, (NGHE_AN,)), document_id=document_id)
    pdf = [NewAttachment("cv.pdf", signed_pdf)]
    data = sign_bytes(build_package(header, trace_for(header), pdf), key(TU_PHAP))
    checked = await _check(tmp_path, blobs, trust, data, sender=TU_PHAP)
    assert checked.package.header.document_id == document_id


async def test_a_package_addressed_to_its_sender_is_refused(
    tmp_path: Path, blobs: BlobStore, trust: Any, key: Callable[[str], Any], signed_pdf: bytes
) -> None:
    """Its delivery could never be marked delivered (a sender's own fetch is not a delivery)."""
    header = cong_van_header(TU_PHAP, (NGHE_AN, TU_PHAP))
    pdf = [NewAttachment("cv.pdf", signed_pdf)]
    data = sign_bytes(build_package(header, trace_for(header), pdf), key(TU_PHAP))
    with pytest.raises(InvalidEdxml, match="To names the sender") as info:
        await _check(tmp_path, blobs, trust, data, sender=TU_PHAP)
    assert info.value.extra == {"field": "MessageHeader/To"}


async def test_a_zip_listing_too_many_files_is_refused_before_it_is_read(
    tmp_path: Path, blobs: BlobStore, trust: Any, make_package: Callable[..., bytes]
) -> None:
    # zipfile reads the whole central directory into objects first: a zip of millions of empty
    # files would cost seconds and gigabytes before any member is counted.
    names = [f"bang-ke/{i:06d}.csv" for i in range(MAX_ZIP_DIRECTORY // 60 + 1)]
    zipped = _zip([(n, b"") for n in names])
    assert len(zipped) < 4 * MAX_ZIP_DIRECTORY
    with pytest.raises(PayloadTooLarge, match="zip directory") as info:
        await _check_zip(tmp_path, blobs, trust, make_package, zipped, CheckPolicy())
    assert info.value.extra == {"max_bytes": MAX_ZIP_DIRECTORY}
    # Fewer: taken (no PDF in it to check).
    small = _zip([(n, b"") for n in names[:1000]])
    checked = await _check_zip(tmp_path, blobs, trust, make_package, small, CheckPolicy())
    assert checked.pdf_reports == []


def test_the_zip_directory_size_is_the_one_zipfile_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Over ZIP_FILECOUNT_LIMIT files (65,535; lowered here), zip64 end records: the size zipfile
    # uses is the zip64 one, even when the classic record says otherwise.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 5)
    zipped = bytearray(_zip([(f"{i}.csv", b"") for i in range(10)]))
    assert b"PK\x06\x06" in zipped
    with zipfile.ZipFile(io.BytesIO(bytes(zipped))) as zf:
        directory = sum(46 + len(i.filename.encode()) + len(i.extra) for i in zf.infolist())
    assert _zip_directory_size(io.BytesIO(bytes(zipped))) == directory
    eocd = zipped.rindex(b"PK\x05\x06")
    zipped[eocd + 12 : eocd + 16] = (10).to_bytes(4, "little")  # a lying classic record
    assert _zip_directory_size(io.BytesIO(bytes(zipped))) == directory
    with zipfile.ZipFile(io.BytesIO(bytes(zipped))) as zf:
        assert len(zf.infolist()) == 10  # zipfile too reads the zip64 record
    assert _zip_directory_size(io.BytesIO(b"not a zip")) is None


def _retyped(data: bytes, name: str, content_type: str) -> bytes:
    """``data`` (unsigned) with its one Attachment element renamed and retyped, the manifest's
    Reference left as it was."""
    root = etree.fromstring(data)
    (attachment,) = root.iter(q("Attachment"))
    attachment.find(q("AttachmentName")).text = name
    attachment.find(q("ContentType")).text = content_type
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


async def test_an_attachment_must_say_what_its_manifest_reference_says(
    tmp_path: Path, blobs: BlobStore, trust: Any, key: Callable[[str], Any]
) -> None:
    """Recipients file an attachment as the manifest says; the hub judged it by the Attachment
    element. An unsigned PDF that the Reference calls cong-van.pdf (application/pdf) and the
    Attachment cong-van.bin (application/octet-stream) was accepted unchecked."""
    header = cong_van_header()
    unsigned = build_package(header, trace_for(header), [NewAttachment("cong-van.pdf", b"x")])
    for name, content_type in (
        ("cong-van.bin", "application/octet-stream"),
        ("cong-van.bin", "application/pdf"),
        ("cong-van.pdf", "application/octet-stream"),
    ):
        data = sign_bytes(_retyped(unsigned, name, content_type), key(TAY_NINH_STC))
        with pytest.raises(
            InvalidEdxml, match=r"its manifest Reference says 'cong-van\.pdf'"
        ) as info:
            await _check(tmp_path, blobs, trust, data)
        assert info.value.extra["field"] == "Attachment"
    # Parameters and case are no difference in a media type.
    same = _retyped(unsigned, "cong-van.pdf", "Application/PDF; name=cong-van.pdf")
    with pytest.raises(SignatureInvalid, match=r"cong-van\.pdf"):  # checked as a PDF: b"x" is none
        await _check(tmp_path, blobs, trust, sign_bytes(same, key(TAY_NINH_STC)))


async def test_a_pdf_is_known_by_its_content_whatever_it_is_called(
    tmp_path: Path,
    blobs: BlobStore,
    trust: Any,
    make_package: Callable[..., bytes],
    signed_pdf: bytes,
) -> None:
    """A PDF reader opens a file with %PDF- in its first KiB as a PDF, whatever its name: an
    unsigned one called cong-van.bin (application/octet-stream, in the manifest too) passed. It
    opens one whose header was altered or pushed further too, by the cross-reference data its
    end points to (poppler: "May not be a PDF file (continuing anyway)"): such a phu-luc.bin
    passed unchecked."""
    octets = "application/octet-stream"
    unsigned = sample_pdf("Cong van khong ky")
    headless = unsigned.replace(b"%PDF-", b"%XYZ-", 1)
    assert b"%PDF-" not in headless
    contents = (
        unsigned,
        b"\r\n" * 400 + unsigned,
        b"\0" * 1024 + unsigned,
        headless,
        headless + b"x" * 3000,  # poppler finds its startxref that far from the end, and more
    )
    for content in contents:
        data = make_package(attachments=[NewAttachment("cong-van.bin", content, octets)])
        with pytest.raises(SignatureInvalid, match=r"cong-van\.bin"):
            await _check(tmp_path, blobs, trust, data)
    # Zip members alike (a member that cannot even be looked into is refused: see README).
    for member, content in (("scan.bin", unsigned), ("scan", unsigned), ("scan.dat", headless)):
        data = make_package(
            attachments=[NewAttachment("phu-luc.zip", _zip([(member, content)]), "application/zip")]
        )
        with pytest.raises(SignatureInvalid, match=rf"phu-luc\.zip/{member}"):
            await _check(tmp_path, blobs, trust, data)
    # A signed PDF so named is checked and accepted; what is no PDF is not looked at further,
    # nor a header past the first KiB with no PDF after it (no reader opens that). A zip is read
    # as a zip, even when a PDF stored in it (not deflated) puts %PDF- in its first KiB.
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cv.pdf", signed_pdf)
    assert looks_like_pdf(stored.getvalue()[:1028])
    data = make_package(
        attachments=[
            NewAttachment("cong-van.bin", signed_pdf, octets),
            NewAttachment("ghi-chu.txt", "Công văn số 2491".encode(), "text/plain"),
            NewAttachment("khac.bin", b"\0" * 1024 + b"%PDF-1.7 trailer xref", octets),
            NewAttachment("phu-luc.zip", _zip([("doc.txt", b"van ban")]), "application/zip"),
            NewAttachment("ban-goc.zip", stored.getvalue(), "application/zip"),
        ]
    )
    checked = await _check(tmp_path, blobs, trust, data)
    assert [r["attachment"] for r in checked.pdf_reports] == ["cong-van.bin", "ban-goc.zip/cv.pdf"]


@pytest.mark.parametrize(
    ("head", "pdf"),
    [
        (b"%PDF-1.7", True),
        (b"\0" * 1023 + b"%PDF-1.7", True),
        (b"\0" * 1024 + b"%PDF-1.7", False),
        (b"\0" * 1022 + b"%PDF", False),
        (b"%PDF", False),
        (b"", False),
    ],
)
def test_a_pdf_header_counts_in_the_first_kib(head: bytes, pdf: bool) -> None:
    assert looks_like_pdf(head) is pdf


@pytest.mark.parametrize(
    ("body", "pdf"),
    [
        (b"%XYZ-1.7\n1 0 obj <<>> endobj\nstartxref\n9\n%%EOF", True),
        (b"1 0 obj <</Type /Catalog>> endobj\ntrailer\n<< /Root 1 0 R >>", True),
        (b"x" * 100_000 + b"trailer" + b" " * 32 + b"<<" + b"x" * 100_000, True),
        (b"The trailer of the film", False),
        (b"trailer" + b" " * 33 + b"<<", False),
        (b"start xref, %%EOF", False),
        (b"", False),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 64 * 1024])
def test_a_pdf_is_known_by_its_cross_reference_data_wherever_it_is(
    body: bytes, pdf: bool, size: int
) -> None:
    """What readers open a PDF whose header is altered or gone by (poppler: startxref, or its
    repair's trailer dictionary), read piece by piece (a marker may straddle two)."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    assert pdf_body_in(pieces) is pdf
