"""Mutual TLS: a client certificate from the PKI identifies a subsystem; an unknown certificate
or none at all is 401; a certificate from another CA does not get through the handshake."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.app import RUNTIME
from gateway.cli import _tls_context, build_app
from gateway.settings import Settings
from signing.testing import TestPKI, self_signed
from tests.e2e.conftest import gateway_config


def _fingerprint(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


async def _tls_settings(
    tmp_path: Path,
    pki: TestPKI,
    client_ca: Path | None = None,
    subsystems: list[dict[str, Any]] | None = None,
) -> tuple[Settings, Path]:
    """The gateway's settings with TLS (a server certificate of its own) and client_ca (the
    PKI's root unless given), and the server certificate for clients to trust."""
    server_cert, server_key = await asyncio.to_thread(
        self_signed, tmp_path, "gateway-tls", ip="127.0.0.1"
    )
    subject = "agency-000.00.00.H41"
    settings = gateway_config(
        tmp_path,
        pki.directory,
        gateway={"tls_cert": str(server_cert), "tls_key": str(server_key),
                 "client_ca": str(client_ca or pki.root_pem)},
        subsystems=subsystems or [
            {"id": "VN:GOV:000.00.00.H41:motcua", "cert_fingerprint": _fingerprint(pki.cert_path(subject)),
             "rights": ["lookups.citizen", "admin"]},
            {"id": "VN:GOV:000.00.00.H41:dev", "token": "dev-token-0123456789", "rights": ["lookups.citizen"]},
            {"id": "VN:GOV:000.00.00.H41:stolen", "cert_fingerprint": _fingerprint(pki.cert_path("revoked")),
             "rights": ["lookups.citizen"]},
        ],
    )  # fmt: skip
    return settings, server_cert


@asynccontextmanager
async def _serving(settings: Settings, ctx: ssl.SSLContext | None) -> AsyncIterator[Any]:
    """The gateway of ``settings`` on a loopback port over ``ctx``: its URL and runtime."""
    app = build_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", app[RUNTIME]
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_gateway(tmp_path: Path, pki: TestPKI) -> Any:
    settings, server_cert = await _tls_settings(tmp_path, pki)
    async with _serving(settings, _tls_context(settings)) as (url, runtime):
        yield url, server_cert, runtime


def _client_ssl(
    server_cert: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server_cert))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


async def _lookup(
    url: str, ctx: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    from connectors.testdata import Population

    person = Population(0).citizen(0)
    body = {
        "personal_id": person.personal_id,
        "full_name": person.full_name,
        "birth_date": person.birth_date.isoformat(),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/lookups/citizen", json=body, ssl=ctx, headers=headers or {}) as r,
    ):
        return r.status, await r.json()


async def test_client_certificate_identifies_the_subsystem(tls_gateway: Any, pki: TestPKI) -> None:
    url, server_cert, runtime = tls_gateway
    subject = "agency-000.00.00.H41"
    status, body = await _lookup(
        url, _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
    )
    assert (status, body["match"]) == (200, True)
    rows = await runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    assert any(b'"subsystem":"VN:GOV:000.00.00.H41:motcua"' in bytes(r["entry"]) for r in rows)


async def test_no_or_unknown_certificate_is_401_and_tokens_still_work(
    tls_gateway: Any, pki: TestPKI
) -> None:
    url, server_cert, _ = tls_gateway
    status, problem = await _lookup(url, _client_ssl(server_cert))
    assert (status, problem["type"]) == (401, "urn:lienthong:problem:unauthenticated")
    other = "agency-000.00.11.H53"  # a valid certificate of the PKI, but no subsystem has it
    status, problem = await _lookup(
        url, _client_ssl(server_cert, pki.cert_path(other), pki.key_path(other))
    )
    assert (status, problem["type"]) == (401, "urn:lienthong:problem:unauthenticated")
    status, _ = await _lookup(
        url, _client_ssl(server_cert), {"Authorization": "Bearer dev-token-0123456789"}
    )
    assert status == 200


async def test_certificate_from_another_ca_fails_the_handshake(
    tls_gateway: Any, tmp_path: Path
) -> None:
    url, server_cert, _ = tls_gateway
    rogue_cert, rogue_key = await asyncio.to_thread(self_signed, tmp_path, "rogue-client")
    with pytest.raises(aiohttp.ClientError):
        await _lookup(url, _client_ssl(server_cert, rogue_cert, rogue_key))


async def test_a_revoked_client_certificate_is_refused(
    tls_gateway: Any, pki: TestPKI, pki_server: str
) -> None:
    """Found by probing: the handshake checks the chain and the dates against client_ca, not the
    CA's CRL or OCSP, and a revoked certificate mapped to a subsystem was served (200)."""
    url, server_cert, runtime = tls_gateway
    status, problem = await _lookup(
        url, _client_ssl(server_cert, pki.cert_path("revoked"), pki.key_path("revoked"))
    )
    assert (status, problem["type"]) == (401, "urn:lienthong:problem:unauthenticated"), problem
    assert "revoked" in problem["detail"], problem
    rows = await runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    assert not any(b"stolen" in bytes(r["entry"]) for r in rows)  # nothing was done for it


async def test_an_unknown_revocation_status_is_asked_again_only_after_a_minute(
    tls_gateway: Any, pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No CRL/OCSP server here: under soft-fail the client is served, and the status the CA's
    server could not give is not asked for again on every request (each ask waits for its
    fetch timeout)."""
    url, server_cert, runtime = tls_gateway
    trust = runtime.extras["signing"].clients.trust
    asked = []
    validate = trust.validate

    async def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        return await validate(*args, **kwargs)

    monkeypatch.setattr(trust, "validate", counting)
    subject = "agency-000.00.00.H41"
    ctx = _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
    for _ in range(3):
        status, _ = await _lookup(url, ctx)
        assert status == 200
    assert len(asked) == 1


async def _dead_job(runtime: Any) -> int:
    from gateway.outbox import enqueue
    from gateway.store import Tx

    def unit(tx: Tx) -> int:
        job_id = enqueue(tx, kind="callback", key="csrf/1", payload={"code": "D-1", "version": 1})
        assert job_id is not None
        tx.all("outbox.claim", owner="w/1", now=10**10, lease=1, limit=1)
        tx.execute("outbox.bury", id=job_id, owner="w/1", error="PermanentError: 410", now=1.0)
        return job_id

    job_id: int = await runtime.store.transact(unit)
    return job_id


async def test_a_cross_site_request_is_refused_whoever_the_certificate_names(
    tls_gateway: Any, pki: TestPKI
) -> None:
    """Found by probing: the replay and resume routes read no body, so nothing refused a form
    another web site made an operator's browser post, with the operator's client certificate
    (SameSite does not apply to it): dead jobs were replayed and stopped dossiers resumed, audited
    as the operator's own. Now any request that changes state and that a browser says comes
    from another site is 403; the gateway's own pages and clients that are no browser pass."""
    url, server_cert, runtime = tls_gateway
    subject = "agency-000.00.00.H41"
    ctx = _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
    job_id = await _dead_job(runtime)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = [
        {**form, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {**form, "Origin": "https://evil.example"},  # a browser without Sec-Fetch-Site
        {**form, "Origin": "null"},  # a sandboxed frame's
        {**form, "Sec-Fetch-Site": "same-site"},  # a sibling host of the same domain
    ]

    async with aiohttp.ClientSession() as http:

        async def post(path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            async with http.post(url + path, data="a=b", headers=headers, ssl=ctx) as r:
                return r.status, await r.json()

        for headers in forged:
            for path in (f"/v1/admin/outbox/{job_id}/replay", "/v1/dossiers/X-1/resume"):
                status, problem = await post(path, headers)
                assert (status, problem["type"]) == (
                    403,
                    "urn:lienthong:problem:cross-site-request",
                ), (headers, problem)
        job = await runtime.store.read(lambda tx: tx.one("outbox.get", id=job_id))
        assert job["state"] == "dead"
        # A JSON write route too: the rule is the gateway's, not each route's.
        async with http.post(url + "/v1/lookups/citizen", json={}, headers=forged[0], ssl=ctx) as r:
            assert r.status == 403

        # The gateway's own page (the console's fetch: same origin), and a client that is no
        # browser (no Origin, no Sec-Fetch-Site), are served.
        own = {"Origin": url, "Sec-Fetch-Site": "same-origin"}
        status, body = await post(f"/v1/admin/outbox/{job_id}/replay", own)
        assert (status, body["state"]) == (200, "pending"), body
        status, problem = await post("/v1/dossiers/X-1/resume", {})
        assert status == 404, problem
        status, problem = await post("/v1/dossiers/X-1/resume", {"Origin": url})
        assert status == 404, problem


def _get_over(
    port: int, ctx: ssl.SSLContext, path: str, session: ssl.SSLSession | None = None
) -> tuple[int, bytes, ssl.SSLSession | None, bool]:
    """GET ``path`` on a connection of its own (blocking: run it in a thread), offering
    ``session`` for resumption: (status, body, the session to resume, whether it was)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body, tls.session, tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_resumed_tls_session_is_answered_as_the_full_handshake(
    tls_gateway: Any, pki: TestPKI, pki_server: str, version: ssl.TLSVersion
) -> None:
    """Found by probing: on a resumed TLS session OpenSSL keeps no verified chain, and every
    request of an mTLS client that resumed its session (nginx in front, Java's and Go's clients,
    browsers, curl with several URLs) was a 500. Now answered as on the full handshake: served for
    a good certificate, 401 for a revoked one (its revocation still checked on every request)."""
    url, server_cert, _ = tls_gateway
    port = int(url.rsplit(":", 1)[1])
    for subject, path, wanted in (
        ("agency-000.00.00.H41", "/v1/admin/outbox", 200),
        ("revoked", "/v1/lookups/enterprises/0100109106", 401),
    ):
        ctx = _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
        ctx.maximum_version = version
        status, body, session, _ = await asyncio.to_thread(_get_over, port, ctx, path)
        assert status == wanted, body
        for _ in range(2):
            status, body, _, reused = await asyncio.to_thread(_get_over, port, ctx, path, session)
            assert status == wanted, body
            if wanted == 401:
                assert b"revoked" in body, body
            # TLS 1.2 resumes by session id from the server's cache; TLS 1.3 sessions come from
            # tickets, which the gateway does not issue (see _tls_context).
            assert reused == (version == ssl.TLSVersion.TLSv1_2)


async def test_a_session_resumed_from_a_ticket_never_passes_a_revoked_certificate(
    tmp_path: Path, pki: TestPKI, pki_server: str
) -> None:
    """A session resumed from a ticket brings back the client's certificate without the chain it
    sent (the gateway issues none, but a context of other options would): the certificate is
    still checked, and a revoked one refused, never served for want of its chain."""
    settings, server_cert = await _tls_settings(tmp_path, pki)
    ctx = _tls_context(settings)
    assert ctx is not None
    ctx.options &= ~ssl.OP_NO_TICKET
    ctx.num_tickets = 2
    async with _serving(settings, ctx) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        client = _client_ssl(server_cert, pki.cert_path("revoked"), pki.key_path("revoked"))
        path = "/v1/lookups/enterprises/0100109106"
        status, body, session, _ = await asyncio.to_thread(_get_over, port, client, path)
        assert status == 401, body
        status, body, _, reused = await asyncio.to_thread(_get_over, port, client, path, session)
        assert reused
        assert status == 401, body
        assert b"the client certificate is refused" in body, body


async def test_client_ca_may_be_the_issuing_intermediate_alone(
    tmp_path: Path, pki: TestPKI, pki_server: str
) -> None:
    """Found by probing: with client_ca naming the CA that issues the clients' certificates, an
    intermediate (not a self-signed root), every client certificate failed the handshake: the
    TLS verifier wanted a root, where the revocation check took client_ca as its anchors. Now
    both take what client_ca holds as trusted, as configured."""
    settings, server_cert = await _tls_settings(tmp_path, pki, client_ca=pki.intermediate_pem)
    async with _serving(settings, _tls_context(settings)) as (url, _):
        subject = "agency-000.00.00.H41"
        ctx = _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
        status, body = await _lookup(url, ctx)
        assert (status, body["match"]) == (200, True), body
        ctx = _client_ssl(server_cert, pki.cert_path("revoked"), pki.key_path("revoked"))
        status, problem = await _lookup(url, ctx)
        assert status == 401 and "revoked" in problem["detail"], problem
        rogue_cert, rogue_key = await asyncio.to_thread(self_signed, tmp_path, "rogue-client")
        with pytest.raises(aiohttp.ClientError):
            await _lookup(url, _client_ssl(server_cert, rogue_cert, rogue_key))


def _refused_handshake(port: int, ctx: ssl.SSLContext) -> str:
    """What a client whose certificate the gateway refuses is told: the error its TLS library
    raises (a TLS 1.3 client learns it on its first read, its handshake done on its side)."""
    with pytest.raises(ssl.SSLError) as refused:
        _get_over(port, ctx, "/healthz")
    return str(refused.value)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_certificate_refused_in_the_handshake_is_told_to_the_client_and_logged(
    tls_gateway: Any,
    pki: TestPKI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    version: ssl.TLSVersion,
) -> None:
    """Found by probing: a client certificate the handshake refused (expired, of another CA…)
    was told to nobody: the connection was closed without the TLS alert OpenSSL wrote (the
    client read an empty answer or an EOF), and the gateway logged nothing at any level. Now
    the client gets the alert, and the gateway logs a WARNING with OpenSSL's reason and the
    certificate's SHA-256, never its subject (a personal certificate's names its holder)."""
    url, server_cert, _ = tls_gateway
    port = int(url.rsplit(":", 1)[1])
    rogue_cert, rogue_key = await asyncio.to_thread(self_signed, tmp_path, "rogue-client")
    for cert, key, alert, reason, named in (
        (pki.cert_path("expired"), pki.key_path("expired"), "certificate expired",
         "certificate has expired", "lienthong test PKI"),  # its subject's O
        (rogue_cert, rogue_key, "unknown ca", "self-signed certificate", "rogue-client"),
    ):  # fmt: skip
        ctx = _client_ssl(server_cert, cert, key)
        ctx.maximum_version = version
        caplog.clear()
        told = await asyncio.to_thread(_refused_handshake, port, ctx)
        assert f"alert {alert}" in told, told
        refusals = [r for r in caplog.records if r.name == "lienthong.tls"]
        assert [r.levelname for r in refusals] == ["WARNING"], caplog.text
        line = refusals[0].getMessage()
        assert reason in line and _fingerprint(cert) in line, line
        assert named not in caplog.text, caplog.text


async def test_an_unmapped_certificate_is_told_so(tls_gateway: Any, pki: TestPKI) -> None:
    """Found by probing: a valid certificate no subsystem has got the 401 for no credential at
    all ("present a client certificate…") though one was presented. The 401 now says that the
    certificate presented, by its SHA-256 (what an operator maps), is not mapped."""
    url, server_cert, _ = tls_gateway
    other = "agency-000.00.11.H53"
    status, problem = await _lookup(
        url, _client_ssl(server_cert, pki.cert_path(other), pki.key_path(other))
    )
    assert (status, problem["type"]) == (401, "urn:lienthong:problem:unauthenticated")
    fingerprint = _fingerprint(pki.cert_path(other))
    assert fingerprint in problem["detail"], problem
    assert "is not mapped to a subsystem" in problem["detail"], problem
    status, problem = await _lookup(url, _client_ssl(server_cert))
    assert problem["detail"] == "present a client certificate or an Authorization: Bearer token"


async def test_a_subsystem_renewing_its_certificate_is_known_by_both(
    tmp_path: Path, pki: TestPKI
) -> None:
    """Found by probing: one cert_fingerprint per subsystem, so a client renewing its certificate
    was locked out until the gateway restarted with the new one at the moment it switched. A
    list is taken: the old and the new certificate both identify the subsystem meanwhile."""
    old, new = "agency-000.00.00.H41", "agency-000.00.11.H53"
    motcua = {
        "id": "VN:GOV:000.00.00.H41:motcua",
        "cert_fingerprint": [_fingerprint(pki.cert_path(old)), _fingerprint(pki.cert_path(new))],
        "rights": ["admin"],
    }
    settings, server_cert = await _tls_settings(tmp_path, pki, subsystems=[motcua])
    async with _serving(settings, _tls_context(settings)) as (url, _):
        for subject in (old, new):
            ctx = _client_ssl(server_cert, pki.cert_path(subject), pki.key_path(subject))
            async with (
                aiohttp.ClientSession() as http,
                http.get(url + "/v1/admin/outbox", ssl=ctx) as r,
            ):
                assert r.status == 200, await r.text()
