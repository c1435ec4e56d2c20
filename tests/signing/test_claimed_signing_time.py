"""A signature's time is proven only by a trusted timestamp (B-T and above). Without one (B-B)
the time in it is what the signer wrote there, which any signer sets as it likes: a decision
signed today could say 2015, years before its signer's certificate was issued. ``verify`` showed
that claim as "signed at", in its text and its JSON (and the hub's stored reports) alike: the
claim is now ``claimed_signing_time``, and "signed at" / ``signed_at`` only a timestamp's time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signing.pdf import sign_pdf, verify_pdf
from signing.report import SignatureReport
from signing.testing import EDXML_HEADER, SAMPLE_XML, TestPKI, sample_pdf
from signing.xml import sign_xml, verify_xml
from tests.signing.run_cli import lienthong


async def _verified(pki: TestPKI, kind: str, level: Any, tsa_url: str | None) -> SignatureReport:
    trust = pki.trust(revocation="off")
    if kind == "xml":
        signed = await sign_xml(
            SAMPLE_XML, pki.key("gateway"), level=level, parent=EDXML_HEADER, tsa_url=tsa_url
        )
        return (await verify_xml(signed, trust)).report
    signed = await sign_pdf(sample_pdf(), pki.key("gateway"), level=level, tsa_url=tsa_url)
    [report] = await verify_pdf(signed, trust)
    return report


@pytest.mark.parametrize("kind", ["xml", "pdf"])
async def test_a_b_b_signature_time_is_the_signers_claim(pki: TestPKI, kind: str) -> None:
    report = await _verified(pki, kind, "B-B", None)
    assert report.valid and report.signed_at is None
    assert report.claimed_signing_time is not None
    claimed = report.claimed_signing_time.isoformat()
    d: dict[str, Any] = report.as_dict()
    assert (d["signed_at"], d["claimed_signing_time"]) == (None, claimed)
    text = report.as_text()
    assert "signed at" not in text
    assert (
        f"  claimed:    {claimed} (signing time claimed by the signer; no timestamp proves it)"
    ) in text.splitlines()


@pytest.mark.parametrize("kind", ["xml", "pdf"])
async def test_a_timestamped_signature_is_signed_at_its_timestamp(
    pki: TestPKI, pki_server: Any, tsa_url: str, kind: str
) -> None:
    report = await _verified(pki, kind, "B-T", tsa_url)
    assert report.valid and report.signed_at is not None
    assert report.claimed_signing_time is not None  # its claim is kept beside it
    assert report.as_dict()["signed_at"] == report.signed_at.isoformat()
    lines = report.as_text().splitlines()
    assert f"  signed at:  {report.signed_at.isoformat()} (signature timestamp)" in lines
    assert not any(line.startswith("  claimed:") for line in lines)


def test_verify_says_so_in_its_text_and_its_json(pki: TestPKI, tmp_path: Any) -> None:
    import asyncio

    path = tmp_path / "signed.xml"
    path.write_bytes(
        asyncio.run(sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-B", parent=EDXML_HEADER))
    )
    args = ("verify", "xml", str(path), "--trust", str(pki.root_pem), "--revocation", "off")
    r = lienthong(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signed at" not in r.stdout
    assert "(signing time claimed by the signer; no timestamp proves it)" in r.stdout
    r = lienthong(*args, "--json")
    [sig] = json.loads(r.stdout)["signatures"]
    assert sig["signed_at"] is None and sig["claimed_signing_time"].startswith("20")
