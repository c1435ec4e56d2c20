"""A ``[signing]`` key whose certificate may not sign documents is refused at start, with the
verifier's own rule (signing.trust): its extended key usage dedicates it to another service (a
TSA's, an OCSP responder's), its key usage lacks digitalSignature, or it (or an issuer given with
it) is expired or not yet valid. Before, the gateway started and signed audit checkpoints that
``audit verify`` always refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.cli import main
from gateway.keys import signing_setup
from gateway.settings import SettingsError, settings_from_mapping


def _settings(pki, signing: dict[str, str]):  # type: ignore[no-untyped-def]
    return settings_from_mapping(
        {
            "signing": {**signing, "trust": [str(pki.root_pem)]},
            "sandbox": {"embedded": False},
        }
    )


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("tsa", "extended key usage (timeStamping) does not allow signing documents"),
        ("ocsp", "extended key usage (OCSPSigning) does not allow signing documents"),
        ("no-signing-usage", "key usage does not allow signing"),
        # The norms: RSA of at least 2048 bits; the verifier flags it weak, nobody signs with it
        ("weak-rsa1024", "a 1024-bit key is too weak to sign (RSA keys of at least 2048 bits)"),
    ],
)
@pytest.mark.parametrize("form", ["pem-and-cert", "p12"])
def test_a_key_dedicated_to_another_service_is_refused(
    pki, subject: str, reason: str, form: str
) -> None:
    if form == "p12":
        signing, named = {"key": str(pki.p12_path(subject))}, "[signing] key"
    else:
        signing = {"key": str(pki.key_path(subject)), "cert": str(pki.cert_path(subject))}
        named = "[signing] cert"
    with pytest.raises(SettingsError) as refused:
        signing_setup(_settings(pki, signing))
    message = str(refused.value)
    assert message.startswith(named) and reason in message, message
    assert "\n" not in message


def _not_yet_valid(pki, folder: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A signing key and its certificate from the PKI's intermediate, valid from tomorrow."""
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    inter_key = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "tomorrow")]))
        .issuer_name(inter.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(inter_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_path, cert_path = folder / "tomorrow.key.pem", folder / "tomorrow.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + inter.public_bytes(serialization.Encoding.PEM)
    )
    return key_path, cert_path


def test_an_expired_or_not_yet_valid_certificate_is_refused(pki, tmp_path: Path) -> None:
    expired = pki.certificate("expired").not_valid_after_utc
    with pytest.raises(SettingsError) as refused:
        signing_setup(_settings(pki, {"key": str(pki.p12_path("expired"))}))
    assert str(refused.value) == (
        f"[signing] key {pki.p12_path('expired')}: certificate expired: expired (valid until "
        f"{expired:%Y-%m-%d %H:%M} UTC): it cannot sign documents or audit checkpoints"
    )
    key_path, cert_path = _not_yet_valid(pki, tmp_path)
    with pytest.raises(SettingsError) as refused:
        signing_setup(_settings(pki, {"key": str(key_path), "cert": str(cert_path)}))
    starts = x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_before_utc
    assert str(refused.value) == (
        f"[signing] cert {cert_path}: certificate not yet valid: tomorrow (valid from "
        f"{starts:%Y-%m-%d %H:%M} UTC): it cannot sign documents or audit checkpoints"
    )


def test_a_document_signing_key_is_accepted(pki) -> None:
    setup = signing_setup(
        _settings(pki, {"key": str(pki.key_path("gateway")), "cert": str(pki.cert_path("gateway"))})
    )
    assert "gateway" in setup.signer.certificate.subject.rfc4514_string()


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("tsa", "extended key usage"),
        ("expired", "certificate expired: expired (valid until "),
    ],
)
def test_serve_refuses_the_key_in_one_line(pki, tmp_path: Path, subject: str, reason: str) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///gw.db"
[signing]
key = "{pki.key_path(subject)}"
cert = "{pki.cert_path(subject)}"
trust = ["{pki.root_pem}"]
[sandbox]
embedded = true
pki = "{pki.directory}"
""",
        "utf-8",
    )
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert error.startswith(f"Error: [signing] cert {pki.cert_path(subject)}: {reason}"), error
    assert "Traceback" not in result.output
    assert not (tmp_path / "gw.db").exists()  # refused before the store was made


def _issued_by_a_weak_intermediate(pki, folder: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A P-256 signing key whose certificate a 1024-bit RSA intermediate of the PKI's issued."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    inter_key = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    now = dt.datetime.now(dt.UTC)

    def issue(name: str, public: object, issuer: x509.Certificate, key: object, ca: bool):  # type: ignore[no-untyped-def]
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject)
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256())  # type: ignore[arg-type]
        )

    weak_key = rsa.generate_private_key(65537, 1024)
    weak = issue("weak-ca", weak_key.public_key(), inter, inter_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("signed-by-weak", leaf_key.public_key(), weak, weak_key, False)
    key_path, cert_path = folder / "leaf.key.pem", folder / "leaf.cert.pem"
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, weak, inter))
    )
    return key_path, cert_path


def test_a_key_whose_issuer_is_too_weak_is_refused(pki, tmp_path: Path) -> None:
    """Found by reviewing: only the signer's own key was held to the norms; one a 1024-bit CA
    issued was taken, and every verifier refuses its chain."""
    key_path, cert_path = _issued_by_a_weak_intermediate(pki, tmp_path)
    with pytest.raises(SettingsError) as refused:
        signing_setup(_settings(pki, {"key": str(key_path), "cert": str(cert_path)}))
    assert str(refused.value) == (
        f"[signing] cert {cert_path}: a 1024-bit key is too weak to sign (RSA keys of at least "
        "2048 bits): weak-ca: it cannot sign documents or audit checkpoints"
    )
