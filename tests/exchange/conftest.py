"""Fixtures for the exchange tests: a throw-away PKI, realistic Vietnamese packages, signed PDFs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.exchange.blobs import BlobStore
from gateway.exchange.builder import NewAttachment, build_package
from gateway.exchange.hub import AgencyRoute, DocumentHub
from gateway.exchange.xmldsig import sign_bytes
from gateway.store import SQLiteStore
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf

from .factories import AGENCIES, NGHE_AN, TAY_NINH_STC, cong_van_header, trace_for


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def trust(pki: TestPKI) -> Any:
    # No CRL/OCSP server in unit tests; revocation is the signing package's concern.
    return pki.trust(revocation="off")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A second PKI the hub does not trust (an impostor's certificates)."""
    return TestPKI.create(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture(scope="session")
def key(pki: TestPKI) -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def get(agency: str) -> Any:
        if agency not in cache:
            cache[agency] = pki.key(f"agency-{agency}" if agency[0].isdigit() else agency)
        return cache[agency]

    return get


@pytest.fixture(scope="session")
def signed_pdf(pki: TestPKI) -> bytes:
    pdf = sample_pdf("Cong van 2491/STC-BCTC")
    return asyncio.run(sign_pdf(pdf, pki.key(f"agency-{TAY_NINH_STC}")))


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def make_package(key: Callable[[str], Any], signed_pdf: bytes) -> Callable[..., bytes]:
    """A signed package; keyword arguments change the sender, recipients, attachments, signer."""

    def make(
        sender: str = TAY_NINH_STC,
        to: tuple[str, ...] = (NGHE_AN,),
        attachments: list[NewAttachment] | None = None,
        signer: str | None = None,
        signed: bool = True,
        number: str = "2491",
        doc_type: int = 0,
    ) -> bytes:
        header = cong_van_header(sender, to, number)
        if attachments is None:
            attachments = [NewAttachment("2491_STC-BCTC.pdf", signed_pdf, description="Công văn")]
        data = build_package(header, trace_for(header, doc_type), attachments)
        return sign_bytes(data, key(signer or sender)) if signed else data

    return make


@pytest.fixture
async def hub(tmp_path: Path, pki: Any, trust: Any) -> AsyncIterator[DocumentHub]:
    async with SQLiteStore(tmp_path / "hub.db") as store:
        yield DocumentHub(
            store,
            BlobStore(tmp_path / "blobs"),
            organ_id="000.00.00.G22",
            agencies={a: AgencyRoute(a) for a in AGENCIES},
            trust=trust,
            signer=pki.key("gateway"),
        )
