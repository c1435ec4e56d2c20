"""What the connectors quote of a registry, and what they take from it and send it."""

from __future__ import annotations

import html

import pytest
from aiohttp import web

from connectors.api import Endpoint, PermanentError
from connectors.population.client import PopulationConnector
from connectors.population.sandbox import SANDBOX_OFFICER_ID as OFFICER
from connectors.sandboxes import serve_app

LOOKUP = {"personal_id": "026092008262", "full_name": "A B", "birth_date": "1992-01-01"}


async def _fault_for(faultstring: str, error_code: str) -> PermanentError:
    """What a lookup raises against a registry answering a Client fault with ``faultstring``
    and a detail whose MaLoi is ``error_code``, each ``{key}`` the ApiKey it was sent."""

    async def fault(request: web.Request) -> web.Response:
        key = request.headers["ApiKey"]
        body = (
            '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            'envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>'
            f"{html.escape(faultstring.format(key=key))}</faultstring><detail>"
            f'<LoiDichVu xmlns="urn:x"><MaLoi>{error_code.format(key=key)}</MaLoi></LoiDichVu>'
            "</detail></s:Fault></s:Body></s:Envelope>"
        )
        return web.Response(status=500, text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/soap", fault)
    async with serve_app(app) as base:
        endpoint = Endpoint(url=base + "/soap", username="u", secret="s", api_key="API-KEY-1234")
        async with PopulationConnector(endpoint, officer_id=OFFICER) as population_registry:
            with pytest.raises(PermanentError) as caught:
                await population_registry.call("citizen.lookup", LOOKUP)
    return caught.value


async def test_a_soap_fault_is_quoted_masked_and_cut() -> None:
    """Found by probing: a fault's text went into the error (a lookup's detail, a step's error)
    whole, whatever it echoed of the request and however long."""
    caught = await _fault_for("refused for ApiKey={key} " + "x" * 200_000, "E-{key}")
    assert caught.message.startswith("SOAP fault Client: refused for ApiKey=***"), caught.message
    assert len(caught.message) <= 200 and "API-KEY" not in caught.message, caught.message
    assert caught.code == "E-***"


async def test_a_soap_faults_own_code_still_comes_through() -> None:
    caught = await _fault_for("no such citizen", "KHONG_TIM_THAY")
    assert (caught.code, caught.message) == ("KHONG_TIM_THAY", "SOAP fault Client: no such citizen")
