"""PAdES B-LT validated from its DSS alone, B-LT refused without revocation data, and PDFs whose
CMS is corrupt: real signatures from the session's test PKI, the CLI in its own process."""

from __future__ import annotations

import asyncio
import io
import re

import pytest

from signing.errors import SigningError
from signing.pdf import sign_pdf, verify_pdf
from signing.testing import sample_pdf, serve_pki
from tests.signing.run_cli import lienthong

PDF = sample_pdf()


@pytest.fixture(scope="module")
def blt_pdf(pki, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A B-LT PDF signed while the PKI's CRL/OCSP server ran; the server is stopped after."""
    from signing.timestamps import serve_tsa

    async def make() -> bytes:
        async with serve_pki(pki), serve_tsa(pki.directory) as tsa:
            return await sign_pdf(
                PDF, pki.key("gateway"), level="B-LT", tsa_url=tsa, trust=pki.trust()
            )

    path = tmp_path_factory.mktemp("blt") / "gateway.B-LT.pdf"
    path.write_bytes(asyncio.run(make()))
    return path


@pytest.mark.parametrize("revocation", ["hard-fail", "soft-fail"])
async def test_b_lt_verifies_offline_from_its_dss(pki, blt_pdf, revocation):
    # No CRL/OCSP server runs: the signer's chain and the TSA's are judged from the DSS.
    [report] = await verify_pdf(blt_pdf.read_bytes(), pki.trust(revocation=revocation))
    assert report.valid, report.reason
    assert report.level == "PAdES-B-LT"
    assert report.revocation == "good"
    assert report.chain[0] == "gateway" and report.signed_at is not None


def test_b_lt_offline_cli_says_valid_b_lt_and_logs_nothing(pki, blt_pdf):
    r = lienthong(
        "verify", "pdf", str(blt_pdf), "--trust", str(pki.root_pem), "--revocation", "hard-fail"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("VALID PAdES-B-LT signature in field Signature1")
    assert "revocation: good" in r.stdout
    assert r.stderr == ""


async def test_b_lt_refused_when_revocation_data_cannot_be_fetched(pki, tsa_url):
    # pki_server is not running: nothing to embed, so no B-LT signature is produced.
    with pytest.raises(SigningError) as info:
        await sign_pdf(PDF, pki.key("gateway"), level="B-LT", tsa_url=tsa_url, trust=pki.trust())
    assert str(info.value).startswith("B-LT: cannot embed revocation data for the signer's chain")


def test_b_lt_cli_exits_2_without_revocation_data(pki, tsa_url, tmp_path):
    (tmp_path / "in.pdf").write_bytes(PDF)
    out = tmp_path / "out.pdf"
    args = ["--level", "B-LT", "--tsa", tsa_url, "--trust", str(pki.root_pem)]
    r = lienthong(
        "sign",
        "pdf",
        str(tmp_path / "in.pdf"),
        str(out),
        "--key",
        str(pki.p12_path("gateway")),
        *args,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: B-LT: cannot embed revocation data")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


async def test_a_dss_without_revocation_data_is_not_b_lt(pki, pki_server, tsa_url):
    # A DSS that carries only certificates (what signing with the PKI down used to write) does
    # not make a signature B-LT: it is B-T, judged with what can be fetched.
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    from signing.trust import to_asn1

    signed = await sign_pdf(PDF, pki.key("gateway"), level="B-T", tsa_url=tsa_url)
    buf = io.BytesIO(signed)
    DocumentSecurityStore.add_dss(
        buf, None, certs=[to_asn1(c) for c in pki.key("gateway").chain], force_write=True
    )
    assert b"/DSS" in buf.getvalue()
    [report] = await verify_pdf(buf.getvalue(), pki.trust(revocation="hard-fail"))
    assert report.valid, report.reason
    assert report.level == "PAdES-B-T"


def _flip(data: bytes, pos: int) -> bytes:
    m = re.search(rb"/Contents <([0-9a-fA-F]+)>", data)
    assert m is not None
    i = m.start(1) + pos
    return data[:i] + (b"0" if data[i : i + 1] != b"0" else b"1") + data[i + 1 :]


@pytest.fixture(scope="module")
def bb_pdf(pki) -> bytes:  # type: ignore[no-untyped-def]
    return asyncio.run(sign_pdf(PDF, pki.key("gateway")))


# Positions in the hex CMS that broke the verifier (the tester's fuzz, gateway.B-B.pdf): the
# outer ContentInfo, SignerInfos, encapsulated content type, certificate choices and fields,
# the signing-certificate attribute. Each is a readable PDF with a bad signature.
@pytest.mark.parametrize("pos", [2, 8, 20, 40, 100, 120, 400, 1200, 2400, 2800])
def test_corrupt_cms_is_invalid_with_a_reason(pki, bb_pdf, tmp_path, pos):
    bad = tmp_path / f"fuzz-{pos}.pdf"
    bad.write_bytes(_flip(bb_pdf, pos))
    r = lienthong("verify", "pdf", str(bad), "--trust", str(pki.root_pem), "--revocation", "off")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (0, 1), r.stdout + r.stderr  # never "not a readable PDF" (2)
    if r.returncode == 1:
        assert r.stdout.startswith("INVALID "), r.stdout
        [reason] = [line for line in r.stdout.splitlines() if line.strip().startswith("reason:")]
        assert "object has no attribute" not in reason
        assert "XMLDSig" not in r.stdout
    assert r.stderr == ""
