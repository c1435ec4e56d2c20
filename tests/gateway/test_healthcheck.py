"""The container image's HEALTHCHECK follows the configuration: it asks /healthz at the configured
listen address (the image's LIENTHONG_GATEWAY_LISTEN, 0.0.0.0:PORT, reached on loopback) and over
HTTPS when [gateway] tls_cert is set. Found by probing: it asked http://127.0.0.1:8080/healthz,
so a TLS gateway, or one on another port, was unhealthy for its whole life."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli import _tls_context, build_app
from gateway.healthcheck import check, main, probe_url
from gateway.settings import load_settings, settings_from_mapping
from signing.testing import TestPKI, free_port, self_signed

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _joined(text: str) -> str:
    """The Dockerfile's instructions one a line: its continued lines joined."""
    return re.sub(r" *\\\n *", " ", text)


def _image() -> tuple[list[str], dict[str, str]]:
    """The HEALTHCHECK's command (exec form) and the image's ENV, as the Dockerfile gives them."""
    text = DOCKERFILE.read_text()
    found = re.search(r"^HEALTHCHECK(?: --\S+)* CMD (\[.*\])$", _joined(text), re.MULTILINE)
    assert found, "the HEALTHCHECK is not in exec form (CMD [...])"
    env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.MULTILINE)
    assert env_block
    pairs = re.findall(r"(\w+)=(\S+)", env_block[1].replace("\\\n", " "))
    return json.loads(found[1]), dict(pairs)


def _config(tmp_path: Path, pki: TestPKI, *, tls: bool) -> Path:
    gateway = ""
    if tls:
        cert, key = self_signed(tmp_path, "gateway-tls", ip="127.0.0.1")
        gateway = f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    path = tmp_path / "lienthong.toml"
    path.write_text(
        f'[gateway]\nlisten = "127.0.0.1:8080"\n{gateway}'
        f'[store]\nurl = "sqlite:///gw.db"\n[sandbox]\npki = "{pki.directory}"\n'
    )
    return path


async def _healthcheck(config: Path, port: int) -> tuple[int, str, str]:
    """The image's HEALTHCHECK command, run as the container runs it (its ENV, the gateway's
    listen address from LIENTHONG_GATEWAY_LISTEN), ``python`` being this interpreter."""
    command, env = _image()
    env = {**env, "LIENTHONG_CONFIG": str(config)}
    env["LIENTHONG_GATEWAY_LISTEN"] = env["LIENTHONG_GATEWAY_LISTEN"].replace(":8080", f":{port}")
    bin_dir = str(Path(sys.executable).parent)  # `python` on PATH, as in the image
    path = f"{bin_dir}:{os.environ.get('PATH', '')}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**base, **env, "PATH": path, "HTTPS_PROXY": "http://127.0.0.1:9"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, pki: TestPKI
) -> AsyncIterator[tuple[Path, int]]:
    """A gateway serving as `serve` does (TLS when the test's parameter says so), on a free port."""
    config = await asyncio.to_thread(_config, tmp_path, pki, tls=request.param == "tls")
    settings = load_settings(config, environ={})
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_tls_context(settings))
    await site.start()
    try:
        yield config, runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("gateway", ["tls", "plain"], indirect=True)
async def test_the_image_healthcheck_finds_the_gateway(gateway: tuple[Path, int]) -> None:
    config, port = gateway
    code, out, err = await _healthcheck(config, port)
    scheme = "https" if "tls_cert" in config.read_text() else "http"
    assert (code, out, err) == (0, f"healthy: {scheme}://127.0.0.1:{port}/healthz\n", "")


async def test_no_gateway_is_unhealthy_in_one_line(tmp_path: Path, pki: TestPKI) -> None:
    config = await asyncio.to_thread(_config, tmp_path, pki, tls=False)
    port = free_port()  # nothing listens there
    code, out, err = await _healthcheck(config, port)
    assert (code, out) == (1, "")
    assert err == f"unhealthy: http://127.0.0.1:{port}/healthz: no answer: Connection refused\n"


def test_a_bad_configuration_is_unhealthy_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text('[gateway]\nlisten = "127.0.0.1:8080"\nlistn = 1\n')
    assert main([str(config)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"unhealthy: {config}: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("listen", "tls", "url"),
    [
        ("0.0.0.0:8080", False, "http://127.0.0.1:8080/healthz"),
        (":8080", False, "http://127.0.0.1:8080/healthz"),
        (":::8443", True, "https://[::1]:8443/healthz"),
        ("10.0.0.5:8443", True, "https://10.0.0.5:8443/healthz"),
    ],
)
def test_the_probe_url_follows_the_listen_address_and_scheme(
    listen: str, tls: bool, url: str
) -> None:
    gateway: dict[str, str] = {"listen": listen}
    if tls:
        gateway |= {"tls_cert": "gw.pem", "tls_key": "gw.key"}
    assert probe_url(settings_from_mapping({"gateway": gateway}, environ={})) == url


def _healthcheck_options() -> dict[str, str]:
    found = re.search(r"^HEALTHCHECK((?: --\S+)*) CMD ", _joined(DOCKERFILE.read_text()), re.M)
    assert found
    return dict(re.findall(r"--([\w-]+)=(\S+)", found[1]))


def _seconds(duration: str) -> float:
    found = re.fullmatch(r"(\d+)(s|m)", duration)
    assert found, f"{duration}: not a duration in s or m"
    return int(found[1]) * (60 if found[2] == "m" else 1)


def test_the_healthcheck_allows_a_slow_first_start() -> None:
    """Found by probing: the HEALTHCHECK had no --start-period, so the probes failed during a slow
    first start (a store being created and migrated, a test PKI made) counted towards "unhealthy".
    Its timeout leaves the check its own (5 s) and an interpreter's start, so that a gateway too
    slow to answer is reported as such, in the check's own line, not killed as a hung check."""
    options = _healthcheck_options()
    assert _seconds(options["start-period"]) >= 60
    check_timeout = inspect.signature(check).parameters["timeout_s"].default
    assert _seconds(options["timeout"]) >= check_timeout + 5
    assert _seconds(options["interval"]) == 30  # as gateway.healthcheck says: every 30 seconds
    assert int(options["retries"]) >= 3
