"""A B-LT signature proves its signer good at its timestamp only with revocation data issued after
that time. An OCSP "good" fetched before the signer was revoked stays valid for an hour (days, for
a CRL): put in the DSS of a signature made after the revocation, it made that signature "VALID
PAdES-B-LT, revocation: good", under hard-fail too. `sign pdf --level B-LT` therefore fetches its
revocation data after its timestamp. Real signatures, a PKI of the test's own (it revokes a
signer), the CLI in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from cryptography.x509 import ocsp

from signing.pdf import sign_pdf, verify_pdf
from signing.testing import TestPKI, free_port, sample_pdf, serve_pki
from signing.timestamps import serve_tsa
from tests.signing.run_cli import lienthong

PDF = sample_pdf()
SIGNER = "agency-000.00.00.G15"


@pytest.fixture
def own_pki(tmp_path: Path) -> TestPKI:
    return TestPKI.create(tmp_path / "pki", base_url=f"http://127.0.0.1:{free_port()}")


async def test_a_signature_made_after_a_revocation_does_not_stand_on_an_older_answer(
    own_pki: TestPKI, tmp_path: Path
) -> None:
    pki = own_pki
    async with serve_pki(pki), serve_tsa(pki.directory) as tsa:
        b_lt = await sign_pdf(PDF, pki.key(SIGNER), level="B-LT", tsa_url=tsa, trust=pki.trust())
    # The CA revokes the signer (its OCSP now answers "revoked"). Whoever holds the key signs on
    # top of the B-LT PDF minutes later (the TSA's time; tests do not wait): the DSS still holds
    # the OCSP "good" answer of an hour's validity fetched before the revocation.
    revoked_at = dt.datetime.now(dt.UTC)
    pki.index["subjects"][SIGNER]["revoked"] = True
    pki.index["revoked_at"] = revoked_at.isoformat()
    async with serve_tsa(pki.directory, at=revoked_at + dt.timedelta(minutes=5)) as tsa:
        forged = await sign_pdf(b_lt, pki.key(SIGNER), level="B-T", tsa_url=tsa)
    async with serve_pki(pki):
        first, second = await verify_pdf(forged, pki.trust(revocation="hard-fail"))
        path = tmp_path / "forged.pdf"
        path.write_bytes(forged)
        args = ["verify", "pdf", str(path), "--trust", str(pki.root_pem)]
        r = await asyncio.to_thread(lienthong, *args, "--revocation", "hard-fail")
    assert first.valid and first.level == "PAdES-B-LT"  # made before the revocation
    assert not second.valid
    assert second.level == "PAdES-B-T"  # the DSS does not make it B-LT: judged online
    assert second.reason is not None and second.reason.startswith("certificate revoked")
    assert second.revocation == "revoked"
    assert r.returncode == 1, r.stdout + r.stderr
    assert "INVALID PAdES-B-T signature in field Signature2" in r.stdout
    # With the CA out of reach nothing shows the revocation, and nothing shows the signer good.
    [_, unreachable] = await verify_pdf(forged, pki.trust(revocation="hard-fail"))
    assert not unreachable.valid and unreachable.level == "PAdES-B-T"


@contextlib.asynccontextmanager
async def _recording_proxy(pki: TestPKI, log: list[str]) -> AsyncIterator[str]:
    """The PKI's CRL/OCSP server on the port its certificates name, and a TSA at ``/tsa``, both
    behind one proxy that logs each request as it comes ("tsa", or "ocsp <serial>"); yields the
    TSA's URL."""
    port = urlsplit(pki.base_url).port
    async with (
        serve_pki(pki, port=0) as crl_ocsp,
        serve_tsa(pki.directory) as tsa,
        aiohttp.ClientSession() as session,
    ):

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            if request.path == "/tsa":
                log.append("tsa")
                target = tsa
            else:
                if request.path == "/ocsp":
                    log.append(f"ocsp {ocsp.load_der_ocsp_request(body).serial_number}")
                target = crl_ocsp + request.path_qs
            headers = {"Content-Type": request.headers.get("Content-Type", "")}
            async with session.request(request.method, target, data=body, headers=headers) as r:
                return web.Response(body=await r.read(), status=r.status, headers=r.headers)

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            yield f"http://127.0.0.1:{port}/tsa"
        finally:
            await runner.cleanup()


async def test_b_lt_revocation_data_is_fetched_after_the_timestamp(pki: TestPKI) -> None:
    # It was fetched before the signature was made, so before its timestamp: never fresh.
    log: list[str] = []
    async with _recording_proxy(pki, log) as tsa:
        signed = await sign_pdf(PDF, pki.key(SIGNER), level="B-LT", tsa_url=tsa, trust=pki.trust())
    signer_ocsp = f"ocsp {pki.certificate(SIGNER).serial_number}"
    assert "tsa" in log and signer_ocsp in log[log.index("tsa") :], log
    async with serve_pki(pki):
        [report] = await verify_pdf(signed, pki.trust(revocation="hard-fail"))
    assert report.valid and report.level == "PAdES-B-LT" and report.revocation == "good"
