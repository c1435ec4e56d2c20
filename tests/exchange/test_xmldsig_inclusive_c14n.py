"""The hub's envelope check accepts an agency's package signed in .NET SignedXml's default form
(``<Signature xmlns="…xmldsig#">`` in edXMLHeader, SignedInfo by inclusive C14N), as xmlsec1
does: it refused every one ("SignatureValue does not verify"), lxml's canonical form of
SignedInfo carrying a spurious ``xmlns=""`` (see signing.xml.c14n_apex)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.exchange.errors import SignatureInvalid
from gateway.exchange.stream import scan_file
from gateway.exchange.xmldsig import check_envelope, verify_envelope
from signing.testing import TestPKI
from tests.signing.xmlsec1 import ECDSA_SHA256, signature_template, xmlsec1

from .factories import SAMPLES, TAY_NINH_STC

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed"),
]

C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"


@pytest.mark.parametrize("c14n", [C14N_10, C14N_11])
async def test_a_default_namespace_envelope_signature_with_inclusive_c14n(
    tmp_path: Path, pki: TestPKI, trust: object, c14n: str
) -> None:
    unsigned = (SAMPLES / "cong-van-stc-tay-ninh.xml").read_bytes()  # a real Công văn
    template = tmp_path / "template.xml"
    template.write_bytes(
        unsigned.replace(
            b"</edXML:edXMLHeader>",
            signature_template(c14n, ECDSA_SHA256).encode() + b"</edXML:edXMLHeader>",
        )
    )
    agency = f"agency-{TAY_NINH_STC}"
    signed = tmp_path / "signed.xml"
    pem = f"{pki.key_path(agency)},{pki.cert_path(agency)},{pki.intermediate_pem}"
    code, out = xmlsec1("--sign", "--privkey-pem", pem, "--output", str(signed), str(template))
    assert code == 0, out
    code, out = xmlsec1("--verify", "--trusted-pem", str(pki.root_pem), str(signed))
    assert code == 0, out  # the independent tool's word: a valid signature

    assert check_envelope(scan_file(signed, None))[0].signer == agency
    assert (await verify_envelope(scan_file(signed, None), trust)).signer == agency

    # …and it still checks: the package, or SignedInfo, changed after signing is refused.
    data = signed.read_bytes()
    changed = tmp_path / "changed.xml"
    changed.write_bytes(data.replace(b"<CodeNumber>2491<", b"<CodeNumber>2492<"))
    assert changed.read_bytes() != data
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        check_envelope(scan_file(changed, None))
    changed.write_bytes(data.replace(b'<Reference URI="">', b'<Reference URI="" Id="r">'))
    with pytest.raises(SignatureInvalid, match="SignatureValue does not verify"):
        check_envelope(scan_file(changed, None))
