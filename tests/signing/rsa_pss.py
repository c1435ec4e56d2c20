"""An RSA-PSS key (id-RSASSA-PSS, RFC 4055: PSS signatures only) and its certificate, made by
openssl (cryptography makes no such key) and issued by the test PKI's intermediate CA; and a
signer that uses it as lienthong did before it refused such keys (PKCS#1 v1.5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from signing.keys import FileKey
from signing.testing import TestPKI


def make_pss(pki: TestPKI, d: Path) -> Path:
    """``pss.key.pem``, ``pss.cert.pem`` (with the intermediate) and ``pss.p12`` in ``d``, an
    RSA-PSS key with signing key usage; ``d``."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "pss.key.pem")  # fmt: skip
    openssl("req", "-new", "-key", "pss.key.pem", "-subj", "/C=VN/O=lienthong test/CN=pss",
            "-out", "pss.csr")  # fmt: skip
    (d / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n"
    )
    openssl("x509", "-req", "-in", "pss.csr", "-CA", str(pki.intermediate_pem),
            "-CAkey", str(pki.directory / "intermediate.key.pem"), "-CAcreateserial",
            "-days", "30", "-sha256", "-extfile", "ext.cnf", "-out", "pss.leaf.pem")  # fmt: skip
    (d / "pss.cert.pem").write_bytes(
        (d / "pss.leaf.pem").read_bytes() + pki.intermediate_pem.read_bytes()
    )
    openssl("pkcs12", "-export", "-passout", "pass:", "-inkey", "pss.key.pem",
            "-in", "pss.cert.pem", "-out", "pss.p12")  # fmt: skip
    return d


class UncheckedKey(FileKey):
    """The RSA-PSS key as a signer that does not know the restriction signs with it: PKCS#1
    v1.5 (lienthong did, before it refused such keys when they are loaded)."""

    def __init__(self, d: Path) -> None:
        key = serialization.load_pem_private_key((d / "pss.key.pem").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        leaf, *chain = x509.load_pem_x509_certificates((d / "pss.cert.pem").read_bytes())
        self.private_key, self.certificate, self.chain = key, leaf, tuple(chain)
