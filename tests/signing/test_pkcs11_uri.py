"""A PKCS#11 key URI as `lienthong sign` and the gateway's ``[signing] key`` take it: its PIN
comes from LIENTHONG_PKCS11_PIN only, and no message shows the URI as written.

RFC 7512's ``pin-value`` was accepted, undocumented: the PIN then stood in argv (ps, shell
history) and in the configuration, and the gateway's start refusal quoted the whole URI with it
(``Error: [signing] key pkcs11:token=…?pin-value=1234: …``); a ``PKCS11:`` scheme in capitals
(URI schemes are case-insensitive) was read as a file name and echoed (``cannot read key file
PKCS11:…?pin-value=1234``).

On a real SoftHSM2 token, used from child processes only: the PKCS#11 library reads
SOFTHSM2_CONF once per process, and this token must not take the place of the other tests' own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signing.errors import KeyLoadError
from signing.keys import load_key
from signing.testing import SAMPLE_XML, TestPKI
from signing.xml import verify_xml_sync
from tests.signing.run_cli import ROOT

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "739146"  # digits no path or message here holds by chance


@pytest.fixture(scope="module")
def token(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A SoftHSM2 token ``uri`` holding EC keys with their certificates (by the test PKI): ``gw``
    may sign, ``nousage`` may not. Its folder, and an environment to use it with no PIN set."""
    if not (os.path.exists(MODULE) and shutil.which("pkcs11-tool")):
        pytest.skip("SoftHSM2/opensc not installed (scripts/install-tools.sh)")
    d = tmp_path_factory.mktemp("softhsm-uri")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_PKCS11_")}
    env.update(SOFTHSM2_CONF=str(conf), PYTHONPATH=str(ROOT))

    def sh(*args: str) -> None:
        subprocess.run(args, env=env, check=True, capture_output=True)

    sh("softhsm2-util", "--init-token", "--free", "--label", "uri", "--pin", PIN,
       "--so-pin", "5678")  # fmt: skip
    tool = ["pkcs11-tool", "--module", MODULE, "--token-label", "uri", "--login", "--pin", PIN]
    for kid, label, usage in (("01", "gw", "signing"), ("02", "nousage", "none")):
        sh(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", kid, "--label", label)
        sh(*tool, "--read-object", "--type", "pubkey", "--label", label,
           "-o", str(d / f"{label}.pub.der"))  # fmt: skip
        public = serialization.load_der_public_key((d / f"{label}.pub.der").read_bytes())
        cert = pki.issue(f"token-{label}", public, usage=usage)
        (d / f"{label}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (d / f"{label}.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        sh(*tool, "--write-object", str(d / f"{label}.der"), "--type", "cert", "--id", kid,
           "--label", label)  # fmt: skip
    # The issuing CA's certificate, as tokens carry it: the chain of a certificate they hold.
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    (d / "intermediate.der").write_bytes(inter.public_bytes(serialization.Encoding.DER))
    sh(*tool, "--write-object", str(d / "intermediate.der"), "--type", "cert", "--id", "09",
       "--label", "Intermediate CA")  # fmt: skip
    return d, env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def _sign(
    env: dict[str, str], tmp_path: Path, key: str, *more: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    cli = ["-c", "from gateway.cli import main; main()", "sign", "xml"]
    return _run(env, *cli, str(tmp_path / "in.xml"), str(tmp_path / "out.xml"), "--key", key, *more)


# The gateway's start, as far as its keys: the one line it refuses to start with, if any.
_START = """
import sys
from gateway.keys import signing_setup
from gateway.settings import SettingsError, load_settings

try:
    signing_setup(load_settings(sys.argv[1])).signer.close()
except SettingsError as exc:
    print(f"Error: {exc}")
else:
    print("started")
"""


def _start(env: dict[str, str], tmp_path: Path, pki: TestPKI, key: str) -> str:
    config = tmp_path / "lienthong.toml"
    config.write_text(
        f'[signing]\nkey = "{key}"\ntrust = ["{pki.root_pem}"]\n[sandbox]\nembedded = false\n'
    )
    done = _run(env, "-c", _START, str(config))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    "uri",
    [
        f"pkcs11:token=uri;object=gw?pin-value={PIN}",
        f"pkcs11:token=uri;object=gw;pin-value={PIN}",
        f"PKCS11:token=uri;object=gw?pin-value={PIN}",
        f"pkcs11:token=uri;object=gw?PIN-VALUE={PIN}",
        "pkcs11:token=uri;object=gw?pin-source=file:pin.txt",
        f"pkcs11:token=uri;object=gw;{PIN}",  # a PIN without its name: a malformed attribute
    ],
)
def test_a_pin_in_the_uri_is_refused_and_never_shown(uri: str) -> None:
    with pytest.raises(KeyLoadError) as refused:
        load_key(uri)  # refused before any module is loaded
    assert PIN not in str(refused.value)
    assert str(refused.value).startswith(("PKCS#11 URI with a PIN", "malformed PKCS#11 URI"))


def test_sign_and_the_gateway_refuse_a_pin_in_the_uri(
    token: tuple[Path, dict[str, str]], tmp_path: Path, pki: TestPKI
) -> None:
    """With a token the URI's PIN opens (they signed with it, and started)."""
    _, env = token
    uri = f"pkcs11:token=uri;object=gw?pin-value={PIN}"
    done = _sign(env, tmp_path, uri)
    assert done.returncode == 2, done.stdout
    assert done.stderr == (
        "error: PKCS#11 URI with a PIN (pin-value): not accepted, as it would show in command "
        "lines and configuration; set LIENTHONG_PKCS11_PIN instead\n"
    )
    assert not (tmp_path / "out.xml").exists()
    refused = _start(env, tmp_path, pki, uri)
    assert refused.startswith("Error: [signing]") and "LIENTHONG_PKCS11_PIN" in refused
    assert PIN not in refused


def test_the_uri_scheme_is_read_in_any_case(
    token: tuple[Path, dict[str, str]], tmp_path: Path, pki: TestPKI
) -> None:
    _, env = token
    env = {**env, "LIENTHONG_PKCS11_PIN": PIN}
    done = _sign(env, tmp_path, "PKCS11:token=uri;object=gw")
    assert done.returncode == 0, done.stderr
    report = verify_xml_sync(
        (tmp_path / "out.xml").read_bytes(), pki.trust(revocation="off")
    ).report
    assert report.valid and report.signer == "token-gw"
    assert _start(env, tmp_path, pki, "Pkcs11:token=uri;object=gw") == "started"


def test_the_gateway_names_a_token_key_by_its_labels_not_its_uri(
    token: tuple[Path, dict[str, str]], tmp_path: Path, pki: TestPKI
) -> None:
    """A key that may not sign is refused at start naming it; the URI's other attributes (here
    the module's path) are not shown."""
    _, env = token
    env = {**env, "LIENTHONG_PKCS11_PIN": PIN}
    refused = _start(env, tmp_path, pki, f"pkcs11:token=uri;object=nousage?module-path={MODULE}")
    assert refused.startswith("Error: [signing] key PKCS#11 token 'uri', object 'nousage': ")
    assert "cannot sign documents" in refused
    assert "module-path" not in refused and "?" not in refused
