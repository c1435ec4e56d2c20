"""The outbox's log lines keep of a registry's words what the audit log keeps: no personal id.

Found by probing: a civil-status refusal ("death of 040042102222 already registered") reached the
gateway's JSON log whole (``outbox: job 14 is dead: …``), while its audit event said "[number
withheld]". Both now keep the registry's code, not its words (which can name a person and their
birth date too). The dossier's own view (the step's error) keeps the registry's words.
"""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from connectors.api import Endpoint
from connectors.population.client import PopulationConnector
from connectors.population.sandbox import BCA
from connectors.population.sandbox import SANDBOX_OFFICER_ID as OFFICER
from connectors.sandboxes import serve_app
from connectors.soap import SoapFault, fault_bytes
from gateway.outbox import Job, RetryPolicy, Worker, enqueue
from gateway.outbox.testing import ManualClock, ScriptedHandler, audit_entries
from gateway.store import SQLiteStore

PID = "040042102222"
LOOKUP = {"personal_id": "026092008262", "full_name": "A B", "birth_date": "1992-01-01"}


@pytest.mark.parametrize(("fault", "outcome"), [("Client", "dead"), ("Server", "retry")])
async def test_a_registrys_fault_is_logged_without_the_ids_it_quotes(
    store: SQLiteStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    outcome: str,
) -> None:
    said = f"death of {PID} already registered (KT.040.2026.000001)"

    async def refuse(request: web.Request) -> web.Response:
        body = fault_bytes(SoapFault(fault, "DA_DANG_KY", said), BCA)
        return web.Response(status=500, body=body, content_type="text/xml", charset="utf-8")

    app = web.Application()
    app.router.add_post("/soap", refuse)
    async with serve_app(app) as base:
        async with PopulationConnector(Endpoint(url=base + "/soap"), officer_id=OFFICER) as p:

            async def call(job: Job) -> None:
                await p.call("citizen.lookup", LOOKUP)

            handler = ScriptedHandler(call=call)
            worker = Worker(
                store, {"registry": handler}, clock=clock, policy=RetryPolicy(rng=lambda: 0.0)
            )
            await store.transact(
                lambda tx: enqueue(
                    tx,
                    kind="registry",
                    key="k1",
                    payload={"step": "death.register"},
                    dossier="000.00.00.H41-261122-0001",
                    now=clock(),
                )
            )
            with caplog.at_level(logging.INFO, logger="lienthong.outbox"):
                assert await worker.run_once() == 1

    [line] = [r for r in caplog.records if r.name == "lienthong.outbox" and "job" in r.msg]
    assert line.__dict__["outcome"] == outcome
    message = line.getMessage()
    # Since a refusal quoting a name and birth date was found there too: the registry's code,
    # not its words.
    assert PID not in message and "already registered" not in message, message
    assert message.endswith(
        "refused the request (code DA_DANG_KY)" if outcome == "dead" else "failed (code DA_DANG_KY)"
    ), message
    [event] = await audit_entries(store)
    assert PID not in event["detail"] and "already registered" not in event["detail"]
    assert "(code DA_DANG_KY)" in event["detail"]
    # The dossier's own view keeps the registry's words, as the registry said them.
    assert [said in f.error for f in handler.failures] == [True]
