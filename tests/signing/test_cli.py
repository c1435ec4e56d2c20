"""The click commands, run in-process with CliRunner (verify runs its own event loop)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from signing.cli import pki as pki_group
from signing.cli import sign, verify
from signing.testing import SAMPLE_XML, sample_pdf


def test_pki_init(tmp_path):
    result = CliRunner().invoke(
        pki_group, ["init", str(tmp_path / "p"), "--base-url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 0, result.output
    for name in (
        "root.pem",
        "intermediate.pem",
        "crl/intermediate.crl",
        "gateway.cert.pem",
        "gateway.key.pem",
        "gateway.p12",
        "tsa.cert.pem",
        "ocsp.p12",
        "agency-000.00.00.H41.p12",
        "revoked.cert.pem",
        "expired.key.pem",
    ):
        assert (tmp_path / "p" / name).exists(), name


def test_sign_and_verify_xml_and_pdf(pki, tmp_path):
    runner = CliRunner()
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    (tmp_path / "in.pdf").write_bytes(sample_pdf())
    for kind, key in (("xml", pki.key_path("gateway")), ("pdf", pki.p12_path("register"))):
        out = tmp_path / f"out.{kind}"
        r = runner.invoke(sign, [kind, str(tmp_path / f"in.{kind}"), str(out), "--key", str(key)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(
            verify, [kind, str(out), "--trust", str(pki.root_pem), "--revocation", "off", "--json"]
        )
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        assert data["valid"] and data["signatures"][0]["revocation"] == "not checked"
        r = runner.invoke(
            verify, [kind, str(out), "--trust", str(pki.root_pem), "--revocation", "off"]
        )
        assert r.exit_code == 0 and "VALID" in r.output and "signer:" in r.output


def test_verify_refuses_with_exit_1(pki, tmp_path):
    runner = CliRunner()
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    r = runner.invoke(verify, ["xml", str(tmp_path / "in.xml"), "--trust", str(pki.root_pem)])
    assert r.exit_code == 1 and "no signature found" in r.output


def test_bad_input_one_line_error(pki, tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        sign,
        [
            "xml",
            str(tmp_path / "nope.xml"),
            str(tmp_path / "o"),
            "--key",
            str(pki.key_path("gateway")),
        ],
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error:")
    (tmp_path / "in.xml").write_bytes(SAMPLE_XML)
    r = runner.invoke(
        sign,
        [
            "xml",
            str(tmp_path / "in.xml"),
            str(tmp_path / "o"),
            "--key",
            str(tmp_path / "missing.key.pem"),
        ],
    )
    assert r.exit_code == 2 and "cannot read key file" in r.output
    r = runner.invoke(verify, ["xml", str(tmp_path / "in.xml"), "--trust", "/nonexistent.pem"])
    assert r.exit_code == 2 and "cannot read trust anchors" in r.output
