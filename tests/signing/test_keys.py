"""Keys from PEM, PKCS#12 and a real PKCS#11 token (SoftHSM2), and their failure paths."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signing.errors import KeyLoadError
from signing.keys import load_key
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import SAMPLE_XML, sample_pdf
from signing.xml import sign_xml, verify_xml
from tests.signing.run_cli import lienthong


def test_pem_and_p12(pki, monkeypatch):
    monkeypatch.delenv("LIENTHONG_KEY_PASSWORD", raising=False)
    for key in (load_key(str(pki.key_path("gateway"))), load_key(str(pki.p12_path("gateway")))):
        assert key.algorithm == "rsa" and key.certificate == pki.certificate("gateway")
        assert [c.subject for c in key.chain] == [pki.certificate("gateway").issuer]
    assert load_key(str(pki.p12_path("register"))).algorithm == "ecdsa"


def test_encrypted_pem_password_from_env_and_file(pki, tmp_path, monkeypatch):
    key = serialization.load_pem_private_key(pki.key_path("register").read_bytes(), None)
    path = tmp_path / "enc.key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret-pw"),
        )
    )
    shutil.copy(pki.cert_path("register"), tmp_path / "enc.cert.pem")
    with pytest.raises(KeyLoadError, match="password is needed"):
        load_key(str(path))
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", "wrong-pw")
    with pytest.raises(KeyLoadError) as info:
        load_key(str(path))
    assert "wrong-pw" not in str(info.value)
    monkeypatch.delenv("LIENTHONG_KEY_PASSWORD")
    (tmp_path / "pw").write_text("s3cret-pw\n")
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD_FILE", str(tmp_path / "pw"))
    assert load_key(str(path)).algorithm == "ecdsa"


def test_bad_inputs(pki, tmp_path):
    with pytest.raises(KeyLoadError, match="cannot read key file"):
        load_key(str(tmp_path / "missing.pem"))
    (tmp_path / "junk.p12").write_bytes(b"junk")
    with pytest.raises(KeyLoadError, match="PKCS#12"):
        load_key(str(tmp_path / "junk.p12"))
    with pytest.raises(KeyLoadError, match="does not match"):
        load_key(str(pki.key_path("gateway")), cert=str(pki.cert_path("register")))
    with pytest.raises(KeyLoadError, match="token=… and object=…"):
        load_key("pkcs11:object=x")


MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="module")
def token(pki, tmp_path_factory):
    """A real SoftHSM2 token with an EC and an RSA key, certificates issued by the test PKI.

    One token per module: the PKCS#11 library reads SOFTHSM2_CONF once per process.
    """
    if not (os.path.exists(MODULE) and shutil.which("pkcs11-tool")):
        pytest.skip("SoftHSM2/opensc not installed (scripts/install-tools.sh)")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    os.environ["SOFTHSM2_CONF"] = str(conf)

    def sh(*args: str) -> None:
        subprocess.run(args, env=env, check=True, capture_output=True)

    sh(
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        "lienthong",
        "--pin",
        "1234",
        "--so-pin",
        "5678",
    )
    tool = [
        "pkcs11-tool",
        "--module",
        MODULE,
        "--token-label",
        "lienthong",
        "--login",
        "--pin",
        "1234",
    ]
    for label, kind, kid in (("eckey", "EC:prime256v1", "02"), ("rsakey", "rsa:2048", "03")):
        sh(*tool, "--keypairgen", "--key-type", kind, "--id", kid, "--label", label)
        sh(
            *tool,
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "-o",
            str(d / f"{label}.pub.der"),
        )
        pub = serialization.load_der_public_key((d / f"{label}.pub.der").read_bytes())
        cert = pki.issue(f"token-{label}", pub)
        (d / f"{label}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (d / f"{label}.cert.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM) + pki.intermediate_pem.read_bytes()
        )
        sh(
            *tool,
            "--write-object",
            str(d / f"{label}.der"),
            "--type",
            "cert",
            "--id",
            kid,
            "--label",
            label,
        )
    # The issuing CA's certificate, as tokens carry it: the chain of a certificate read from the
    # token. And a key whose certificate object on the token is not a certificate.
    (d / "intermediate.der").write_bytes(
        x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    sh(*tool, "--write-object", str(d / "intermediate.der"), "--type", "cert", "--id", "09",
       "--label", "Intermediate CA")  # fmt: skip
    sh(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "04", "--label", "badcert")
    for kid in ("05", "06"):  # two keys under one label
        sh(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", kid, "--label", "twice")
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    session = pkcs11.lib(MODULE).get_token(token_label="lienthong").open(rw=True, user_pin="1234")
    try:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "badcert",
                Attribute.SUBJECT: b"\x30\x00",
                Attribute.VALUE: b"\x30\x03not a certificate",
            }
        )
    finally:
        session.close()
    return d


@pytest.mark.parametrize("label", ["eckey", "rsakey"])
async def test_pkcs11_signs_xml_and_pdf(pki, pki_server, token, monkeypatch, label):
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    key = load_key(f"pkcs11:token=lienthong;object={label}", cert=str(token / f"{label}.cert.pem"))
    try:
        assert key.algorithm == ("ecdsa" if label == "eckey" else "rsa")
        report = (await verify_xml(await sign_xml(SAMPLE_XML, key), pki.trust())).report
        assert report.valid and report.signer == f"token-{label}"
        [pdf_report] = await verify_pdf(await sign_pdf(sample_pdf(), key), pki.trust())
        assert pdf_report.valid, pdf_report.reason
    finally:
        key.close()


async def test_pkcs11_certificate_and_chain_from_token(pki, pki_server, token, monkeypatch):
    """Without --cert, the certificate comes from the token with the issuers the token holds:
    before, with no chain, a verifier that has only the root refused the key's own signature."""
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    key = load_key("pkcs11:token=lienthong;object=eckey")
    try:
        assert "token-eckey" in key.certificate.subject.rfc4514_string()
        assert [c.subject for c in key.chain] == [
            x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes()).subject
        ]
        report = (await verify_xml(await sign_xml(SAMPLE_XML, key), pki.trust())).report
        assert report.valid and report.chain[1] == "lienthong Test Intermediate CA"
    finally:
        key.close()


def _open_sessions() -> list[int]:
    """Handles of the sessions this process has open with SoftHSM (handles are small numbers)."""

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulong) for n in ("slot", "state", "flags", "error")]

    so = ctypes.CDLL(MODULE)
    info = Info()
    return [
        h for h in range(1, 400) if so.C_GetSessionInfo(ctypes.c_ulong(h), ctypes.byref(info)) == 0
    ]


def test_pkcs11_a_failed_login_leaves_no_session(token, monkeypatch):
    before = _open_sessions()
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "0000")
    for _ in range(3):
        with pytest.raises(KeyLoadError, match="PinIncorrect"):
            load_key("pkcs11:token=lienthong;object=eckey")
    assert _open_sessions() == before  # before: one more session per failed login
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    load_key("pkcs11:token=lienthong;object=eckey").close()  # the token still opens
    assert _open_sessions() == before


async def test_pkcs11_keys_of_one_token_share_its_session(pki, pki_server, token, monkeypatch):
    """Two keys of one token, and one key twice: before, the second load failed with
    UserAlreadyLoggedIn, and closing one key logged the token out under the others."""
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    before = _open_sessions()
    ec = load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))
    rsa = load_key("pkcs11:token=lienthong;object=rsakey", cert=str(token / "rsakey.cert.pem"))
    again = load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))
    assert len(_open_sessions()) == len(before) + 1  # one session for the token
    ec.close()
    ec.close()  # twice: gives back one share only
    for key in (rsa, again):  # still logged in
        report = (await verify_xml(await sign_xml(SAMPLE_XML, key), pki.trust())).report
        assert report.valid
    with pytest.raises(KeyLoadError, match="after close"):
        ec.sign(b"x")
    # A second load with another PIN is not let in because the token is logged in already.
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "0000")
    with pytest.raises(KeyLoadError, match="with another PIN"):
        load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))
    rsa.close()
    again.close()
    assert _open_sessions() == before  # closed with the last key


def test_pkcs11_certificate_must_match_the_token_key(pki, token, monkeypatch):
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    before = _open_sessions()
    for cert in (pki.cert_path("register"), token / "rsakey.cert.pem"):  # another EC, an RSA key
        with pytest.raises(KeyLoadError, match="does not match the private key"):
            load_key("pkcs11:token=lienthong;object=eckey", cert=str(cert))
    assert _open_sessions() == before


def test_pkcs11_a_malformed_certificate_on_the_token(token, monkeypatch):
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    with pytest.raises(KeyLoadError, match="'badcert' on the token is not a DER certificate"):
        load_key("pkcs11:token=lienthong;object=badcert")


def test_pkcs11_failures(token, monkeypatch):
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "999999")
    with pytest.raises(KeyLoadError) as info:
        load_key("pkcs11:token=lienthong;object=eckey")
    assert "PinIncorrect" in str(info.value) and "999999" not in str(info.value)
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    with pytest.raises(KeyLoadError, match="NoSuchToken"):
        load_key("pkcs11:token=absent;object=eckey")
    with pytest.raises(KeyLoadError, match="NoSuchKey"):
        load_key("pkcs11:token=lienthong;object=absent")
    monkeypatch.delenv("LIENTHONG_PKCS11_PIN")
    with pytest.raises(KeyLoadError, match="LIENTHONG_PKCS11_PIN"):
        load_key("pkcs11:token=lienthong;object=eckey")


def test_pkcs11_two_keys_under_one_label(pki, token, tmp_path, monkeypatch):
    """Refused in one line. Before, python-pkcs11's get_key raised with its object search still
    open, the session was closed, and the search, ended when garbage-collected, printed a
    SessionHandleInvalid traceback after the error line."""
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    message = (
        "PKCS#11 token 'lienthong', object 'twice': 2 private keys have this label on the "
        "token: give each its own label"
    )
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    r = lienthong(  # its own process: the traceback came as the search was garbage-collected
        "sign",
        "xml",
        str(tmp_path / "in.xml"),
        str(tmp_path / "out.xml"),
        "--key",
        "pkcs11:token=lienthong;object=twice",
        "--cert",
        str(pki.cert_path("gateway")),
    )
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr == f"error: {message}\n"
    before = _open_sessions()
    with pytest.raises(KeyLoadError) as refused:
        load_key("pkcs11:token=lienthong;object=twice", cert=str(pki.cert_path("gateway")))
    assert str(refused.value) == message
    assert _open_sessions() == before


def _lose_sessions(key) -> None:
    """Every session of this process on the key's token closed under it, as the module does when
    the token is pulled out, or an HSM restarts or its network link is reset."""
    so = ctypes.CDLL(MODULE)
    assert so.C_CloseAllSessions(ctypes.c_ulong(key._shared.session.token.slot.slot_id)) == 0


def _verifies(key, data: bytes, signature: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    public = key.certificate.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def test_pkcs11_a_lost_session_is_opened_again(token, monkeypatch):
    """A token's session lost while the gateway runs. Before, every later signature failed for
    good (`PKCS#11 signing failed: SessionHandleInvalid`: no receipt, no audit checkpoint, so new
    work refused) until a restart, and a key loaded again in the process failed too, a traceback
    after its error. Now the session is opened again and logged in, and the signature made."""
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    before = _open_sessions()
    ec = load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))
    rsa = load_key("pkcs11:token=lienthong;object=rsakey", cert=str(token / "rsakey.cert.pem"))
    try:
        for round in range(2):  # lost twice: the session opened again is used, and lost again
            _lose_sessions(ec)
            for key in (ec, rsa):  # both keys of the token, sharing the session opened again
                data = f"after a lost session, round {round}".encode()
                _verifies(key, data, key.sign(data))
        _lose_sessions(ec)
        again = load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))
        _verifies(again, b"loaded again", again.sign(b"loaded again"))
        assert len(_open_sessions()) == len(before) + 1  # still one session for the token
        again.close()
    finally:
        ec.close()
        rsa.close()
    assert _open_sessions() == before


def test_pkcs11_a_pin_refused_when_logging_in_again_is_not_tried_again(token, monkeypatch):
    """A token that no longer takes the PIN (changed meanwhile) when a lost session is opened
    again: that one failed login is the last, as a login at each signature would lock the token
    (tokens lock the user PIN after a few wrong ones). The error says so, and what to do."""
    monkeypatch.setenv("LIENTHONG_PKCS11_PIN", "1234")
    before = _open_sessions()
    key = load_key("pkcs11:token=lienthong;object=eckey", cert=str(token / "eckey.cert.pem"))

    def change_pin(old: str, new: str) -> None:  # in this process: SoftHSM keeps the PIN it read
        import pkcs11

        session = pkcs11.lib(MODULE).get_token(token_label="lienthong").open(rw=True)
        try:
            session.set_pin(old, new)
        finally:
            session.close()

    change_pin("1234", "4321")
    try:
        _lose_sessions(key)
        message = (
            "PKCS#11 token 'lienthong' refused the PIN when its lost session was opened again "
            "(PinIncorrect): not tried again, as a token locks its PIN after a few wrong ones; "
            "restart with the token's PIN in LIENTHONG_PKCS11_PIN"
        )
        with pytest.raises(KeyLoadError) as refused:
            key.sign(b"x")
        assert str(refused.value) == message
        assert _open_sessions() == before  # the failed login's session is not left open
    finally:
        change_pin("4321", "1234")
    with pytest.raises(KeyLoadError) as again:  # the right PIN again: still no login tried
        key.sign(b"x")
    assert str(again.value) == message
    key.close()
    assert _open_sessions() == before
    load_key("pkcs11:token=lienthong;object=eckey").close()  # a key loaded anew opens the token
