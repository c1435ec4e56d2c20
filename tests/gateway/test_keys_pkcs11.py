"""``[signing] key`` naming a PKCS#11 token's key (``pkcs11:token=…;object=…``): the gateway's
config loading passes the URI on as a URI. It was read as a file path, relative to the config
file's folder (``cannot read key file /etc/lienthong/pkcs11:token=…``).

On a real SoftHSM2 token, as tests/signing/test_keys.py uses. The loading runs in a child
process: the PKCS#11 library reads SOFTHSM2_CONF once per process, and this token must not take
the place of the signing tests' own in the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

MODULE = "/usr/lib/softhsm/libsofthsm2.so"

_LOAD = """
import json, sys
from gateway.keys import audit_certificate, signing_setup
from gateway.settings import SettingsError, load_settings

settings = load_settings(sys.argv[1])
try:
    setup = signing_setup(settings)
except SettingsError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
try:
    signature = setup.signer.sign(b"checkpoint")
    print(json.dumps({
        "kind": type(setup.signer).__name__,
        "subject": setup.signer.certificate.subject.rfc4514_string(),
        "signed": len(signature) > 0,
        "audit": audit_certificate(settings).subject.rfc4514_string(),
    }))
finally:
    setup.signer.close()
"""


@pytest.fixture(scope="module")
def token(pki, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A SoftHSM2 token ``gw`` holding the EC key ``gwkey`` and its certificate (by the test PKI,
    with the intermediate beside it on the token); its folder, and the environment to use it."""
    if not (os.path.exists(MODULE) and shutil.which("pkcs11-tool")):
        pytest.skip("SoftHSM2/opensc not installed (scripts/install-tools.sh)")
    d = tmp_path_factory.mktemp("softhsm-gateway")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\n")
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(conf),
        "LIENTHONG_PKCS11_PIN": "1234",
        "LIENTHONG_PKCS11_MODULE": MODULE,
    }

    def sh(*args: str) -> None:
        subprocess.run(args, env=env, check=True, capture_output=True)

    sh("softhsm2-util", "--init-token", "--free", "--label", "gw", "--pin", "1234",
       "--so-pin", "5678")  # fmt: skip
    tool = ["pkcs11-tool", "--module", MODULE, "--token-label", "gw", "--login", "--pin", "1234"]
    sh(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "02", "--label", "gwkey")
    sh(*tool, "--read-object", "--type", "pubkey", "--label", "gwkey",
       "-o", str(d / "gwkey.pub.der"))  # fmt: skip
    public = serialization.load_der_public_key((d / "gwkey.pub.der").read_bytes())
    cert = pki.issue("token-gateway", public)
    (d / "gwkey.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (d / "gwkey.cert.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + pki.intermediate_pem.read_bytes()
    )
    sh(*tool, "--write-object", str(d / "gwkey.der"), "--type", "cert", "--id", "02",
       "--label", "gwkey")  # fmt: skip
    return d, env


def _load(config: Path, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _config(folder: Path, pki_root: Path, signing: str) -> Path:
    path = folder / "lienthong.toml"
    path.write_text(
        f'[signing]\n{signing}\ntrust = ["{pki_root}"]\n[sandbox]\nembedded = false\n', "utf-8"
    )
    return path


@pytest.mark.parametrize("with_cert", [True, False], ids=["cert-file", "cert-from-token"])
def test_the_gateway_loads_its_key_from_a_pkcs11_token(
    pki, token: tuple[Path, dict[str, str]], tmp_path: Path, with_cert: bool
) -> None:
    folder, env = token
    signing = 'key = "pkcs11:token=gw;object=gwkey"'
    if with_cert:
        shutil.copy(folder / "gwkey.cert.pem", tmp_path / "gateway.cert.pem")
        signing += '\ncert = "gateway.cert.pem"'  # relative to the config file: a path
    loaded = _load(_config(tmp_path, pki.root_pem, signing), env)
    assert "error" not in loaded, loaded
    assert loaded["kind"] == "Pkcs11Key"
    assert loaded["signed"] is True
    assert "CN=token-gateway" in str(loaded["subject"])
    assert "CN=token-gateway" in str(loaded["audit"])  # `audit verify` pins the token's key


def test_a_pkcs11_uri_is_never_read_as_a_file(
    pki, token: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A token the module does not have: the token's error, not a file path under the config."""
    _, env = token
    loaded = _load(_config(tmp_path, pki.root_pem, 'key = "pkcs11:token=nosuch;object=y"'), env)
    error = str(loaded.get("error"))
    assert "PKCS#11 token 'nosuch'" in error, loaded
    assert "key file" not in error and str(tmp_path) not in error
