"""SIGKILL the gateway while deliveries are in flight; restart it; every accepted dossier is
delivered exactly once at the registries and the audit log still verifies.

The sandboxes run in their own process so that what they registered survives the gateway's death;
the gateway runs as `lienthong serve` in another, and is killed with SIGKILL (no cleanup at all).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes

from connectors.sandboxes import sandbox_endpoint
from gateway.samples import sample_dossiers
from signing.testing import TestPKI, free_port
from signing.timestamps import serve_tsa

LIENTHONG = str(Path(sys.executable).with_name("lienthong"))
TOKEN = "kill-test-token-0123456789"
COUNT = 40
pytestmark = pytest.mark.slow


def _config(tmp: Path, pki: TestPKI, urls: dict[str, str], tsa_url: str, port: int) -> Path:
    lines = [
        f'[gateway]\nlisten = "127.0.0.1:{port}"\n',
        f'[store]\nurl = "sqlite:///{tmp / "gateway.db"}"\n',
        f'[[subsystems]]\nid = "VN:GOV:000.00.00.H41:motcua"\ntoken = "{TOKEN}"\nrights = ["dossiers.submit"]\n',
        "[outbox]\nworkers = 8\nlease_s = 2.0\npoll_s = 0.05\n",
        f'[signing]\nkey = "{pki.key_path("gateway")}"\ncert = "{pki.cert_path("gateway")}"\n'
        f'trust = ["{pki.root_pem}"]\n',
        f'[audit]\ntsa_url = "{tsa_url}"\ncheckpoint_every = 50\ncheckpoint_interval_s = 0.5\n'
        f'citizen_id_key = "{os.urandom(32).hex()}"\n',
        "[sandbox]\nembedded = false\n",
    ]
    for name, url in urls.items():
        e = sandbox_endpoint(
            name, url
        )  # the sandbox's own credentials, as an operator configures them
        lines.append(
            f'[registries.{name}]\nurl = "{e.url}"\nusername = "{e.username}"\npassword = "{e.password}"\n'
            f'secret = "{e.secret}"\napi_key = "{e.api_key}"\nclient_id = "{e.client_id}"\ntimeout_s = 5.0\n'
            'officer_name = "Cán bộ một cửa"\nofficer_id = "040088101111"\nservice_code = "1.001193"\n'
            "retry = { max_attempts = 50, base_delay_s = 0.02, max_delay_s = 0.2 }\n"
        )
        if name == "civil_status":  # the register's certificate, which signs birth certificates
            register = pki.certificate("register").fingerprint(hashes.SHA256()).hex()
            lines.append(f'signer_fingerprint = "{register}"\n')
    path = tmp / "lienthong.toml"
    path.write_text("\n".join(lines))
    return path


async def _start_gateway(config: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        LIENTHONG, "serve", "--config", str(config), "--log-level", "WARNING",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise AssertionError(f"gateway exited with {proc.returncode}")
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("gateway did not become ready")


def _running_jobs(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(
            conn.execute("SELECT count(*) FROM outbox_jobs WHERE state = 'running'").fetchone()[0]
        )
    finally:
        conn.close()


async def _stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    root = "/".join(url.split("/")[:3])
    async with http.get(root + "/_sandbox/stats") as r:
        result: dict[str, Any] = await r.json()
        return result


async def test_sigkill_mid_delivery_then_restart_delivers_each_exactly_once(
    tmp_path: Path, pki: TestPKI, pki_server: str
) -> None:
    sandboxes = await asyncio.create_subprocess_exec(
        LIENTHONG, "sandbox", "serve", "--json", "--pki", str(pki.directory),
        "--faults", json.dumps({"latency_ms": 40}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    gateway: asyncio.subprocess.Process | None = None
    try:
        assert sandboxes.stdout is not None
        urls = json.loads(await asyncio.wait_for(sandboxes.stdout.readline(), 60))["registries"]
        async with serve_tsa(pki.directory) as tsa_url:
            port = free_port()
            config = _config(tmp_path, pki, urls, tsa_url, port)
            gateway = await _start_gateway(config, port)
            batch = list(sample_dossiers(COUNT, seed=0, death_share=0.4))
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{port}"
                results = await asyncio.gather(
                    *(http.post(base + "/v1/dossiers", json=d, headers=headers) for d in batch)
                )
                assert [r.status for r in results] == [202] * COUNT  # all accepted, durably
                for r in results:
                    r.release()
                for _ in range(400):  # kill while registry calls are in flight
                    if await asyncio.to_thread(_running_jobs, tmp_path / "gateway.db") > 0:
                        break
                    await asyncio.sleep(0.01)
                os.kill(gateway.pid, signal.SIGKILL)
                assert await gateway.wait() == -signal.SIGKILL
                done_at_kill = sum(
                    s["writes"].get("birth.register", 0) + s["writes"].get("death.register", 0)
                    for s in [await _stats(http, urls["civil_status"])]
                )
                assert done_at_kill < COUNT  # the kill really interrupted the work

                gateway = await _start_gateway(config, port)
                pending = {d["code"] for d in batch}
                for _ in range(1200):
                    for code in list(pending):
                        async with http.get(f"{base}/v1/dossiers/{code}", headers=headers) as r:
                            if (await r.json())["status"] in (
                                "completed",
                                "needs_attention",
                                "failed",
                            ):
                                pending.discard(code)
                    if not pending:
                        break
                    await asyncio.sleep(0.1)
                views = []
                for d in batch:
                    async with http.get(f"{base}/v1/dossiers/{d['code']}", headers=headers) as r:
                        views.append(await r.json())
                # A dossier that did not complete fails the test with its own account of why.
                unfinished = [v for v in views if v["status"] != "completed"]
                assert not unfinished, json.dumps(unfinished, ensure_ascii=False)[:4000]
                births = sum(1 for d in batch if d["flow"] == "birth")
                deaths = COUNT - births
                expected = {
                    "civil_status": {"birth.register": births, "death.register": deaths},
                    "population": {"residence.register": births, "residence.deregister": deaths},
                    "insurance": {"card.issue_newborn": births, "funeral.pay": deaths},
                }
                for name, writes in expected.items():
                    seen = (await _stats(http, urls[name]))["writes"]
                    assert {k: seen.get(k, 0) for k in writes} == writes, (name, seen)
            gateway.send_signal(signal.SIGTERM)
            await asyncio.wait_for(gateway.wait(), 30)
            verify = await asyncio.create_subprocess_exec(
                LIENTHONG, "audit", "verify", "--config", str(config), "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await verify.communicate()
            assert verify.returncode == 0, (out, err)
            assert json.loads(out)["ok"] is True
    finally:
        for proc in (gateway, sandboxes):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
