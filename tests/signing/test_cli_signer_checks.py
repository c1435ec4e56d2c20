"""`lienthong sign` refuses keys that may sign no document and already-signed XML; XML verify
failures name the level and signer; pyHanko's own log lines stay off stderr. Real keys from the
session's test PKI, the CLI in its own process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signing.testing import SAMPLE_XML, sample_pdf
from tests.signing.run_cli import lienthong


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    (tmp_path / "in.pdf").write_bytes(sample_pdf())
    return tmp_path


REFUSED = {
    "tsa": "this key may sign no document: extended key usage (timeStamping) does not allow "
    "signing documents: tsa",
    "ocsp": "this key may sign no document: extended key usage (OCSPSigning) does not allow "
    "signing documents: ocsp",
    "no-signing-usage": "this key may sign no document: key usage does not allow signing",
    "expired": "certificate expired: expired (valid until ",
    "weak-rsa1024": "this key may sign no document: a 1024-bit key is too weak to sign (RSA keys "
    "of at least 2048 bits): weak-rsa1024",
}


@pytest.mark.parametrize("subject", sorted(REFUSED))
@pytest.mark.parametrize(
    ("kind", "level"),
    [("xml", "XMLDSig"), ("xml", "B-B"), ("xml", "B-T"), ("pdf", "B-B"), ("pdf", "B-T")],
)
def test_sign_refuses_a_key_that_signs_no_document(pki, inputs, subject, kind, level):
    out = inputs / f"out.{kind}"
    extra = ["--tsa", "http://127.0.0.1:9/"] if level == "B-T" else []
    r = lienthong(
        "sign",
        kind,
        str(inputs / f"in.{kind}"),
        str(out),
        "--key",
        str(pki.p12_path(subject)),
        "--level",
        level,
        *extra,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"error: {REFUSED[subject]}"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


async def test_sign_b_lt_refuses_a_revoked_signer(pki, pki_server, tsa_url, inputs):
    # The CRL/OCSP server answers on this event loop: the CLI runs from a thread.
    r = await asyncio.to_thread(
        lienthong,
        "sign",
        "pdf",
        str(inputs / "in.pdf"),
        str(inputs / "out.pdf"),
        "--key",
        str(pki.p12_path("revoked")),
        "--level",
        "B-LT",
        "--tsa",
        tsa_url,
        "--trust",
        str(pki.root_pem),
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: the signer's certificate is refused: certificate revoked")
    assert len(r.stderr.strip().splitlines()) == 1


def test_sign_xml_refuses_a_signed_document(pki, inputs):
    once = inputs / "once.xml"
    gw = str(pki.p12_path("gateway"))
    assert lienthong("sign", "xml", str(inputs / "in.xml"), str(once), "--key", gw).returncode == 0
    r = lienthong("sign", "xml", str(once), str(inputs / "twice.xml"), "--key", gw)
    assert r.returncode == 2
    assert r.stderr == (
        f"error: {once} already holds a signature: co-signing XML is not supported\n"
    )


def test_sign_xml_refuses_a_document_with_a_repeated_id(pki, inputs):
    """The verifier refuses any id given twice (signature wrapping): before, `sign xml` wrote a
    signature over such a document that `verify xml` then always refused."""
    doc = inputs / "dupid.xml"
    doc.write_bytes(
        b'<BaoCao>\n<Bang ten="A"><Dong id="1">x</Dong></Bang>\n'
        b'<Bang ten="B"><Dong id="1">y</Dong></Bang></BaoCao>'
    )
    out = inputs / "dupid-s.xml"
    for level in ("XMLDSig", "B-B"):
        r = lienthong(
            "sign",
            "xml",
            str(doc),
            str(out),
            "--key",
            str(pki.p12_path("gateway")),
            "--level",
            level,
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr == (
            f"error: {doc} holds the id '1' twice (<Dong> on line 2 and <Dong> on line 3): a "
            "signature over it could not be verified (a repeated id is refused as signature "
            "wrapping)\n"
        )
        assert not out.exists()


def test_sign_pdf_cosigns_in_the_next_free_field(pki, inputs):
    once, twice = inputs / "once.pdf", inputs / "twice.pdf"
    r = lienthong(
        "sign", "pdf", str(inputs / "in.pdf"), str(once), "--key", str(pki.p12_path("gateway"))
    )
    assert r.returncode == 0, r.stderr
    r = lienthong("sign", "pdf", str(once), str(twice), "--key", str(pki.p12_path("register")))
    assert r.returncode == 0, r.stderr
    r = lienthong("verify", "pdf", str(twice), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID PAdES-B-B signature in field Signature1" in r.stdout
    assert "VALID PAdES-B-B signature in field Signature2" in r.stdout


async def test_xml_verify_failure_names_level_and_signer(pki, inputs):
    from signing.xml import sign_xml

    signed = await sign_xml(SAMPLE_XML, pki.key("expired"), level="B-B")
    path = inputs / "expired.xml"
    path.write_bytes(signed)
    r = lienthong("verify", "xml", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == "INVALID XAdES-B-B signature"
    assert lines[1] == "  signer:     expired"
    assert "reason:     certificate expired: expired" in r.stdout


async def test_pdf_verify_keeps_pyhanko_logs_off_stderr(pki, inputs):
    from signing.pdf import sign_pdf

    for subject in ("expired", "weak-rsa1024"):
        path = inputs / f"{subject}.pdf"
        path.write_bytes(await sign_pdf(sample_pdf(), pki.key(subject)))
        r = lienthong(
            "verify", "pdf", str(path), "--trust", str(pki.root_pem), "--revocation", "off"
        )
        assert r.returncode == 1, r.stdout  # both refused (a weak key too: test_weak_keys.py)
        assert r.stderr == "", r.stderr
