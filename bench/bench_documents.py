"""Document exchange benchmark: documents/s and peak memory for 1 MB and 200 MB edXML packages.

Each package goes through the real HTTP path on a loopback socket: ``POST /v1/documents`` (stream
to a staged blob, expat scan with attachments decoded to blobs, XSD, streaming XMLDSig
verification, PDF signature checks, signed receipt, one transaction) and back out with
``GET /v1/documents/{id}`` (sendfile). Throughput is measured first without tracing; memory in a
second pass with tracemalloc (Python heap peak) and the kernel's peak RSS (VmHWM, reset through
/proc/self/clear_refs), each as growth over the level before the pass. Target: < 64 MB growth for a
200 MB package. Nothing is asserted: numbers are printed.

    .venv/bin/python -m bench.bench_documents [--small 40] [--large 1] [--large-mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api import documents as documents_api
from gateway.app import RUNTIME, Runtime, identify_middleware
from gateway.auth import Authenticator
from gateway.exchange.builder import FileAttachment, write_package
from gateway.exchange.model import (
    VN_TZ,
    Business,
    Code,
    DocumentType,
    MessageHeader,
    Organization,
    PromulgationInfo,
    TraceHeader,
    TraceHeaderList,
)
from gateway.exchange.xmldsig import sign_file
from gateway.keys import SigningSetup
from gateway.metrics import Metrics
from gateway.outbox.breaker import Breakers
from gateway.problems import problem_middleware
from gateway.requestid import request_id_middleware
from gateway.settings import settings_from_mapping
from gateway.store import SQLiteStore

__all__ = ["main"]

STC, UBND = "000.00.11.H53", "000.00.00.H41"
MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_packages(
    pki: Any, folder: Path, count: int, size: int, pdf: bytes, tag: str
) -> list[Path]:
    """``count`` signed packages of about ``size`` bytes: a signed PDF and a scan of the rest."""
    from datetime import date, datetime

    key = pki.key(f"agency-{STC}")
    pdf_path = folder / "cong-van.pdf"
    pdf_path.write_bytes(pdf)
    scan = folder / f"scan-{tag}.tif"
    with scan.open("wb") as f:
        # base64 in 76-character lines: 77 bytes on the wire for 57; keep room for the envelope.
        left = max(0, size * 57 // 77 - len(pdf) * 2 - 32 * 1024)
        while left:
            n = min(left, 4 * MB)
            f.write(os.urandom(n))
            left -= n
    out = []
    for i in range(count):
        doc_id = f"{STC},2026/11/22,{tag}{i}/STC-BCTC"
        header = MessageHeader(
            from_=Organization(STC, "Sở Tài chính tỉnh Tây Ninh"),
            to=(Organization(UBND, "UBND tỉnh Nghệ An"),),
            document_id=doc_id,
            code=Code(f"{tag}{i}", "STC-BCTC"),
            promulgation_info=PromulgationInfo("Tây Ninh", date(2026, 11, 22)),
            document_type=DocumentType(1, "Công văn"),
            subject="V/v gửi hồ sơ quyết toán kèm bản quét",
        )
        trace = TraceHeaderList(
            (TraceHeader(STC, datetime(2026, 11, 22, 9, tzinfo=VN_TZ)),), Business(doc_id, 0)
        )
        unsigned = folder / f"u-{tag}{i}.xml"
        with unsigned.open("wb") as f:
            write_package(
                f,
                header,
                trace,
                [
                    FileAttachment(pdf_path, "cong-van.pdf"),
                    FileAttachment(scan, "ban-quet.tif", "image/tiff"),
                ],
            )
        signed = folder / f"{tag}{i}.xml"
        sign_file(unsigned, signed, key)
        unsigned.unlink()
        out.append(signed)
    scan.unlink()
    return out


@asynccontextmanager
async def hub_server(pki: Any, folder: Path) -> AsyncIterator[str]:
    settings = settings_from_mapping(
        {
            "subsystems": [
                {
                    "id": f"VN:GOV:{STC}:vanban",
                    "token": "t-stc-0123456789",
                    "rights": ["documents.exchange"],
                },
                {
                    "id": f"VN:GOV:{UBND}:vanban",
                    "token": "t-ubnd-0123456789",
                    "rights": ["documents.exchange"],
                },
            ],
            "agencies": [{"id": STC}, {"id": UBND}],
        },
        base_dir=folder,
        environ={},
    )
    async with SQLiteStore(folder / "bench.db") as store:
        app = web.Application(
            middlewares=[request_id_middleware, problem_middleware, identify_middleware]
        )
        app[RUNTIME] = Runtime(
            settings=settings,
            store=store,
            metrics=Metrics(),
            auth=Authenticator(settings.subsystems),
            breakers=Breakers(),
            extras={
                "signing": SigningSetup(
                    signer=pki.key("gateway"), trust=pki.trust(revocation="off")
                ),
                "blob_dir": folder / "blobs",
            },
        )
        app.router.add_routes(documents_api.routes)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield str(server.make_url("")).rstrip("/")
        finally:
            await server.close()


async def _round_trip(http: aiohttp.ClientSession, url: str, path: Path) -> None:
    with path.open("rb") as body:
        async with http.post(
            url + "/v1/documents",
            data=body,
            headers={"Authorization": "Bearer t-stc-0123456789", "Content-Type": "application/xml"},
        ) as r:
            if r.status != 202:
                raise RuntimeError(f"{r.status}: {await r.text()}")
            doc = r.headers["X-Lienthong-Document"]
    async with http.get(
        f"{url}/v1/documents/{doc}", headers={"Authorization": "Bearer t-ubnd-0123456789"}
    ) as r:
        async for _ in r.content.iter_chunked(MB):
            pass


async def run_batch(url: str, paths: list[Path], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as http:

        async def one(p: Path) -> None:
            async with sem:
                await _round_trip(http, url, p)

        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in paths))
        return time.perf_counter() - start


async def measure(
    pki: Any, folder: Path, label: str, fast: list[Path], traced: list[Path], conc: int
) -> None:
    async with hub_server(pki, folder / f"hub-{label}") as url:
        elapsed = await run_batch(url, fast, conc)
        size = fast[0].stat().st_size
        print(
            f"   {label:>6}: {len(fast)} × {size / MB:6.1f} MB  {len(fast) / elapsed:7.2f} documents/s"
            f"  {len(fast) * size / MB / elapsed:7.1f} MB/s  (concurrency {conc})"
        )
        rss_ok = _reset_peak_rss()
        rss_before = _status_kb("VmRSS")
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        await run_batch(url, traced, 1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = (_status_kb("VmHWM") - rss_before) / 1024
        print(
            f"   {label:>6}: peak memory growth per package: Python heap {(peak - base) / MB:6.1f} MB"
            + (f", RSS {rss_growth:6.1f} MB" if rss_ok else ", RSS n/a")
            + "  (target < 64 MB)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_documents")
    parser.add_argument("--small", type=int, default=40, help="1 MB packages for documents/s")
    parser.add_argument("--large", type=int, default=1, help="large packages")
    parser.add_argument("--large-mb", type=int, default=200)
    args = parser.parse_args(argv if argv is not None else [])
    from signing.pdf import sign_pdf
    from signing.testing import TestPKI, sample_pdf

    with tempfile.TemporaryDirectory(prefix="bench-documents-") as tmp:
        folder = Path(tmp)
        pki = TestPKI.create(folder / "pki")
        pdf = asyncio.run(sign_pdf(sample_pdf("Cong van"), pki.key(f"agency-{STC}")))
        small = make_packages(pki, folder, args.small + 1, MB, pdf, "s")
        large = make_packages(pki, folder, args.large + 1, args.large_mb * MB, pdf, "l")
        asyncio.run(measure(pki, folder, "1 MB", small[:-1], small[-1:], 8))
        asyncio.run(measure(pki, folder, f"{args.large_mb} MB", large[:-1], large[-1:], 1))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
