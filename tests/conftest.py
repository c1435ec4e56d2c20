"""Fixtures shared by every test package. Package-specific fixtures live in that package's conftest."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (screenshots, reports)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# ---- signing: shared test PKI, CRL/OCSP server and local TSA (owned by signing/) -------------
# `pki`: a TestPKI for the session (certificates carry CRL/OCSP URLs on a free loopback port).
# `pki_server`: serves those CRLs and OCSP for one test (revocation checks need it running;
#   without it, soft-fail reports "unknown (soft-fail)" and hard-fail refuses).
# `tsa_url`: a local RFC 3161 TSA signing with the PKI's `tsa` key, for one test.
# `stale_tsa_url`: a front for `tsa_url` replaying its first reply to every request, for one test.
# `trust_clock`: the trust store's caches' clock, moved by hand (``trust_clock.now += 31.0``).
@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from signing.testing import TestPKI, free_port

    return TestPKI.create(
        tmp_path_factory.mktemp("pki"), base_url=f"http://127.0.0.1:{free_port()}"
    )


# `pss`: the folder of an RSA-PSS key and certificate issued by `pki` (tests/signing/rsa_pss.py).
# Per module: some test folders have a `pki` of their own (tests/exchange), and a key issued by
# another's would chain to no root the module trusts.
@pytest.fixture(scope="module")
def pss(pki, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    from tests.signing.rsa_pss import make_pss

    return make_pss(pki, tmp_path_factory.mktemp("rsa-pss"))


@pytest.fixture
async def pki_server(pki):  # type: ignore[no-untyped-def]
    from signing.testing import serve_pki

    async with serve_pki(pki) as url:
        yield url


@pytest.fixture
async def tsa_url(pki):  # type: ignore[no-untyped-def]
    from signing.timestamps import serve_tsa

    async with serve_tsa(pki.directory) as url:
        yield url


@pytest.fixture
async def stale_tsa_url(tsa_url: str) -> AsyncIterator[str]:
    """A TSA (or a caching proxy before it) answering every request with the first reply it
    gave: the first request is answered rightly, every later one with another request's token.
    The TSA behind it is whichever `tsa_url` the test sees (audit's signs with its own PKI)."""
    import aiohttp
    from aiohttp import web

    replies: list[bytes] = []

    async def stale(request: web.Request) -> web.Response:
        body = await request.read()
        if not replies:
            async with aiohttp.ClientSession() as http:
                headers = {"Content-Type": "application/timestamp-query"}
                async with http.post(tsa_url, data=body, headers=headers) as r:
                    replies.append(await r.read())
        return web.Response(body=replies[0], content_type="application/timestamp-reply")

    app = web.Application()
    app.router.add_post("/", stale)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


class TrustClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def trust_clock(monkeypatch: pytest.MonkeyPatch) -> TrustClock:
    from signing import trust

    fake = TrustClock()
    monkeypatch.setattr(trust, "_monotonic", fake)
    return fake


@pytest.fixture
def path_validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """One item per certificate path the trust store validates (a CertificateValidator made)."""
    from signing import trust

    built: list[object] = []
    real = trust.CertificateValidator

    def counting(*args: object, **kwargs: object) -> object:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(trust, "CertificateValidator", counting)
    return built


# ---- end signing ------------------------------------------------------------------------------


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another socket is listening on, for "address already in use"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture
def debian_umask() -> Iterator[None]:
    """The umask most accounts have (022): files readable by every local user unless made so."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def file_mode(path: Path) -> int:
    """A file's permission bits (0o600: the owner's alone)."""
    return stat.S_IMODE(path.stat().st_mode)
