"""Signing cost beyond the raw key operation, RSA-2048 vs ECDSA P-256, side by side in one run.

Prints medians and ratios; never asserts times (a loaded machine is not a failure).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

from signing.pdf import sign_pdf
from signing.testing import SAMPLE_XML, new_pki, sample_pdf
from signing.xml import sign_xml_sync

TARGET_US = 150.0


def _median_us(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    fn()  # warm up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def main() -> None:
    pki = new_pki()
    doc = SAMPLE_XML + b""  # ~1.4 KB; pad to ~2 KB like a civil-status request
    doc = doc.replace(
        b"</edXML:edXMLBody>",
        b"<Pad>" + b"x" * (2048 - len(doc) - 11) + b"</Pad></edXML:edXMLBody>",
    )
    pdf = sample_pdf()
    print(f"bench_signing: XML document {len(doc)} bytes, PDF {len(pdf)} bytes")
    print(f"{'':28}{'RSA-2048':>14}{'ECDSA P-256':>14}")
    rows: dict[str, list[float]] = {}
    for subject in ("gateway", "agency-000.00.11.H53"):  # RSA-2048, ECDSA P-256
        key = pki.key(subject)
        raw = _median_us(lambda k=key: k.sign(doc), 200)
        xml = _median_us(lambda k=key: sign_xml_sync(doc, k), 200)

        async def pdf_once(k=key) -> None:
            await sign_pdf(pdf, k)

        pdf_us = _median_us(lambda: asyncio.run(pdf_once()), 10, rounds=3)
        rows.setdefault("raw key ops/s", []).append(1e6 / raw)
        rows.setdefault("XML docs signed/s", []).append(1e6 / xml)
        rows.setdefault("PDF docs signed/s", []).append(1e6 / pdf_us)
        rows.setdefault("XML µs beyond key op", []).append(xml - raw)
        rows.setdefault("PDF µs beyond key op", []).append(pdf_us - raw)
    for name, (r, e) in rows.items():
        print(f"{name:28}{r:>14,.0f}{e:>14,.0f}")
    for algo, extra in zip(("RSA-2048", "ECDSA P-256"), rows["XML µs beyond key op"], strict=True):
        verdict = "within" if extra < TARGET_US else "OVER"
        print(
            f"  {algo}: XML signing adds {extra:.0f} µs ({extra / TARGET_US:.2f}x the "
            f"{TARGET_US:.0f} µs target: {verdict}; signxml as it comes adds ~420 µs)"
        )


if __name__ == "__main__":
    main()
