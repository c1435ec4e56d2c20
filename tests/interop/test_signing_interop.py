"""Independent tools accept what signing/ writes, and signing/ accepts what they write.

xmlsec1 (XMLDSig/XAdES), poppler's pdfsig and pyHanko's validator (PAdES), openssl ts (RFC 3161).
Tools run as asyncio subprocesses so the CRL/OCSP server on this event loop keeps answering them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from signing.errors import SignatureInvalid, UntrustedSigner
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import EDXML_HEADER, SAMPLE_XML, sample_pdf
from signing.timestamps import request_timestamp
from signing.trust import TrustStore
from signing.xml import DS, XADES, sign_xml, verify_xml

pytestmark = pytest.mark.interop


async def run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


# ---- XML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["gateway", "agency-000.00.11.H53"])  # RSA, ECDSA
@pytest.mark.parametrize("level", ["XMLDSig", "B-B", "B-T"])
async def test_xmlsec1_verifies_ours(pki, pki_server, tsa_url, tmp_path, subject, level):
    signed = await sign_xml(
        SAMPLE_XML, pki.key(subject), level=level, parent=EDXML_HEADER, tsa_url=tsa_url
    )
    f = tmp_path / "signed.xml"
    f.write_bytes(signed)
    args = [
        "xmlsec1",
        "--verify",
        "--trusted-pem",
        str(pki.root_pem),
        "--id-attr:Id",
        f"{XADES}:SignedProperties",
    ]
    code, out = await run(*args, str(f))
    assert code == 0, out
    # …and xmlsec1 does check: one changed letter and it refuses.
    f.write_bytes(signed.replace(b"Lan<", b"Lam<"))
    code, out = await run(*args, str(f))
    assert code != 0


TEMPLATE = f"""<?xml version="1.0" encoding="UTF-8"?>
<doc xmlns="urn:lienthong:test"><item>Giấy khai sinh</item>
<Signature xmlns="{DS}"><SignedInfo>
<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<Reference URI=""><Transforms>
<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>
<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference>
</SignedInfo><SignatureValue/><KeyInfo><X509Data><X509Certificate/><X509Certificate/></X509Data>
</KeyInfo></Signature></doc>
"""


async def test_we_verify_xmlsec1_output(pki, pki_server, tmp_path):
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pki.certificate("gateway").public_bytes(serialization.Encoding.PEM))
    tpl, out = tmp_path / "tpl.xml", tmp_path / "out.xml"
    tpl.write_text(TEMPLATE, encoding="utf-8")
    code, text = await run(
        "xmlsec1",
        "--sign",
        "--privkey-pem",
        f"{pki.key_path('gateway')},{leaf},{pki.intermediate_pem}",
        "--output",
        str(out),
        str(tpl),
    )
    assert code == 0, text
    result = await verify_xml(out.read_bytes(), pki.trust(revocation="hard-fail"))
    assert result.report.valid and result.report.signer == "gateway"
    assert result.signed.findtext("{urn:lienthong:test}item") == "Giấy khai sinh"
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        await verify_xml(out.read_bytes().replace(b"khai", b"khal"), pki.trust())


async def test_we_verify_an_xmlsec1_sha1_signature_as_weak(pki, pki_server, tmp_path):
    """RSA-SHA1 and a SHA-1 digest, as older documents carry them: verified and reported as
    weak, as the spec says and as PDF does (`verify xml` refused them before)."""
    from tests.signing.run_cli import lienthong

    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pki.certificate("gateway").public_bytes(serialization.Encoding.PEM))
    tpl, out = tmp_path / "tpl.xml", tmp_path / "sha1.xml"
    tpl.write_text(
        TEMPLATE.replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        ).replace(
            "http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1"
        ),
        encoding="utf-8",
    )
    code, text = await run(
        "xmlsec1",
        "--sign",
        "--privkey-pem",
        f"{pki.key_path('gateway')},{leaf},{pki.intermediate_pem}",
        "--output",
        str(out),
        str(tpl),
    )
    assert code == 0, text
    report = (await verify_xml(out.read_bytes(), pki.trust(revocation="hard-fail"))).report
    assert report.valid and report.weaknesses == ["RSA-SHA1 signature", "SHA-1 digest"]
    r = await asyncio.to_thread(lienthong, "verify", "xml", str(out), "--trust", str(pki.root_pem))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  weaknesses: RSA-SHA1 signature, SHA-1 digest" in r.stdout.splitlines()
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        await verify_xml(out.read_bytes().replace(b"khai", b"khal"), pki.trust())


async def test_openssl_verifies_xades_t_timestamp(pki, pki_server, tsa_url, tmp_path):
    signed = await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=tsa_url)
    root = etree.fromstring(signed)
    token = base64.b64decode(root.findtext(f".//{{{XADES}}}EncapsulatedTimeStamp"))
    sv = root.find(f".//{{{DS}}}SignatureValue")
    (tmp_path / "tok.der").write_bytes(token)
    (tmp_path / "data").write_bytes(etree.tostring(sv, method="c14n", exclusive=True))
    code, out = await run(
        "openssl",
        "ts",
        "-verify",
        "-token_in",
        "-in",
        str(tmp_path / "tok.der"),
        "-data",
        str(tmp_path / "data"),
        "-CAfile",
        str(pki.root_pem),
        "-untrusted",
        str(pki.intermediate_pem),
    )
    assert code == 0 and "Verification: OK" in out, out


async def test_openssl_verifies_tsa_tokens(pki, tsa_url, tmp_path):
    data = b"audit checkpoint 42"
    token = await request_timestamp(tsa_url, hashlib.sha256(data).digest())
    (tmp_path / "tok.der").write_bytes(token)
    for payload, ok in [(data, True), (data + b"!", False)]:
        (tmp_path / "data").write_bytes(payload)
        code, out = await run(
            "openssl",
            "ts",
            "-verify",
            "-token_in",
            "-in",
            str(tmp_path / "tok.der"),
            "-data",
            str(tmp_path / "data"),
            "-CAfile",
            str(pki.root_pem),
            "-untrusted",
            str(pki.intermediate_pem),
        )
        assert (code == 0 and "Verification: OK" in out) is ok, out


# ---- trust anchors ---------------------------------------------------------------------------


@pytest.mark.parametrize("anchors", ["root+intermediate", "intermediate"])
@pytest.mark.parametrize("subject", ["good-crl-only", "revoked-crl"])
async def test_openssl_agrees_on_crl_only_status_under_an_intermediate_anchor(
    pki, pki_server, tmp_path, anchors, subject
):
    # The same certificate, the same anchors, the same CRLs: OpenSSL's verdict and ours agree
    # (an intermediate listed as an anchor made ours "revocation status unknown").
    if subject == "good-crl-only":
        private = ec.generate_private_key(ec.SECP256R1())
        leaf = pki.issue(subject, private.public_key())  # a CRL distribution point, no OCSP
    else:
        leaf = pki.certificate(subject)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    crls = tmp_path / "crls.pem"
    crls.write_bytes(
        b"".join(
            x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
            for der in pki.crls().values()
        )
    )
    files = (
        [pki.intermediate_pem]
        if anchors == "intermediate"
        else [pki.root_pem, pki.intermediate_pem]
    )
    trusted = [arg for f in files for arg in ("-trusted", str(f))]
    code, out = await run(
        "openssl",
        "verify",
        "-partial_chain",
        *trusted,
        "-crl_check",
        "-CRLfile",
        str(crls),
        str(tmp_path / "leaf.pem"),
    )
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    trust = TrustStore(
        [x509.load_pem_x509_certificate(f.read_bytes()) for f in files], revocation="hard-fail"
    )
    if subject == "good-crl-only":
        assert code == 0 and ": OK" in out, out
        assert (await trust.validate(leaf, [inter])).revocation == "good"
    else:
        assert code != 0 and "certificate revoked" in out, out
        with pytest.raises(UntrustedSigner, match=r"^certificate revoked \(CRL\): revoked-crl$"):
            await trust.validate(leaf, [inter])


# ---- PDF -------------------------------------------------------------------------------------


async def nss_db(pki, tmp_path: Path, subject: str | None = None) -> str:
    db = tmp_path / "nss"
    db.mkdir()
    assert (await run("certutil", "-N", "-d", f"sql:{db}", "--empty-password"))[0] == 0
    code, out = await run(
        "certutil", "-A", "-d", f"sql:{db}", "-n", "Root", "-t", "CT,C,C", "-i", str(pki.root_pem)
    )
    assert code == 0, out
    if subject:
        code, out = await run(
            "pk12util", "-i", str(pki.p12_path(subject)), "-d", f"sql:{db}", "-W", ""
        )
        assert code == 0, out
    return f"sql:{db}"


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_pdfsig_verifies_ours(pki, pki_server, tsa_url, tmp_path, level):
    signed = await sign_pdf(
        sample_pdf(), pki.key("gateway"), level=level, tsa_url=tsa_url, trust=pki.trust()
    )
    f = tmp_path / "signed.pdf"
    f.write_bytes(signed)
    _code, out = await run("pdfsig", "-nssdir", await nss_db(pki, tmp_path), str(f))
    # pdfsig exits 0 even on a digest mismatch: read what it says.
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Certificate Validation: Certificate is Trusted." in out, out
    assert "ETSI.CAdES.detached" in out


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_pyhanko_validator_accepts_ours(pki, pki_server, tsa_url, level):
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.dss import DocumentSecurityStore
    from pyhanko_certvalidator import ValidationContext

    from signing.trust import to_asn1

    signed = await sign_pdf(
        sample_pdf(),
        pki.key("agency-000.00.00.G15"),
        level=level,
        tsa_url=tsa_url,
        trust=pki.trust(),
    )
    reader = PdfFileReader(io.BytesIO(signed))
    [sig] = reader.embedded_signatures
    roots = [to_asn1(pki.trust().anchors[0])]
    if level == "B-LT":
        # Offline and hard-fail: the revocation data must come from the document's DSS.
        vc = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {"trust_roots": roots, "allow_fetching": False, "revocation_mode": "hard-fail"}
        )
    else:
        vc = ValidationContext(trust_roots=roots, allow_fetching=True, revocation_mode="hard-fail")
    status = await async_validate_pdf_signature(sig, vc, ts_validation_context=vc)
    await vc.aclose()
    assert status.bottom_line, status.pretty_print_details()
    assert (status.timestamp_validity is not None) == (level != "B-B")


async def test_we_verify_pdfsig_output(pki, pki_server, tmp_path):
    db = await nss_db(pki, tmp_path, "agency-000.00.00.H41")
    src, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(sample_pdf())
    code, text = await run(
        "pdfsig",
        "-nssdir",
        db,
        "-add-signature",
        "-nick",
        "agency-000.00.00.H41",
        "-new-signature-field-name",
        "Sig1",
        "-digest",
        "SHA256",
        str(src),
        str(out),
    )
    assert code == 0 and out.exists(), text
    [report] = await verify_pdf(out.read_bytes(), pki.trust(revocation="hard-fail"))
    assert report.valid, report.reason
    assert report.signer == "agency-000.00.00.H41" and report.field_name == "Sig1"
    if report.level.startswith("legacy"):
        assert "legacy adbe.pkcs7.detached" in report.weaknesses


async def test_poppler_shows_what_an_empty_field_paints_over_a_signed_page(pki, tmp_path):
    """The shadow attack is real: poppler draws the widget of a signature field added (empty,
    with no key) after the agency signed, so the text it extracts says another amount; verify_pdf
    calls the signature INVALID, as pdfsig says the document is not wholly signed."""
    from tests.signing.pdf_edits import add_signature_field

    signed = await sign_pdf(sample_pdf("So tien: 1.000.000 dong"), pki.key("agency-000.00.11.H53"))
    painted = add_signature_field(
        signed, "Signature9", (60, 700, 560, 760), paint="So tien: 9.000.000.000 dong"
    )
    f = tmp_path / "painted.pdf"
    f.write_bytes(painted)
    code, text = await run("pdftotext", str(f), "-")
    assert code == 0 and "9.000.000.000" in text, text
    _code, out = await run("pdfsig", "-nssdir", await nss_db(pki, tmp_path), str(f))
    assert "Not total document signed" in out and "is not signed" in out, out
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(painted, pki.trust(revocation="off"))
    assert refused.value.reason == (
        "document modified after signing: signature field 'Signature9' added, not signed"
    )


async def test_a_pdfsig_signature_after_ours_leaves_ours_valid(pki, pki_server, tmp_path):
    """Poppler adds its signature field and signs it in one revision: a later signature, which
    the check of fields added after a signature lets through."""
    db = await nss_db(pki, tmp_path, "agency-000.00.00.H41")
    src, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(await sign_pdf(sample_pdf(), pki.key("gateway")))
    code, text = await run(
        "pdfsig",
        "-nssdir",
        db,
        "-add-signature",
        "-nick",
        "agency-000.00.00.H41",
        "-new-signature-field-name",
        "Sig2",
        "-digest",
        "SHA256",
        str(src),
        str(out),
    )
    assert code == 0 and out.exists(), text
    reports = await verify_pdf(out.read_bytes(), pki.trust(revocation="hard-fail"))
    assert [(r.field_name, r.valid) for r in reports] == [("Signature1", True), ("Sig2", True)], [
        r.reason for r in reports
    ]
