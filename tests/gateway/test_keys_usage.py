"""A ``[signing]`` key whose certificate may not sign documents is refused at start, with the
verifier's own rule (signing.trust): its extended key usage dedicates it to another service (a
TSA's, an OCSP responder's), or its key usage lacks digitalSignature. Before, the gateway started
and signed audit checkpoints that ``audit verify`` always refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

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


def test_a_document_signing_key_is_accepted(pki) -> None:
    setup = signing_setup(
        _settings(pki, {"key": str(pki.key_path("gateway")), "cert": str(pki.cert_path("gateway"))})
    )
    assert "gateway" in setup.signer.certificate.subject.rfc4514_string()


def test_serve_refuses_a_tsa_key_in_one_line(pki, tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///gw.db"
[signing]
key = "{pki.key_path("tsa")}"
cert = "{pki.cert_path("tsa")}"
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
    assert error.startswith(f"Error: [signing] cert {pki.cert_path('tsa')}: extended key usage")
    assert "Traceback" not in result.output
    assert not (tmp_path / "gw.db").exists()  # refused before the store was made
