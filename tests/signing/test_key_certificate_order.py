"""A key's certificate bundle (``--cert``, ``[signing] cert``) in any order: the key's own
certificate is the one that issued none of the others. A bundle listing the intermediate first
was refused as "the certificate does not match the private key"."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from signing.keys import load_key
from signing.testing import SAMPLE_XML, TestPKI
from signing.xml import verify_xml_sync
from tests.signing.run_cli import lienthong


def _bundle(path: Path, *pems: Path) -> str:
    path.write_bytes(b"".join(p.read_bytes() for p in pems))
    return str(path)


def test_a_bundle_in_any_order(pki: TestPKI, tmp_path: Path) -> None:
    leaf, inter, root = tmp_path / "register.pem", pki.intermediate_pem, pki.root_pem
    leaf.write_bytes(pki.certificate("register").public_bytes(serialization.Encoding.PEM))
    for order in ((inter, leaf), (root, inter, leaf), (inter, root, leaf), (leaf, root, inter),
                  (inter, pki.cert_path("register"))):  # fmt: skip
        key = load_key(str(pki.key_path("register")), cert=_bundle(tmp_path / "b.pem", *order))
        assert key.certificate == pki.certificate("register")
        assert [c.subject for c in key.chain] == [key.certificate.issuer]  # the root left out


def test_sign_with_the_intermediate_first(pki: TestPKI, tmp_path: Path) -> None:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    bundle = _bundle(tmp_path / "chain.pem", pki.intermediate_pem, pki.cert_path("gateway"))
    done = lienthong("sign", "xml", str(tmp_path / "in.xml"), str(tmp_path / "out.xml"),
                     "--key", str(pki.key_path("gateway")), "--cert", bundle)  # fmt: skip
    assert done.returncode == 0, done.stderr
    signed = (tmp_path / "out.xml").read_bytes()
    assert verify_xml_sync(signed, pki.trust(revocation="off")).report.signer == "gateway"
