"""``lienthong serve`` as a child process for a test: started, waited for until ready, stopped."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

LIENTHONG = str(Path(sys.executable).with_name("lienthong"))


@asynccontextmanager
async def serving(
    config: Path, port: int, log: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """``lienthong serve --config CONFIG`` (listening on ``port``, its stderr in ``log``) until the
    block ends, once its /readyz answers 200 (at most 60 s): its base URL. Stopped as an operator
    would (SIGINT), killed if it has not stopped within 30 s."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            LIENTHONG, "serve", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):
                try:
                    async with http.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.returncode is None, _text(log)
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"serve never became ready: {_text(log)}")
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _text(log: Path) -> str:  # what a failed start said, for the assertion's message
    return log.read_text("utf-8", errors="replace")
