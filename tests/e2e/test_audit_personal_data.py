"""What the permanent audit log keeps of the personal data a flow handles (Decree 13/2023).

The log is append-only, kept for ever and exported in every evidence bundle of a dossier: what
enters it cannot be erased. Found by probing: a newborn's health-insurance card number (whose
last 10 digits are the child's social-insurance code) was the ``reference`` of its
``issue_health_card`` step's ``step.delivered`` event, in clear, although a card lookup's own
event keeps only a keyed hash of what was asked (``params_hmac``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from gateway.audit import decode_entry
from tests.e2e.conftest import Gateway
from tests.e2e.test_flows import _step, dossiers


async def _events(gw: Gateway, code: str) -> list[dict[str, Any]]:
    rows = await gw.runtime.store.read(lambda tx: tx.all("audit.by_dossier", dossier=code))
    return [decode_entry(bytes(r["entry"])) for r in rows]


async def test_a_health_insurance_card_number_enters_the_audit_log_as_a_keyed_hash(
    gateway: Gateway,
) -> None:
    doc = dossiers(1, death_share=0)[0]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    view = await gateway.wait_status(doc["code"], {"completed", "failed", "needs_attention"})
    assert view["status"] == "completed", view
    card = _step(view, "issue_health_card")
    number = card["reference"]
    # The owning client's view keeps the card number, in the step and its history.
    assert number and number.startswith("TE"), card
    assert [h["reference"] for h in card["history"] if h["outcome"] == "delivered"] == [number]

    events = await _events(gateway, doc["code"])
    # By service: the portal's progress record of a step names that step too.
    delivered = {e.get("service"): e for e in events if e["action"] == "step.delivered"}
    issued = delivered["insurance/card.issue_newborn"]
    assert "reference" not in issued, issued
    key = gateway.runtime.citizen_key
    expected = hmac.new(key, number.encode(), hashlib.sha256).hexdigest()
    assert issued["digests"]["reference_hmac"] == expected
    # A registration number is no one's: kept as the registry gave it.
    registered = _step(view, "register_birth")["reference"]
    assert delivered["civil_status/birth.register"]["reference"] == registered
    # Nowhere in the log (from which every evidence bundle is built).
    social_insurance_code = number[-10:]
    rows = await gateway.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=10**6))
    assert [r["seq"] for r in rows if social_insurance_code.encode() in bytes(r["entry"])] == []
