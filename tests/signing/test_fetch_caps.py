"""CRLs, OCSP answers and TSA replies are read up to a cap, over real sockets.

Before, pyhanko-certvalidator's fetchers and pyHanko's TSA client read an answer whole: an 8 MiB
CRL of padding took a verifier to 2.6 GB (asn1crypto builds objects for every element), 100 MiB
to the OOM killer, for every signature checked. The servers here stream more than the cap, count
what they managed to send, and answer padding that asn1crypto refuses at its first byte, so that
the code before the fix (which read it all) costs only the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from signing.capped import MAX_CRL_BYTES, MAX_OCSP_BYTES, MAX_TSA_BYTES
from signing.errors import TimestampError, UntrustedSigner
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from signing.timestamps import request_timestamp
from signing.trust import ChainResult, RevocationMode, TrustStore

CHUNK = 256 * 1024


@dataclass
class Flood:
    """How much each path was asked to send, and how much of it went out before the client
    stopped reading (a write to a closed connection fails)."""

    size: int
    declare_length: bool
    real: dict[str, bytes] = field(default_factory=dict)  # paths answered as they should be
    sent: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.path in self.real:
            return web.Response(body=self.real[request.path], content_type="application/pkix-crl")
        kind = request.path.strip("/").split("/")[0]
        content_type = {
            "crl": "application/pkix-crl",
            "ocsp": "application/ocsp-response",
        }.get(kind, "application/timestamp-reply")
        headers = {"Content-Type": content_type}
        if self.declare_length:
            headers["Content-Length"] = str(self.size)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        self.sent[kind] = 0
        try:
            while self.sent[kind] < self.size:
                await response.write(bytes(CHUNK))  # zeros: asn1crypto refuses them at once
                self.sent[kind] += CHUNK
        except (ConnectionError, RuntimeError):
            pass  # the client closed the connection: what went out is counted
        return response


@pytest.fixture
async def flood_at(pki: TestPKI) -> AsyncIterator[object]:
    """Start a flooding server on the PKI's CRL/OCSP address (or a free port for a TSA)."""
    runners: list[web.AppRunner] = []

    async def start(flood: Flood, port: int) -> str:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", flood.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/tsa"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _validate(pki: TestPKI, mode: RevocationMode, subject: str = "register") -> ChainResult:
    key = pki.key(subject)
    trust = TrustStore(pki.trust().anchors, revocation=mode, fetch_timeout=30)
    return await trust.validate(key.certificate, key.chain)


# Well past each cap and the loopback's socket buffers (a few MiB), so that a read cut at the cap
# shows as far less sent than asked.
CRL_FLOOD = MAX_CRL_BYTES + 48 * 1024 * 1024


@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
async def test_an_oversized_crl_and_ocsp_answer_are_soft_failed_unread(
    pki: TestPKI, flood_at: object, declare_length: bool
) -> None:
    flood = Flood(CRL_FLOOD, declare_length)
    await flood_at(flood, urlsplit(pki.base_url).port)  # type: ignore[operator]
    result = await _validate(pki, "soft-fail")
    assert result.revocation == "unknown (soft-fail)"
    assert set(flood.sent) == {"crl", "ocsp"}
    # Read up to the cap (none of it when the length was declared), not to the end.
    assert flood.sent["crl"] < MAX_CRL_BYTES + 24 * 1024 * 1024 < CRL_FLOOD
    assert flood.sent["ocsp"] < CRL_FLOOD - 24 * 1024 * 1024


async def test_hard_fail_refuses_naming_the_caps(pki: TestPKI, flood_at: object) -> None:
    # The root's CRL answered (the intermediate is checked first, and hard-fail stops there):
    # the signer's OCSP answer and CRL are both refused.
    root_crl = pki.crls()["root.crl"]
    flood = Flood(CRL_FLOOD, declare_length=False, real={"/crl/root.crl": root_crl})
    await flood_at(flood, urlsplit(pki.base_url).port)  # type: ignore[operator]
    with pytest.raises(UntrustedSigner) as info:
        await _validate(pki, "hard-fail")
    assert info.value.kind == "revocation-unknown"
    assert "revocation status unknown" in info.value.reason
    assert "CRL larger than the limit (16 MiB)" in info.value.reason
    assert "OCSP answer larger than the limit (64 KiB)" in info.value.reason
    assert flood.sent["crl"] < CRL_FLOOD - 24 * 1024 * 1024


async def test_an_oversized_timestamp_reply_is_refused_naming_the_cap(flood_at: object) -> None:
    flood = Flood(64 * 1024 * 1024, declare_length=False)
    url = await flood_at(flood, 0)  # type: ignore[operator]
    with pytest.raises(TimestampError) as info:
        await request_timestamp(url, hashlib.sha256(b"checkpoint").digest())
    assert "timestamp reply larger than the limit (1 MiB)" in str(info.value)
    assert flood.sent["tsa"] < MAX_TSA_BYTES + 24 * 1024 * 1024 < flood.size


async def test_pades_b_t_with_an_oversized_timestamp_reply_fails_naming_the_cap(
    pki: TestPKI, flood_at: object
) -> None:
    flood = Flood(64 * 1024 * 1024, declare_length=True)
    url = await flood_at(flood, 0)  # type: ignore[operator]
    with pytest.raises(TimestampError, match=r"larger than the limit \(1 MiB\)"):
        await sign_pdf(sample_pdf(), pki.key("gateway"), level="B-T", tsa_url=url)


async def test_answers_within_the_caps_still_decide(
    pki: TestPKI, pki_server: None, tsa_url: str
) -> None:
    # The test PKI's real CRLs and OCSP answers, and the local TSA's replies: all far below.
    good = await _validate(pki, "hard-fail")
    assert good.revocation == "good"
    with pytest.raises(UntrustedSigner) as info:
        await _validate(pki, "hard-fail", "revoked")
    assert info.value.kind == "revoked"
    signed = await sign_pdf(
        sample_pdf(), pki.key("gateway"), level="B-LT", tsa_url=tsa_url, trust=pki.trust()
    )
    assert signed.startswith(b"%PDF")
    assert MAX_OCSP_BYTES == 64 * 1024 and MAX_CRL_BYTES == 16 * 1024 * 1024
