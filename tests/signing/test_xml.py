"""XML signatures: round trips at each level and every attack refused with a precise reason.

Tests import from submodules (``signing.xml``), never ``from signing import …``: with pytest's
rootdir on sys.path, ``tests/signing`` shadows the package's ``__init__`` (see test_api.py).
"""

from __future__ import annotations

import base64
import copy
import hashlib

import pytest
from lxml import etree

import signing.xml as signing_xml
from signing.errors import SignatureInvalid, SigningError, TimestampError, UntrustedSigner
from signing.testing import EDXML_HEADER, SAMPLE_XML, TestPKI
from signing.trust import TrustStore
from signing.xml import DS, XADES, sign_xml, verify_xml

NS = {"ds": DS, "xades": XADES, "edXML": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.create(tmp_path_factory.mktemp("other"), base_url="http://127.0.0.1:9")


@pytest.mark.parametrize("subject", ["gateway", "agency-000.00.11.H53"])
@pytest.mark.parametrize("level", ["XMLDSig", "B-B", "B-T"])
async def test_round_trip(pki, pki_server, tsa_url, subject, level):
    signed = await sign_xml(
        SAMPLE_XML, pki.key(subject), level=level, parent=EDXML_HEADER, tsa_url=tsa_url
    )
    tree = etree.fromstring(signed)
    # The Signature sits under edXMLHeader, not at the root (edXML rule).
    assert tree.find("edXML:edXMLHeader/ds:Signature", NS) is not None
    result = await verify_xml(signed, pki.trust(revocation="hard-fail"))
    r = result.report
    assert r.valid and r.signer == subject and r.revocation == "good"
    assert r.level == {"XMLDSig": "XMLDSig", "B-B": "XAdES-B-B", "B-T": "XAdES-B-T"}[level]
    assert r.chain == [subject, "lienthong Test Intermediate CA", "lienthong Test Root CA"]
    assert (r.signed_at is None) == (level != "B-T")  # proven by a timestamp only
    assert (r.claimed_signing_time is None) == (level == "XMLDSig")
    # Only the signed content is returned: the whole document, without the Signature.
    assert result.signed.tag == "{http://www.mic.gov.vn/TBT/QCVN_102_2016}edXMLEnvelope"
    assert result.signed.find(".//ds:Signature", NS) is None
    assert "Nguyễn Thị Lan" in etree.tostring(result.signed, encoding="unicode")


async def test_signature_at_root_by_default(pki, pki_server):
    signed = await sign_xml(SAMPLE_XML, pki.key("register"))
    assert etree.fromstring(signed).find("ds:Signature", NS) is not None
    assert (await verify_xml(signed, pki.trust())).report.valid


async def _signed(pki, subject="gateway", level="XMLDSig"):
    return await sign_xml(SAMPLE_XML, pki.key(subject), level=level, parent=EDXML_HEADER)


async def _refused(data, trust, cls=SignatureInvalid) -> str:
    with pytest.raises(cls) as info:
        await verify_xml(data, trust)
    return info.value.reason


async def test_flipped_byte_in_content(pki, pki_server):
    signed = await _signed(pki)
    tampered = signed.replace(b"Lan", b"Lam")
    assert tampered != signed
    assert (await _refused(tampered, pki.trust())).startswith("digest mismatch")


async def test_flipped_byte_in_attachment(pki, pki_server):
    signed = await _signed(pki)
    i = signed.index(b"<Attachment>") + len(b"<Attachment>") + 100
    tampered = signed[:i] + (b"B" if signed[i : i + 1] != b"B" else b"C") + signed[i + 1 :]
    assert (await _refused(tampered, pki.trust())).startswith("digest mismatch")


async def test_flipped_byte_in_signature_value(pki, pki_server):
    signed = await _signed(pki)
    root = etree.fromstring(signed)
    sv = root.find(".//ds:SignatureValue", NS)
    raw = bytearray(base64.b64decode(sv.text))
    raw[10] ^= 1
    sv.text = base64.b64encode(bytes(raw)).decode()
    reason = await _refused(etree.tostring(root), pki.trust())
    assert reason.startswith("signature value does not verify")


async def test_doctype_refused_before_parsing(pki):
    signed = await _signed(pki)
    bomb = signed.replace(b"?>\n", b'?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n', 1)
    assert await _refused(bomb, pki.trust()) == "DOCTYPE not allowed"
    assert await _refused(b"<!doctype x><x/>", pki.trust()) == "DOCTYPE not allowed"


async def test_size_cap(pki):
    with pytest.raises(SignatureInvalid, match="too large"):
        await verify_xml(SAMPLE_XML, pki.trust(), max_bytes=100)


async def test_node_cap(pki):
    """Memory grows with a document's nodes (~0.8 KB each while signxml checks it: 24 MB of
    <i>x</i> took 3.2 GB), so their number is capped, and counted before any tree is built.
    Before, only the bytes were capped."""
    too_many = b"<doc>" + b"<i/>" * 500_000 + b"</doc>"  # 2 MB, 500,001 nodes
    reason = await _refused(too_many, pki.trust())
    assert reason == (
        "document too large (more than 500000 elements, comments and processing instructions)"
    )
    comments = b"<doc>" + b"<!---->" * 10 + b"<?pi?>" * 10 + b"</doc>"  # 21 nodes
    with pytest.raises(SignatureInvalid, match="more than 20 elements, comments"):
        await verify_xml(comments, pki.trust(), max_nodes=20)


async def test_the_signer_refuses_what_the_verifier_would(pki, monkeypatch):
    """The signer's caps leave room for the signature it adds: what it signs, verify_xml reads."""
    monkeypatch.setattr(signing_xml, "MAX_NODES", 300)
    room = signing_xml.MAX_NODES - signing_xml._SIGNATURE_ROOM[0]
    fits = b"<doc>" + b"<i/>" * (room - 1) + b"</doc>"
    signed = await sign_xml(fits, pki.key("gateway"), level="B-B")
    report = (await verify_xml(signed, pki.trust(revocation="off"), max_nodes=300)).report
    assert report.valid
    too_many = b"<doc>" + b"<i/>" * room + b"</doc>"
    with pytest.raises(SigningError, match="document too large to sign: signed, it would be"):
        await sign_xml(too_many, pki.key("gateway"))


async def test_unsigned_document(pki):
    assert await _refused(SAMPLE_XML, pki.trust()) == "no signature found"


async def test_wrapping_moved_body(pki, pki_server):
    """Move the signed body into a ds:Object and put a forged body in its place."""
    root = etree.fromstring(await _signed(pki))
    body = root.find("edXML:edXMLBody", NS)
    sig = root.find(".//ds:Signature", NS)
    obj = etree.SubElement(sig, f"{{{DS}}}Object")
    obj.append(copy.deepcopy(body))
    body.find("Content").text = "Forged"
    reason = await _refused(etree.tostring(root), pki.trust())
    assert reason.startswith("digest mismatch")


async def test_wrapping_second_signature(pki, pki_server):
    root = etree.fromstring(await _signed(pki))
    sig = root.find(".//ds:Signature", NS)
    root.find("edXML:edXMLBody", NS).append(copy.deepcopy(sig))
    reason = await _refused(etree.tostring(root), pki.trust())
    assert reason == "signature wrapping: 2 Signature elements"


async def test_wrapping_duplicate_ids(pki, pki_server):
    root = etree.fromstring(await _signed(pki, level="B-B"))
    sp = root.find(".//xades:SignedProperties", NS)
    forged = copy.deepcopy(sp)
    forged.find(".//xades:SigningTime", NS).text = "2001-01-01T00:00:00Z"
    root.find("edXML:edXMLBody", NS).append(forged)
    reason = await _refused(etree.tostring(root), pki.trust())
    assert reason.startswith("signature wrapping: duplicate Id")


async def test_reference_to_other_element_refused(pki, pki_server):
    root = etree.fromstring(await _signed(pki))
    ref = root.find(".//ds:Reference", NS)
    ref.set("URI", "#body")
    root.find("edXML:edXMLBody", NS).set("Id", "body")
    reason = await _refused(etree.tostring(root), pki.trust())
    assert reason.startswith("signature wrapping")


async def test_sha1_refused_on_request_and_no_downgrade(pki, pki_server):
    root = etree.fromstring(await _signed(pki))
    root.find(".//ds:SignatureMethod", NS).set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    )
    downgraded = etree.tostring(root)
    with pytest.raises(SignatureInvalid, match="weak algorithm: SHA-1 not accepted"):
        await verify_xml(downgraded, pki.trust(), allow_sha1=False)
    # By default SHA-1 is verified (older documents), and a SHA-256 signature relabelled
    # SHA-1 does not verify: its SignedInfo is not what was signed.
    reason = await _refused(downgraded, pki.trust())
    assert reason.startswith("signature value does not verify")


def _with_sha1_signing_certificate(signed: bytes, key, cert) -> bytes:  # type: ignore[no-untyped-def]
    """``signed`` (XAdES-B-B) with XAdES 1.3.2's SigningCertificate naming ``cert`` by its SHA-1
    digest, as older documents carry it, and signed again by ``key``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    root = etree.fromstring(signed)
    v2 = root.find(".//xades:SigningCertificateV2", NS)
    v2.tag = f"{{{XADES}}}SigningCertificate"
    v2.find(".//ds:DigestMethod", NS).set("Algorithm", signing_xml.SHA1)
    der = cert.public_bytes(serialization.Encoding.DER)
    v2.find(".//ds:DigestValue", NS).text = base64.b64encode(hashlib.sha1(der).digest()).decode()
    sp = root.find(".//xades:SignedProperties", NS)
    root.find(".//ds:Reference[@Type]/ds:DigestValue", NS).text = base64.b64encode(
        hashlib.sha256(signing_xml._c14n(sp)).digest()
    ).decode()
    signed_info = signing_xml._c14n(root.find(".//ds:SignedInfo", NS))
    signature = key.private_key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
    root.find(".//ds:SignatureValue", NS).text = base64.b64encode(signature).decode()
    return etree.tostring(root)


async def test_an_older_xades_with_a_sha1_certificate_digest(pki, pki_server):
    """Verified, the SHA-1 reported. Before, any SHA-1 was refused, and only a SHA-256
    SigningCertificateV2 was read."""
    key = pki.key("gateway")
    signed = await sign_xml(SAMPLE_XML, key, level="B-B")
    report = (
        await verify_xml(_with_sha1_signing_certificate(signed, key, key.certificate), pki.trust())
    ).report
    assert report.valid and report.level == "XAdES-B-B", report.reason
    assert report.weaknesses == ["SHA-1 digest"]
    # …and the digest is checked: another certificate's is refused.
    other = _with_sha1_signing_certificate(signed, key, pki.certificate("register"))
    assert await _refused(other, pki.trust()) == (
        "XAdES SigningCertificate does not match the signer"
    )


async def test_wrong_trust_anchor(pki, other_pki, pki_server):
    reason = await _refused(await _signed(pki), other_pki.trust(), UntrustedSigner)
    assert reason == "no chain to a configured trust anchor: gateway"


async def test_several_anchors(pki, other_pki, pki_server):
    trust = TrustStore.from_pem_files([other_pki.root_pem, pki.root_pem])
    assert (await verify_xml(await _signed(pki), trust)).report.valid


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("expired", "certificate expired: expired"),
        ("revoked-crl", "certificate revoked (CRL): revoked-crl"),
        ("revoked-ocsp", "certificate revoked (OCSP): revoked-ocsp"),
        (
            "no-signing-usage",
            "key usage does not allow signing (digitalSignature/nonRepudiation): no-signing-usage",
        ),
        # The TSA's and the OCSP responder's keys have digitalSignature, under the same anchor:
        # their extended key usage dedicates them to timestamps and OCSP answers.
        ("tsa", "extended key usage (timeStamping) does not allow signing documents: tsa"),
        ("ocsp", "extended key usage (OCSPSigning) does not allow signing documents: ocsp"),
    ],
)
async def test_untrusted_signers(pki, pki_server, subject, reason):
    signed = await _signed(pki, subject)
    assert await _refused(signed, pki.trust(), UntrustedSigner) == reason


async def test_revocation_unreachable_soft_and_hard(pki):
    signed = await _signed(pki)  # no pki_server: CRL and OCSP cannot be had
    report = (await verify_xml(signed, pki.trust(revocation="soft-fail"))).report
    assert report.valid and report.revocation == "unknown (soft-fail)"
    reason = await _refused(signed, pki.trust(revocation="hard-fail"), UntrustedSigner)
    assert reason == "revocation status unknown: gateway"
    report = (await verify_xml(signed, pki.trust(revocation="off"))).report
    assert report.revocation == "not checked"


async def test_weak_rsa_refused(pki, pki_server):
    # Listed as a weakness of a VALID signature before: the norm has no leniency for it (see
    # test_weak_keys.py).
    reason = await _refused(await _signed(pki, "weak-rsa1024"), pki.trust(), UntrustedSigner)
    assert reason == (
        "a 1024-bit key is too weak to sign (RSA keys of at least 2048 bits): weak-rsa1024"
    )


async def test_xades_timestamp_tampered(pki, pki_server, tsa_url):
    signed = await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=tsa_url)
    other = await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=tsa_url)
    root, root2 = etree.fromstring(signed), etree.fromstring(other)
    path = ".//xades:EncapsulatedTimeStamp"
    root.find(path, NS).text = root2.find(path, NS).text  # a token over another signature
    with pytest.raises(TimestampError, match="imprint does not match"):
        await verify_xml(etree.tostring(root), pki.trust())


async def test_sign_errors(pki):
    with pytest.raises(SigningError, match="no element"):
        await sign_xml(SAMPLE_XML, pki.key("gateway"), parent="{urn:x}missing")
    with pytest.raises(SigningError, match="TSA"):
        await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T")
    with pytest.raises(SignatureInvalid, match="not well-formed"):
        await sign_xml(b"<a>", pki.key("gateway"))
    for broken in (b"\xff\xfe\x00", b"\xfe\xff\xd8\x00"):  # a UTF-16 mark, then not UTF-16
        with pytest.raises(SignatureInvalid, match="not well-formed"):  # not a UnicodeDecodeError
            await sign_xml(broken, pki.key("gateway"))
        with pytest.raises(SignatureInvalid, match="not well-formed"):
            await verify_xml(broken, pki.trust())
