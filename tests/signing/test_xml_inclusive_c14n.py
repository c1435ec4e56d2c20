"""XMLDSig in .NET SignedXml's default form — ``<Signature xmlns="…xmldsig#">`` in the default
namespace, SignedInfo canonicalised by inclusive C14N — verifies, as xmlsec1 verifies it.

lxml 6.1.3 (libxml2 2.14.6) canonicalises an inner element inclusively with a spurious
``xmlns=""`` on each grandchild in a default namespace: the bytes of such a SignedInfo came out
other than those signed, and `verify xml` refused every such signature ("signature value does not
verify"). The signatures here are made by xmlsec1, the independent tool, and checked by it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from signing.errors import SignatureInvalid
from signing.testing import TestPKI
from signing.xml import c14n_apex, verify_xml
from tests.signing.xmlsec1 import signature_template, xmlsec1

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed"),
]

C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
# Where the signature sits: the plain case, and ancestors whose xml:* attributes inclusive C14N
# carries into SignedInfo (1.0: each nearest one; 1.1: xml:lang, xml:space, xml:base joined) with
# a namespace no element uses (inclusive C14N writes it on SignedInfo all the same).
CONTEXTS = {
    "plain": ("<hoSo>", "</hoSo>"),
    "xml-attributes": (
        '<hoSo xmlns:vb="urn:vanban" xml:lang="vi" xml:space="preserve" xml:id="h1"'
        ' xml:base="http://vanban.example/so/"><nhom xml:base="2026/" xml:lang="vi-VN">',
        "</nhom></hoSo>",
    ),
}


def _template(c14n: str, context: str, prefix: str) -> bytes:
    head, tail = CONTEXTS[context]
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{head}<giayKhaiSinh>Nguyễn Văn An</giayKhaiSinh>'
        f"{signature_template(c14n, prefix=prefix)}{tail}"
    ).encode()


def _signed_by_xmlsec1(
    pki: TestPKI, tmp_path: Path, c14n: str, context: str, prefix: str = ""
) -> bytes:
    template, signed = tmp_path / "template.xml", tmp_path / "signed.xml"
    template.write_bytes(_template(c14n, context, prefix))
    pem = f"{pki.key_path('gateway')},{pki.cert_path('gateway')},{pki.intermediate_pem}"
    code, out = xmlsec1("--sign", "--privkey-pem", pem, "--output", str(signed), str(template))
    assert code == 0, out
    code, out = xmlsec1("--verify", "--trusted-pem", str(pki.root_pem), str(signed))
    assert code == 0, out  # the independent tool's word: a valid signature
    return signed.read_bytes()


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("c14n", [C14N_10, f"{C14N_10}#WithComments", C14N_11])
async def test_a_default_namespace_signature_with_inclusive_c14n_verifies(
    pki: TestPKI, tmp_path: Path, c14n: str, context: str
) -> None:
    signed = _signed_by_xmlsec1(pki, tmp_path, c14n, context)
    result = await verify_xml(signed, pki.trust(revocation="off"))
    assert result.report.valid and result.report.signer == "gateway"
    assert result.signed.findtext(".//giayKhaiSinh") == "Nguyễn Văn An"
    # …and it still checks: the content, or SignedInfo, changed after signing is refused.
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        await verify_xml(signed.replace(b"An<", b"Anh<"), pki.trust())
    with pytest.raises(SignatureInvalid, match="signature value does not verify"):
        await verify_xml(
            signed.replace(b'<Reference URI="">', b'<Reference URI="" Id="r">'), pki.trust()
        )


@pytest.mark.parametrize("c14n", [C14N_10, C14N_11])
async def test_signed_info_inherits_xml_attributes_as_xmlsec1_has_it(
    pki: TestPKI, tmp_path: Path, c14n: str
) -> None:
    """With a ds: prefix too (no default namespace): SignedInfo's canonical form carries the
    xml:* attributes of the Signature's ancestors as each C14N version says, as xmlsec1 signs and
    verifies it; lxml's canonical form of an inner element carried none."""
    signed = _signed_by_xmlsec1(pki, tmp_path, c14n, "xml-attributes", prefix="ds")
    assert (await verify_xml(signed, pki.trust(revocation="off"))).report.valid


def test_c14n_apex_canonicalises_an_inner_element_as_c14n_says() -> None:
    root = etree.fromstring(
        b'<R xmlns="urn:x" xmlns:e="urn:e" xml:lang="vi"><A><B><C>t</C><D xmlns=""/></B></A></R>'
    )
    inner = root[0]
    # lxml's own, wrong: <C xmlns=""> takes C out of its namespace.
    assert b'<C xmlns="">' in etree.tostring(inner, method="c14n")
    assert etree.tostring(c14n_apex(inner), method="c14n") == (
        b'<A xmlns="urn:x" xmlns:e="urn:e" xml:lang="vi"><B><C>t</C><D xmlns=""></D></B></A>'
    )
