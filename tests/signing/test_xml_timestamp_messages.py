"""What XAdES B-T says when its timestamp fails.

A TSA the anchors do not vouch for read "no chain to a configured trust anchor: tsa" (the TSA's
name, read as the signer's chain failing) and a TSA certificate without the EKU "TSA certificate
lacks the timeStamping extended key usage": verify_pdf says "signature timestamp is not from a
trusted TSA" for both (see also test_judged_at_timestamp).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from signing.errors import UntrustedSigner
from signing.testing import SAMPLE_XML, TestPKI
from signing.timestamps import serve_tsa
from signing.xml import sign_xml, verify_xml


async def test_a_tsa_without_the_timestamping_usage(pki: TestPKI, tmp_path: Path) -> None:
    """A TSA signing with the gateway's key: its chain is trusted, its certificate is no TSA's."""
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    shutil.copy(pki.key_path("gateway"), impostor / "tsa.key.pem")
    shutil.copy(pki.cert_path("gateway"), impostor / "tsa.cert.pem")  # with the intermediate
    async with serve_tsa(impostor) as url:
        signed = await sign_xml(SAMPLE_XML, pki.key("register"), level="B-T", tsa_url=url)
    with pytest.raises(UntrustedSigner) as refused:
        await verify_xml(signed, pki.trust(revocation="off"))
    assert refused.value.reason == (
        "signature timestamp is not from a trusted TSA (TSA certificate lacks the timeStamping "
        "extended key usage)"
    )
    [report] = refused.value.reports  # type: ignore[attr-defined]
    assert report.signer == "register" and report.reason == refused.value.reason
