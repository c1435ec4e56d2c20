"""Server processes for the benches, and the harness that starts and stops them.

Each server runs in its own process (``python -m bench._servers <role> …``), binds a free port on
127.0.0.1 and prints one line ``READY <base url>`` on stdout; it runs until SIGTERM. Roles:

- ``sandbox <registry> [--seed S] [--citizens N]``: one registry sandbox (``create_app``);
- ``proxy <upstream base url>``: a bare pass-through — forwards method, path, body and headers
  (minus hop-by-hop ones and ``Host``) to the upstream over a keep-alive pool and streams the
  answer back: the extra HTTP hop of a gateway, doing no work;
- ``tsa <pki dir>``: the development TSA of a test PKI (``signing.timestamps.serve_tsa``), for
  the gateway's signed audit checkpoints;
- ``gateway <lienthong.toml> [--log-level L] [--profile FILE]``: the gateway as ``lienthong
  serve`` runs it (``build_app``, JSON access logs at INFO to stderr), on a free port; with
  ``--profile``, cProfile stats of everything after READY are written to FILE on SIGTERM.

:func:`server_process` starts one and yields it as a :class:`Server` (its URL, and its pid for
:func:`cpu_seconds`); the process is terminated (then killed) on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

__all__ = ["Server", "cpu_seconds", "server_process"]

ROOT = Path(__file__).resolve().parent.parent

# RFC 9110 §7.6.1 connection-specific fields, plus what the client library recomputes itself.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


# --- the harness (runs in the bench process) -------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:<port>
    pid: int


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far; None where ``/proc`` cannot
    tell (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextlib.asynccontextmanager
async def server_process(
    *args: str,
    log: Path | None = None,
    start_timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Server]:
    """Run ``python -m bench._servers *args`` and yield it once it is READY.

    stderr goes to ``log`` (or is discarded); ``env`` adds to (or overrides) the environment. Raises RuntimeError if the server exits or stays
    silent before it is ready; the process is stopped in every case.
    """
    stderr = log.open("ab") if log is not None else None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._servers",
        *args,
        cwd=str(ROOT),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
        # The gateway reads LIENTHONG_* overrides: only the bench's config may configure it.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")},
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), start_timeout)
        except TimeoutError:
            raise RuntimeError(f"server {args[0]} not ready after {start_timeout:.0f} s") from None
        text = line.decode().strip()
        if not text.startswith("READY "):
            why = ""
            if log is not None and stderr is not None:
                stderr.flush()
                await asyncio.sleep(0.2)  # let the child finish writing its traceback
                text = await asyncio.to_thread(log.read_text, errors="replace")
                why = ": " + " | ".join(text.strip().splitlines()[-3:])
            raise RuntimeError(f"server {' '.join(args[:2])} failed to start{why}")
        yield Server(text.split(" ", 1)[1], proc.pid)
    finally:
        await _stop(proc)
        if stderr is not None:
            stderr.close()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# --- the servers (run in their own processes) ------------------------------------------------


def _proxy_app(upstream: str) -> web.Application:
    upstream = upstream.rstrip("/")
    session_key = web.AppKey("session", ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = TCPConnector(limit=0, keepalive_timeout=60)
        async with ClientSession(
            connector=connector, timeout=ClientTimeout(total=30), auto_decompress=False
        ) as session:
            app[session_key] = session
            yield

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with request.app[session_key].request(
            request.method,
            upstream + request.rel_url.raw_path_qs,
            data=body,
            headers=headers,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP:
                    response.headers.add(name, value)
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def _sandbox_app(registry: str, seed: int, citizens: int | None) -> web.Application:
    import importlib

    module = importlib.import_module(f"connectors.{registry}.sandbox")
    options = {"seed": seed}
    if citizens is not None:
        options["citizens"] = citizens
    app: web.Application = module.create_app(**options)
    return app


def _gateway_app(config: Path, log_level: str) -> web.Application:
    from gateway.cli import build_app
    from gateway.logs import configure_logging
    from gateway.settings import load_settings

    configure_logging(log_level)
    return build_app(load_settings(config))


async def _serve(app: web.Application, profile: Path | None = None) -> None:
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY http://127.0.0.1:{port}", flush=True)
        # The sandbox's 4,000 citizens and the proxy's pool outlive every request: frozen out of
        # the collector, as the gateway freezes its own start-up heap, so that no server's full
        # collections (50-150 ms measured in the sandbox) land at random in some target's tail.
        gc.freeze()
        if profiler is not None:
            profiler.enable()
        await stop.wait()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        await runner.cleanup()


async def _serve_tsa(pki_dir: Path) -> None:
    """The TSA, and the test PKI's CRLs and OCSP, as a real TSA's CA answers them: unanswered,
    the gateway's check of each checkpoint's token found the TSA's revocation status unknown,
    kept that verdict only ``failed_fetch_ttl`` (30 s) and validated the TSA's path again."""
    from signing.testing import TestPKI, serve_pki
    from signing.timestamps import serve_tsa

    pki = await asyncio.to_thread(TestPKI.load, pki_dir)
    async with serve_tsa(pki_dir) as url, serve_pki(pki):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {url}", flush=True)
        await stop.wait()


def _main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._servers")
    roles = parser.add_subparsers(dest="role", required=True)
    sandbox = roles.add_parser("sandbox")
    sandbox.add_argument("registry")
    sandbox.add_argument("--seed", type=int, default=0)
    sandbox.add_argument("--citizens", type=int, default=None)
    proxy = roles.add_parser("proxy")
    proxy.add_argument("upstream")
    tsa = roles.add_parser("tsa")
    tsa.add_argument("pki", type=Path)
    gateway = roles.add_parser("gateway")
    gateway.add_argument("config", type=Path)
    gateway.add_argument("--log-level", default="INFO")
    gateway.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    if args.role == "tsa":
        asyncio.run(_serve_tsa(args.pki))
        return
    if args.role == "sandbox":
        app = _sandbox_app(args.registry, args.seed, args.citizens)
    elif args.role == "proxy":
        app = _proxy_app(args.upstream)
    else:
        app = _gateway_app(args.config, args.log_level)
    asyncio.run(_serve(app, getattr(args, "profile", None)))


if __name__ == "__main__":
    _main(sys.argv[1:])
