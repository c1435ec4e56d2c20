"""What a stopped step says: its error is stored alike on either store, whatever the registry's
words hold, and never empty."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from connectors.insurance.sandbox import PASSWORD, USERNAME, create_app
from connectors.sandboxes import serve_app
from gateway.outbox import list_jobs
from tests.e2e.conftest import Gateway
from tests.e2e.test_flows import _step, dossiers

RETRY = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}
STOPPED = {"failed", "needs_attention", "completed"}


@asynccontextmanager
async def insurance_in_maintenance() -> AsyncIterator[dict[str, Any]]:
    """The BHXH sandbox behind a proxy that answers every card issue 503 with a page holding a
    NUL byte (a binary or mis-encoded error page): the gateway's ``[registries.insurance]``."""

    @web.middleware
    async def maintenance(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/api/egw/CapTheTreEm":
            body = b"Service Unavailable\x00 (maintenance)"
            return web.Response(status=503, body=body, content_type="text/plain")
        return await handler(request)

    app = create_app(seed=0)
    app.middlewares.append(maintenance)
    async with serve_app(app) as url:
        yield {
            "url": url,
            "username": USERNAME,
            "password": PASSWORD,
            "officer_name": "Cán Bộ",
            "officer_id": "040088101111",
            "timeout_s": 2.0,
            "retry": RETRY,
        }


async def test_a_registry_error_holding_a_nul_stops_the_flow_on_either_store(
    make_gateway: Any, store_section: dict[str, str]
) -> None:
    """Found by probing: on PostgreSQL the step's error (the registry's page, with its NUL) could
    not be stored; the job died while the dossier said in_progress for ever, with no history, no
    callback, and a resume refused (409: not stopped). SQLite kept and showed the raw NUL."""
    async with (
        insurance_in_maintenance() as insurance,
        make_gateway(store=store_section, registries={"insurance": insurance}) as gw,
    ):
        doc = dossiers(1, death_share=0)[0]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], STOPPED)
        assert view["status"] == "failed", view
        card = _step(view, "issue_health_card")
        assert card["status"] == "failed", card
        assert "maintenance" in card["error"] and "\x00" not in card["error"], card
        assert [(h["outcome"], "\x00" in h["error"]) for h in card["history"]] == [
            ("retry", False),
            ("dead", False),
        ], card
        # Stopped where an operator sees it: it can be resumed.
        await resume(gw, doc["code"])


async def resume(gw: Gateway, code: str) -> None:
    async with await gw.post(f"/v1/dossiers/{code}/resume", None, who="operator") as r:
        assert r.status == 202, await r.text()


async def test_an_attempt_the_worker_cuts_says_so(make_gateway: Any) -> None:
    """Found by probing: a registry slower than the outbox worker's bound on an attempt (300 s,
    above which a registry's timeout_s is now refused) stopped the flow with an empty error, on
    the step and in its history. The bound is lowered here, to be reached in a test."""
    async with make_gateway(
        registries={"insurance": {"timeout_s": 2.0, "retry": RETRY}},
        sandbox={"faults": {"insurance": {"timeout_rate": 1.0, "hang_s": 5.0}}},
    ) as gw:
        gw.runtime.worker.run_timeout = 0.3
        doc = dossiers(1, death_share=0)[0]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], STOPPED)
    card = _step(view, "issue_health_card")
    assert (view["status"], card["status"]) == ("failed", "failed"), view
    assert "0.3 s" in card["error"] and "outbox worker" in card["error"], card
    assert [h["error"] for h in card["history"]] == [card["error"]] * 2, card


class Timeouts:
    """A registry connector whose card issues fail with a TimeoutError that says nothing."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector

    async def call(self, operation: str, params: Any, **kw: Any) -> Any:
        if operation == "card.issue_newborn":
            raise TimeoutError
        return await self.connector.call(operation, params, **kw)


async def test_an_error_without_words_is_named_by_its_kind(make_gateway: Any) -> None:
    async with make_gateway(registries={"insurance": {"timeout_s": 2.0, "retry": RETRY}}) as gw:
        gw.runtime.connectors["insurance"] = Timeouts(gw.runtime.connectors["insurance"])
        doc = dossiers(1, death_share=0)[0]
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], STOPPED)
    card = _step(view, "issue_health_card")
    assert (view["status"], card["error"]) == ("failed", "TimeoutError"), card
    assert [h["error"] for h in card["history"]] == ["TimeoutError"] * 2, card


async def test_a_step_given_up_after_give_up_after_s_says_so_on_the_dossier(
    make_gateway: Any, store_section: dict[str, str]
) -> None:
    """Found by reading the give-up change: a flow step's job given up after ``[outbox]
    give_up_after_s`` of failing had its job's last_error say "given up: failing for …", but the
    dossier's step (its error, its history's last entry, and so the callback's document) said
    only the registry's last error, as after any death: "BHXH failed every call for three days"
    read as "BHXH refused a few times". Attempts enough that only the time can end it here."""
    many = {"max_attempts": 1000, "base_delay_s": 0.01, "max_delay_s": 0.05, "jitter": 0.0}
    hook = "http://127.0.0.1:8999/hook"  # nobody listens: only its frozen document is read
    async with insurance_in_maintenance() as insurance:
        insurance["retry"] = many
        async with make_gateway(
            store=store_section,
            registries={"insurance": insurance},
            outbox={"give_up_after_s": 0.5},
            callback_urls=[hook],
        ) as gw:
            doc = dossiers(1, death_share=0, callback_url=hook)[0]
            async with await gw.post("/v1/dossiers", doc) as r:
                assert r.status == 202, await r.text()
            view = await gw.wait_status(doc["code"], STOPPED)
            callbacks = [
                j.payload["document"]
                for j in await gw.runtime.store.read(lambda tx: list_jobs(tx, limit=1000))
                if j.kind == "callback"
            ]
    assert view["status"] == "failed", view
    card = _step(view, "issue_health_card")
    assert card["status"] == "failed", card
    error = card["error"]
    assert error.startswith("given up: failing for "), card
    assert "since its first failed try (" in error and " failed tries; " in error, card
    assert "[outbox] give_up_after_s = 0.5); last error: " in error, card
    # The registry's own words, as the dossier keeps them (the job's last_error keeps its code).
    assert error.endswith("maintenance)"), card
    outcomes = [h["outcome"] for h in card["history"]]
    assert outcomes[-1] == "dead" and set(outcomes[:-1]) == {"retry"}, card
    assert card["history"][-1]["error"] == error, card
    assert not any("given up" in h["error"] for h in card["history"][:-1]), card
    # The callback telling the client of the failure carries the same step.
    told = max(callbacks, key=lambda d: d["version"])
    assert told["status"] == "failed" and _step(told, "issue_health_card") == card, told
