"""SIGKILL the gateway while it waits for a register's answer to a write: the attempt it was making
is not forgotten when it comes back.

The civil-status register is a stand-in here: it keeps the first ``birth.register`` waiting (the
register may well have registered the birth: its answer is what is lost), and refuses every later
one with a proxy's 403. The restarted gateway must record the killed attempt — failed, its outcome
unknown — before the next, so that a correction changing what that write sent is refused (409),
as it is after a timeout: the 403 does not say the register lacks the first request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.sandboxes import serve_app
from gateway.samples import sample_dossiers
from signing.testing import TestPKI, free_port
from signing.timestamps import serve_tsa
from tests.faults.test_kill import LIENTHONG, TOKEN, _config, _start_gateway

pytestmark = pytest.mark.slow
ADMIN_TOKEN = "kill-test-admin-0123456789"


def _register_stand_in(asked: asyncio.Event, release: asyncio.Event) -> web.Application:
    """The first request is held until ``release`` (the gateway dies meanwhile); later ones get
    a 403 from "the proxy", which never passes them on."""
    seen = 0

    async def soap(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        await request.read()
        seen += 1
        if seen == 1:
            asked.set()
            await release.wait()
        return web.Response(status=403, text="Forbidden by the province's proxy")

    app = web.Application()
    app.router.add_post("/{tail:.*}", soap)
    return app


async def _dossier(http: aiohttp.ClientSession, base: str, code: str) -> dict[str, Any]:
    async with http.get(
        f"{base}/v1/dossiers/{code}", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
        return doc


async def test_a_write_whose_gateway_was_killed_is_remembered_as_unanswered(
    tmp_path: Path, pki: TestPKI, pki_server: str
) -> None:
    sandboxes = await asyncio.create_subprocess_exec(
        LIENTHONG, "sandbox", "serve", "--json", "--pki", str(pki.directory),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    gateway: asyncio.subprocess.Process | None = None
    asked, release = asyncio.Event(), asyncio.Event()
    try:
        assert sandboxes.stdout is not None
        urls = json.loads(await asyncio.wait_for(sandboxes.stdout.readline(), 60))["registries"]
        async with (
            serve_tsa(pki.directory) as tsa_url,
            serve_app(_register_stand_in(asked, release)) as register,
        ):
            port = free_port()
            config = _config(tmp_path, pki, {**urls, "civil_status": register}, tsa_url, port)
            with config.open("a", encoding="utf-8") as f:
                f.write(
                    f'\n[[subsystems]]\nid = "VN:GOV:000.00.00.H41:vanhanh"\n'
                    f'token = "{ADMIN_TOKEN}"\nrights = ["admin"]\n'
                )
            gateway = await _start_gateway(config, port)
            dossier = next(iter(sample_dossiers(1, seed=0, death_share=0.0)))  # the sandbox's seed
            code = dossier["code"]
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    base + "/v1/dossiers",
                    json=dossier,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as r:
                    assert r.status == 202
                await asyncio.wait_for(asked.wait(), 60)  # register_birth is waiting its answer
                os.kill(gateway.pid, signal.SIGKILL)
                assert await gateway.wait() == -signal.SIGKILL
                release.set()

                gateway = await _start_gateway(config, port)
                for _ in range(600):
                    doc = await _dossier(http, base, code)
                    if doc["status"] not in ("accepted", "in_progress"):
                        break
                    await asyncio.sleep(0.05)
                assert doc["status"] == "needs_attention", doc
                step = next(s for s in doc["steps"] if s["name"] == "register_birth")
                history = [
                    (h["attempt"], h["outcome"], h.get("error", "")) for h in step["history"]
                ]
                assert [(a, o) for a, o, _ in history] == [(1, "retry"), (2, "dead")], history
                assert "the gateway stopped during attempt 1" in history[0][2]
                assert "403" in history[1][2]

                renamed = {"reason": "tên sai chính tả", "data": {"child": {"full_name": "Nguyễn Bảo Ngọc"}}}  # fmt: skip
                async with http.patch(
                    f"{base}/v1/dossiers/{code}",
                    json=renamed,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as r:
                    body = await r.text()
                    assert r.status == 409, body
                    assert "answer was lost" in body
    finally:
        release.set()
        for proc in (gateway, sandboxes):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
