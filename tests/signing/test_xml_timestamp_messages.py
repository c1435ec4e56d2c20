"""What XAdES B-T says when its timestamp fails, signing or verifying.

Verifying, a TSA the anchors do not vouch for read "no chain to a configured trust anchor: tsa" (the TSA's
name, read as the signer's chain failing) and a TSA certificate without the EKU "TSA certificate
lacks the timeStamping extended key usage": verify_pdf says "signature timestamp is not from a
trusted TSA" for both (see also test_judged_at_timestamp). Signing, every failure to get a
timestamp read "Error while contacting timestamp service", pyHanko's words whatever happened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from signing.errors import TimestampError, UntrustedSigner
from signing.testing import SAMPLE_XML, TestPKI, free_port
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


async def test_a_tsa_that_cannot_be_asked_is_named_with_the_reason(
    pki: TestPKI, pki_server: str
) -> None:
    port = free_port()  # nothing listens there
    not_a_tsa = f"{pki_server.rstrip('/')}/no-tsa-here?token=S3cret"  # the PKI's server: 404
    for url, message in (
        (
            f"http://127.0.0.1:{port}/",
            f"timestamp request to http://127.0.0.1:{port}/ failed: cannot connect to "
            f"127.0.0.1:{port} (Connection refused)",
        ),
        (
            not_a_tsa,
            f"timestamp request to {not_a_tsa.replace('S3cret', '***')} failed: HTTP 404 Not Found",
        ),
        ("notaurl", "timestamp request to notaurl failed: not an http:// or https:// URL"),
    ):
        with pytest.raises(TimestampError) as failed:
            await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=url)
        assert str(failed.value) == message


async def test_a_tsa_replaying_a_stale_reply_is_named_as_such(
    pki: TestPKI, stale_tsa_url: str
) -> None:
    """A TSA (or a cache before it) answering every request with its first reply: pyHanko
    refuses the token (its nonce is another request's) but worded it ``'int' object has no
    attribute 'hex'``; signing said so (audit checkpoints too: the same words)."""
    await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=stale_tsa_url)
    with pytest.raises(TimestampError) as failed:
        await sign_xml(SAMPLE_XML, pki.key("gateway"), level="B-T", tsa_url=stale_tsa_url)
    assert str(failed.value) == (
        f"timestamp request to {stale_tsa_url} failed: the TSA's reply does not answer this "
        "request (its nonce is another request's: a stale or replayed token)"
    )
