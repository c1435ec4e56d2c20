"""A registry's reference holding a control character ends a dossier alike on either store: a
malformed reply, asked again, never a store error after the registry did the write (PostgreSQL
refused the NUL there: the dossier failed with a store error; SQLite completed it, the NUL kept
and shown to the client)."""

from __future__ import annotations

from typing import Any

from connectors.insurance.sandbox import PASSWORD, USERNAME
from tests.connectors.test_reply_reference import insurance_marking_references
from tests.e2e.test_flows import _step, dossiers

RETRY = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}


async def test_a_nul_in_a_card_number_is_a_malformed_reply_on_either_store(
    make_gateway: Any, store_section: dict[str, str]
) -> None:
    async with insurance_marking_references("\x00") as url:
        insurance = {
            "url": url,
            "username": USERNAME,
            "password": PASSWORD,
            "officer_name": "Cán Bộ",
            "officer_id": "040088101111",
            "timeout_s": 2.0,
            "retry": RETRY,
        }
        async with make_gateway(store=store_section, registries={"insurance": insurance}) as gw:
            doc = dossiers(1, death_share=0)[0]
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], {"failed", "needs_attention", "completed"})
    card = _step(view, "issue_health_card")
    assert view["status"] == "failed", view
    assert (card["status"], card["attempts"]) == ("failed", 2), card
    assert "malformed reply" in card["error"] and "control character" in card["error"], card
    assert card.get("reference") is None, card
