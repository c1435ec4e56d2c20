"""The civil-status sandbox runs embedded on the gateway's own event loop (the demo, the tests,
the benches): checking a signed request's chain and preparing the birth certificate's signature
are CPU work (20-50 ms each), done in threads, so that the gateway it shares a loop with goes on
answering. Where the work runs is checked, not how long the loop waited."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import signing.pdf
from connectors.civil_status import CivilStatusConnector
from connectors.civil_status.sandbox import create_app, sandbox_endpoint
from signing.testing import TestPKI
from signing.trust import TrustStore
from tests.connectors.civil_status.test_civil_status_connector import BIRTH, pinned, serve


async def test_request_checks_and_certificate_signing_run_off_the_loop(
    pki: TestPKI, pki_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran_on: dict[str, set[int]] = {"chain": set(), "field": set()}
    register_trust = pki.trust()
    real_validate = register_trust.validate

    async def validate(*args: Any, **kwargs: Any) -> Any:
        ran_on["chain"].add(threading.get_ident())
        return await real_validate(*args, **kwargs)

    real_field = signing.pdf._free_field_name

    def free_field_name(data: bytes) -> str:
        ran_on["field"].add(threading.get_ident())
        return real_field(data)

    monkeypatch.setattr(register_trust, "validate", validate)  # the register's store alone
    monkeypatch.setattr(signing.pdf, "_free_field_name", free_field_name)
    app = create_app(
        seed=3,
        signer=pki.key("register"),
        trust=register_trust,
        callers=[pki.certificate("gateway")],
    )
    runner, url = await serve(app)
    try:
        endpoint = sandbox_endpoint(url, timeout=10.0, sign_requests=True)
        async with CivilStatusConnector(
            endpoint,
            signer=pki.key("gateway"),
            trust=TrustStore(pki.trust().anchors),
            register_fingerprints=pinned(pki),
        ) as c:
            result = await c.call("birth.register", BIRTH, idempotency_key="birth-off-loop")
    finally:
        await runner.cleanup()
    assert result.data["certificate_signer"]
    assert ran_on["chain"] and ran_on["field"], ran_on  # the request was checked, the PDF signed
    loop = threading.get_ident()
    assert loop not in ran_on["chain"], "the request's signer was checked on the event loop"
    assert loop not in ran_on["field"], "the certificate was read on the event loop"
