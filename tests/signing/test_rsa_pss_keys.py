"""A key whose certificate names it RSA-PSS (id-RSASSA-PSS, RFC 4055): it may make PSS signatures
only, and lienthong signs with RSA PKCS#1 v1.5 or ECDSA. It was taken, and its signatures were
ones that independent verifiers refuse (`openssl cms -verify`: "illegal or unsupported padding
mode"; xmlsec1 cannot use the key; lienthong's own `verify pdf`: "malformed signature:
AssertionError"). It is refused when loaded, by `sign` and by the gateway's [signing] alike, in one
line that says what to use instead. Real keys and certificates, made by openssl and issued by
the session's test PKI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.keys import configured_signing
from gateway.settings import SettingsError, load_settings
from signing.errors import KeyLoadError
from signing.keys import load_key
from signing.testing import SAMPLE_XML
from tests.signing.run_cli import lienthong

REFUSED = (
    "the certificate's key is RSA-PSS (id-RSASSA-PSS), restricted to PSS signatures: "
    "lienthong signs with RSA PKCS#1 v1.5 or ECDSA; use an RSA (rsaEncryption) or ECDSA key"
)


@pytest.fixture(scope="module")
def pss(pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pss.key.pem`` and ``pss.cert.pem`` (with the intermediate), an RSA-PSS key issued by
    the test PKI's intermediate CA with signing key usage; their folder."""
    d = tmp_path_factory.mktemp("rsa-pss")

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
