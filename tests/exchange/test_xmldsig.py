"""The envelope signature: streaming verification agrees with signing.xml both ways, and refuses."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.exchange.builder import (
    SIGNATURE_PARENT,
    FileAttachment,
    NewAttachment,
    build_package,
    write_package,
)
from gateway.exchange.edxml import DS_NS
from gateway.exchange.errors import SignatureInvalid
from gateway.exchange.hub import DocumentHub
from gateway.exchange.stream import scan_file
from gateway.exchange.xmldsig import check_envelope, sign_bytes, sign_file, verify_envelope
from signing.testing import TestPKI
from signing.xml import sign_xml, verify_xml

from .factories import NGHE_AN, SAMPLES, TAY_NINH_STC, chunks, cong_van_header, trace_for


def _scan(tmp_path: Path, data: bytes) -> Any:
    p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.xml"
    p.write_bytes(data)
    return scan_file(p, None)


@pytest.mark.parametrize("agency", [NGHE_AN, TAY_NINH_STC])  # RSA-2048 and ECDSA P-256
async def test_ours_verifies_with_signing_xml_and_back(
    tmp_path: Path,
    key: Callable[[str], Any],
    trust: Any,
    make_package: Callable[..., bytes],
    agency: str,
) -> None:
    unsigned = make_package(sender=agency, signed=False)
    ours = sign_bytes(unsigned, key(agency))
    theirs = await sign_xml(unsigned, key(agency), parent=SIGNATURE_PARENT)
    for data in (ours, theirs):
        result = await verify_envelope(_scan(tmp_path, data), trust)
        assert result.signer == f"agency-{agency}"
        assert result.chain[-1] == "lienthong Test Root CA"
        assert result.weaknesses == []
        assert (await verify_xml(data, trust)).report.valid


async def test_sample_shaped_like_service_signed_in_constant_memory(
    tmp_path: Path, key: Callable[[str], Any], trust: Any
) -> None:
    # CRLF line ends, default namespace mixed with the edXML prefix, zipped attachment.
    signed = tmp_path / "signed.xml"
    sign_file(SAMPLES / "cong-van-stc-tay-ninh.xml", signed, key(TAY_NINH_STC))
    result = await verify_envelope(scan_file(signed, None), trust)
    assert result.signer == f"agency-{TAY_NINH_STC}"
    assert (await verify_xml(signed.read_bytes(), trust)).report.valid  # an independent check
    # And signing.xml's signature over the same bytes verifies in the streaming path.
    theirs = await sign_xml(
        (SAMPLES / "cong-van-stc-tay-ninh.xml").read_bytes(),
        key(TAY_NINH_STC),
        parent=SIGNATURE_PARENT,
    )
    assert (
        await verify_envelope(_scan(tmp_path, theirs), trust)
    ).signer == f"agency-{TAY_NINH_STC}"


async def test_large_attachment_signed_and_verified_streaming(
    tmp_path: Path, key: Callable[[str], Any], trust: Any
) -> None:
    big = tmp_path / "scan.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    header = cong_van_header()
    unsigned = tmp_path / "u.xml"
    with unsigned.open("wb") as out:
        write_package(
            out,
            header,
            trace_for(header),
            [FileAttachment(big, "scan.bin", "application/octet-stream")],
        )
    signed = tmp_path / "s.xml"
    sign_file(unsigned, signed, key(TAY_NINH_STC))
    await verify_envelope(scan_file(signed, None), trust)
    # Flip one base64 character deep inside the attachment.
    data = bytearray(signed.read_bytes())
    at = len(data) // 2
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    tampered = tmp_path / "t.xml"
    tampered.write_bytes(bytes(data))
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        check_envelope(scan_file(tampered, None))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda d: d.replace(base64.encodebytes(b"%PDF-1.7 original")[:8], b"JVBERi0y"),
            "digest mismatch",
        ),
        (lambda d: d.replace("Tây Ninh".encode(), b"Tay Ninh", 1), "digest mismatch"),
        (
            lambda d: d.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA"),
            "SignatureValue|base64",
        ),
        (lambda d: d.replace(b'URI=""', b'URI="#x"'), 'URI=""'),
        (lambda d: d.replace(b"enveloped-signature", b"xpath-filter"), "enveloped"),
        (lambda d: d.replace(b"xmlenc#sha256", b"xmlenc#md5"), "digest method"),
    ],
)
def test_tampering_is_refused(
    tmp_path: Path, key: Callable[[str], Any], mutate: Callable[[bytes], bytes], match: str
) -> None:
    data = sign_bytes(
        build_package(
            cong_van_header(),
            trace_for(cong_van_header()),
            [NewAttachment("cv.pdf", b"%PDF-1.7 original")],
        ),
        key(TAY_NINH_STC),
    )
    changed = mutate(data)
    assert changed != data
    with pytest.raises(SignatureInvalid, match=match) as info:
        check_envelope(_scan(tmp_path, changed))
    assert info.value.slug == "signature-invalid"


def test_missing_and_duplicated_signatures(tmp_path: Path, key: Callable[[str], Any]) -> None:
    unsigned = build_package(cong_van_header(), trace_for(cong_van_header()), [])
    with pytest.raises(SignatureInvalid, match="not signed"):
        check_envelope(_scan(tmp_path, unsigned))
    signed = sign_bytes(unsigned, key(TAY_NINH_STC))
    root = etree.fromstring(signed)
    sig = root.find(f".//{{{DS_NS}}}Signature")
    # Signature wrapping: a second Signature, or the one Signature moved out of edXMLHeader.
    twice = etree.fromstring(signed)
    twice.find(f".//{{{DS_NS}}}Signature").getparent().append(etree.fromstring(etree.tostring(sig)))
    with pytest.raises(SignatureInvalid, match="expected one"):
        check_envelope(_scan(tmp_path, etree.tostring(twice)))
    moved = etree.fromstring(signed)
    s = moved.find(f".//{{{DS_NS}}}Signature")
    s.getparent().remove(s)
    moved[0].append(s)
    with pytest.raises(SignatureInvalid, match="edXMLHeader"):
        check_envelope(_scan(tmp_path, etree.tostring(moved)))


async def test_untrusted_signer(tmp_path: Path, other_pki: TestPKI, trust: Any) -> None:
    data = sign_bytes(
        build_package(cong_van_header(), trace_for(cong_van_header()), []),
        other_pki.key(f"agency-{TAY_NINH_STC}"),
    )
    check_envelope(_scan(tmp_path, data))  # the signature itself is fine...
    with pytest.raises(SignatureInvalid, match="untrusted signer: no chain"):
        await verify_envelope(_scan(tmp_path, data), trust)  # ...but not by a trusted CA


_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"


def _xmlsec1(*args: str) -> tuple[int, str]:
    done = subprocess.run(["xmlsec1", *args], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed")
def test_uri_empty_reference_excludes_comments_with_xmlsec1_both_ways(
    tmp_path: Path, pki: TestPKI, key: Callable[[str], Any], make_package: Callable[..., bytes]
) -> None:
    # XMLDSig §4.3.3.3: a Reference URI="" is the document minus its comments, whatever the
    # canonicalisation's #WithComments says. A package with a comment, signed so:
    unsigned = make_package(sender=NGHE_AN, signed=False)
    unsigned = unsigned.replace(b"<edXML:Subject>", b"<!-- ghi chu --><edXML:Subject>")
    root = etree.fromstring(unsigned)
    header = next(root.iter(SIGNATURE_PARENT))
    ds = f"{{{DS_NS}}}"
    sig = etree.SubElement(header, ds + "Signature", nsmap={"ds": DS_NS})
    si = etree.SubElement(sig, ds + "SignedInfo")
    c14n = "http://www.w3.org/2001/10/xml-exc-c14n#"
    etree.SubElement(si, ds + "CanonicalizationMethod", Algorithm=c14n)
    rsa = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    etree.SubElement(si, ds + "SignatureMethod", Algorithm=rsa)
    ref = etree.SubElement(si, ds + "Reference", URI="")
    tr = etree.SubElement(ref, ds + "Transforms")
    enveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
    etree.SubElement(tr, ds + "Transform", Algorithm=enveloped)
    etree.SubElement(tr, ds + "Transform", Algorithm=_WITH_COMMENTS)
    sha256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    etree.SubElement(ref, ds + "DigestMethod", Algorithm=sha256)
    etree.SubElement(ref, ds + "DigestValue")
    etree.SubElement(sig, ds + "SignatureValue")
    x5 = etree.SubElement(etree.SubElement(sig, ds + "KeyInfo"), ds + "X509Data")
    etree.SubElement(x5, ds + "X509Certificate")
    etree.SubElement(x5, ds + "X509Certificate")
    template = tmp_path / "template.xml"
    template.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    agency = f"agency-{NGHE_AN}"  # RSA-2048
    verify = ["--verify", "--trusted-pem", str(pki.root_pem), "--untrusted-pem"]
    verify += [str(pki.intermediate_pem), "--enabled-reference-uris", "empty"]

    # 1. xmlsec1 signs it: the hub accepts, xmlsec1 verifies it.
    theirs = tmp_path / "theirs.xml"
    pem = f"{pki.key_path(agency)},{pki.cert_path(agency)},{pki.intermediate_pem}"
    code, out = _xmlsec1("--sign", "--privkey-pem", pem, "--output", str(theirs), str(template))
    assert code == 0, out
    assert b"<!-- ghi chu -->" in theirs.read_bytes()
    assert check_envelope(scan_file(theirs, None))[0].signer == agency
    assert _xmlsec1(*verify, str(theirs))[0] == 0

    # 2. The same signature with the digest taken over the comment too: both refuse it.
    kept = copy.deepcopy(root)
    kept_sig = next(kept.iter(ds + "Signature"))
    kept_sig.getparent().remove(kept_sig)
    digest = hashlib.sha256(
        etree.tostring(kept, method="c14n", exclusive=True, with_comments=True)
    ).digest()
    sig.find(f"{ds}SignedInfo/{ds}Reference/{ds}DigestValue").text = base64.b64encode(
        digest
    ).decode()
    signed_info = etree.tostring(si, method="c14n", exclusive=True)
    sig.find(f"{ds}SignatureValue").text = base64.b64encode(key(NGHE_AN).sign(signed_info)).decode()
    for el, cert in zip(x5, (key(NGHE_AN).certificate, *key(NGHE_AN).chain), strict=True):
        el.text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    ours = tmp_path / "with-comment-digest.xml"
    ours.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        check_envelope(scan_file(ours, None))
    assert _xmlsec1(*verify, str(ours))[0] != 0


def _key_info(data: bytes, pki: TestPKI, agency: str, order: tuple[str, ...]) -> bytes:
    """``data`` with KeyInfo's X509Certificate elements replaced by ``order`` ("signer",
    "intermediate", "root"). KeyInfo is not covered by the digest: the signature holds."""
    pems = {
        "signer": pki.cert_path(f"agency-{agency}"),
        "intermediate": pki.intermediate_pem,
        "root": pki.root_pem,
    }
    root = etree.fromstring(data)
    x5 = next(root.iter(f"{{{DS_NS}}}X509Data"))
    for el in list(x5):
        x5.remove(el)
    for name in order:
        cert = x509.load_pem_x509_certificate(pems[name].read_bytes())
        etree.SubElement(x5, f"{{{DS_NS}}}X509Certificate").text = base64.b64encode(
            cert.public_bytes(Encoding.DER)
        ).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize("agency", [NGHE_AN, TAY_NINH_STC])  # RSA-2048 and ECDSA P-256
@pytest.mark.parametrize(
    "order",
    [
        ("root", "intermediate", "signer"),
        ("intermediate", "root", "signer"),
        ("root", "signer", "intermediate"),
        ("signer", "intermediate", "root"),
        ("intermediate", "signer"),
    ],
)
async def test_the_signer_is_the_certificate_that_issues_none_of_the_others(
    tmp_path: Path,
    pki: TestPKI,
    trust: Any,
    make_package: Callable[..., bytes],
    agency: str,
    order: tuple[str, ...],
) -> None:
    """XMLDSig sets no order in X509Data. A self-signed root listed first was taken for the
    signer: the valid package was refused ("the signature method does not match the
    certificate's key", or a SignatureValue that does not verify)."""
    data = _key_info(make_package(sender=agency), pki, agency, order)
    result = await verify_envelope(_scan(tmp_path, data), trust)
    assert result.signer == f"agency-{agency}"
    assert result.chain[-1] == "lienthong Test Root CA"


async def test_a_self_signed_certificate_is_the_signer_only_when_alone(
    tmp_path: Path, pki: TestPKI, make_package: Callable[..., bytes]
) -> None:
    data = _key_info(make_package(sender=NGHE_AN), pki, NGHE_AN, ("root",))
    with pytest.raises(SignatureInvalid, match="does not verify with the signer's key"):
        check_envelope(_scan(tmp_path, data))


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed")
async def test_a_root_listed_first_in_key_info_is_accepted_by_the_hub_and_xmlsec1(
    tmp_path: Path, pki: TestPKI, hub: DocumentHub, make_package: Callable[..., bytes]
) -> None:
    data = _key_info(make_package(), pki, TAY_NINH_STC, ("root", "intermediate", "signer"))
    accepted = await hub.receive(chunks(data), sender=TAY_NINH_STC, subsystem="s")
    assert not accepted.duplicate
    signed = tmp_path / "root-first.xml"
    signed.write_bytes(data)
    code, out = _xmlsec1(
        "--verify",
        "--trusted-pem",
        str(pki.root_pem),
        "--enabled-reference-uris",
        "empty",
        str(signed),
    )
    assert code == 0, out


async def test_a_pkcs1_envelope_signature_of_an_rsa_pss_key_is_refused(
    tmp_path: Path, pss: Path, make_package: Callable[..., bytes]
) -> None:
    """An RSA-PSS key (RFC 4055) may make PSS signatures only: its rsa-sha256 signature was
    checked as any RSA key's, and the envelope accepted (xmlsec1 will not use the key)."""
    from tests.signing.rsa_pss import UncheckedKey

    data = sign_bytes(make_package(signed=False), UncheckedKey(pss))
    with pytest.raises(SignatureInvalid) as refused:
        check_envelope(_scan(tmp_path, data))
    assert str(refused.value) == (
        "signature algorithm rsa-sha256 (RSA PKCS#1 v1.5) not allowed: the certificate's key is "
        "RSA-PSS (id-RSASSA-PSS), restricted to PSS signatures"
    )
