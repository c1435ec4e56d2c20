"""A key whose certificate names it RSA-PSS (id-RSASSA-PSS, RFC 4055): it may make PSS signatures
only, and lienthong signs with RSA PKCS#1 v1.5 or ECDSA. It was taken, and its signatures were
ones that independent verifiers refuse (`openssl cms -verify`: "illegal or unsupported padding
mode"; xmlsec1 cannot use the key; lienthong's own `verify pdf`: "malformed signature:
AssertionError"). It is refused when loaded, by `sign` and by the gateway's [signing] alike, in one
line that says what to use instead. Real keys and certificates, made by openssl and issued by
the session's test PKI.

A signature made so (by another tool, or by lienthong before) is INVALID to `verify xml|pdf`
and the hub, saying why: `verify xml` called it VALID (xmlsec1 refuses it), and `verify pdf`
"malformed signature: AssertionError" (`openssl cms -verify` refuses it)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from gateway.keys import configured_signing
from gateway.settings import SettingsError, load_settings
from signing.errors import KeyLoadError, SignatureInvalid
from signing.keys import load_key
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import SAMPLE_XML, TestPKI, sample_pdf
from signing.xml import sign_xml, verify_xml
from tests.signing.rsa_pss import UncheckedKey
from tests.signing.run_cli import lienthong
from tests.signing.xmlsec1 import xmlsec1

REFUSED = (
    "the certificate's key is RSA-PSS (id-RSASSA-PSS), restricted to PSS signatures: "
    "lienthong signs with RSA PKCS#1 v1.5 or ECDSA; use an RSA (rsaEncryption) or ECDSA key"
)


@pytest.mark.parametrize("name", ["pss.key.pem", "pss.p12"])
def test_an_rsa_pss_key_is_refused_when_loaded(pss: Path, name: str) -> None:
    with pytest.raises(KeyLoadError) as refused:
        load_key(str(pss / name))
    assert str(refused.value) == REFUSED


@pytest.mark.parametrize("kind", ["xml", "pdf"])
def test_sign_refuses_an_rsa_pss_key_in_one_line(pss: Path, tmp_path: Path, kind: str) -> None:
    from signing.testing import sample_pdf

    source = tmp_path / f"in.{kind}"
    source.write_bytes(SAMPLE_XML if kind == "xml" else sample_pdf())
    out = tmp_path / f"out.{kind}"
    r = lienthong("sign", kind, str(source), str(out), "--key", str(pss / "pss.key.pem"))
    assert (r.returncode, r.stderr) == (2, f"error: {REFUSED}\n")
    assert not out.exists()


def test_the_gateway_refuses_an_rsa_pss_key_at_start(pki, pss: Path, tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f'[signing]\nkey = "{pss / "pss.key.pem"}"\ntrust = ["{pki.root_pem}"]\n'
        "[sandbox]\nembedded = false\n",
        "utf-8",
    )
    with pytest.raises(SettingsError) as refused:
        configured_signing(load_settings(str(config)))
    assert str(refused.value) == f"[signing]: {REFUSED}"


async def _verify_cli(kind: str, path: Path, pki: TestPKI) -> subprocess.CompletedProcess[str]:
    args = ("verify", kind, str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    return await asyncio.to_thread(lienthong, *args)


async def _xmlsec1_verify(path: Path, pki: TestPKI) -> tuple[int, str]:
    args = ("--verify", "--trusted-pem", str(pki.root_pem), "--untrusted-pem",
            str(pki.intermediate_pem), "--id-attr:Id", "Signature", str(path))  # fmt: skip
    return await asyncio.to_thread(xmlsec1, *args)


PKCS1_REFUSED = (
    "signature algorithm {} (RSA PKCS#1 v1.5) not allowed: the certificate's key is RSA-PSS "
    "(id-RSASSA-PSS), restricted to PSS signatures"
)


async def test_verify_xml_refuses_a_pkcs1_signature_of_an_rsa_pss_key(
    pki: TestPKI, pss: Path, tmp_path: Path
) -> None:
    signed = tmp_path / "pss.xml"
    signed.write_bytes(await sign_xml(SAMPLE_XML, UncheckedKey(pss), level="B-B"))
    why = PKCS1_REFUSED.format("rsa-sha256")
    with pytest.raises(SignatureInvalid) as refused:
        await verify_xml(signed.read_bytes(), pki.trust(revocation="off"))
    assert refused.value.reason == why
    r = await _verify_cli("xml", signed, pki)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID XAdES-B-B signature\n  signer:     pss\n")
    assert f"  reason:     {why}" in r.stdout.splitlines()
    # The independent verifier refuses it too: it will not use an RSA-PSS key for rsa-sha256.
    code, out = await _xmlsec1_verify(signed, pki)
    assert code != 0 and "evp key type" in out, out


class _PssSigner(UncheckedKey):
    """The RSA-PSS key making what it may: RSASSA-PSS, SHA-256, MGF1-SHA-256, a 32-byte salt
    (RFC 6931's sha256-rsa-MGF1)."""

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return self.private_key.sign(data, pss, hashes.SHA256())  # type: ignore[call-arg,arg-type]


async def test_verify_xml_refuses_an_rsa_pss_signature_as_unsupported(
    pki: TestPKI, pss: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signing.xml

    mgf1 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
    monkeypatch.setitem(signing.xml.SIG_ALGS, "rsa", mgf1)
    signed = tmp_path / "pss.xml"
    signed.write_bytes(await sign_xml(SAMPLE_XML, _PssSigner(pss)))
    why = f"unsupported signature algorithm: {mgf1} (RSASSA-PSS)"
    with pytest.raises(SignatureInvalid) as refused:
        await verify_xml(signed.read_bytes(), pki.trust(revocation="off"))
    assert refused.value.reason == why
    r = await _verify_cli("xml", signed, pki)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"  reason:     {why}" in r.stdout.splitlines()
    # xmlsec1 (1.2) knows no RSA-PSS signature method either.
    code, out = await _xmlsec1_verify(signed, pki)
    assert code != 0, out


def _cms_of(pdf: bytes, d: Path) -> tuple[Path, Path]:
    """The CMS in a PDF's one signature and the bytes it signs, as files for ``openssl cms``."""
    found = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert found is not None
    a, b, c, e = map(int, found.groups())
    cms, content = d / "sig.cms", d / "signed.bin"
    cms.write_bytes(bytes.fromhex(pdf[a + b : c].strip(b"<>").decode()).rstrip(b"\0"))
    content.write_bytes(pdf[a : a + b] + pdf[c : c + e])
    return cms, content


async def test_verify_pdf_refuses_a_pkcs1_signature_of_an_rsa_pss_key_saying_why(
    pki: TestPKI, pss: Path, tmp_path: Path
) -> None:
    pdf = await sign_pdf(sample_pdf(), UncheckedKey(pss))
    why = PKCS1_REFUSED.format("sha256_rsa")
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(pdf, pki.trust(revocation="off"))
    assert refused.value.reason == why
    signed = tmp_path / "pss.pdf"
    signed.write_bytes(pdf)
    r = await _verify_cli("pdf", signed, pki)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID PAdES-B-B signature in field Signature1")
    assert f"  reason:     {why}" in r.stdout.splitlines()
    # openssl refuses it too (poppler's pdfsig, through NSS, does not check the key's kind).
    cms, content = _cms_of(pdf, tmp_path)
    args = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(cms),
            "-content", str(content), "-CAfile", str(pki.root_pem), "-certfile",
            str(pki.intermediate_pem), "-purpose", "any", "-out", "/dev/null"]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)
    assert done.returncode != 0 and "padding mode" in done.stderr, done.stderr


async def test_verify_pdf_says_when_a_signature_is_of_a_kind_the_key_cannot_make(
    pki: TestPKI,
) -> None:
    """The same check, for any key: an ECDSA key's signature its CMS calls RSA (the algorithm
    is outside what the signature covers) was "malformed signature: AssertionError" too."""
    from asn1crypto import cms

    pdf = await sign_pdf(sample_pdf(), pki.key("register"))
    found = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)", pdf)
    assert found is not None
    start, end = int(found[1]) + int(found[2]) + 1, int(found[3]) - 1
    hexed = pdf[start:end]
    info = cms.ContentInfo.load(bytes.fromhex(hexed.decode()).rstrip(b"\0"))
    info["content"]["signer_infos"][0]["signature_algorithm"] = {"algorithm": "sha256_rsa"}
    relabelled = info.dump(force=True).hex().encode().ljust(len(hexed), b"0")
    with pytest.raises(SignatureInvalid) as refused:
        await verify_pdf(pdf[:start] + relabelled + pdf[end:], pki.trust(revocation="off"))
    assert (
        refused.value.reason
        == "signature algorithm sha256_rsa does not fit the certificate's ec key"
    )
