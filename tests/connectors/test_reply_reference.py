"""A registry's reference for what it did is written into the store as text: one holding a control
character (PostgreSQL refuses NUL in text; SQLite keeps it and shows it on) is a malformed reply,
for every registry, on either store, over a real socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from connectors.api import Connector, PermanentError, Request, Result, TransientError
from connectors.insurance.client import InsuranceConnector
from connectors.insurance.sandbox import create_app, endpoint
from connectors.sandboxes import serve_app

NEWBORN = {
    "personal_id": "040326001234",
    "full_name": "Trần Ngọc Ánh",
    "birth_date": "2026-11-15",
    "sex": "female",
    "province_code": "040",
}
_REFERENCES = {"/api/egw/CapTheTreEm": "maThe", "/api/egw/TroCapMaiTang": "maHoSo"}


@asynccontextmanager
async def insurance_marking_references(mark: str) -> AsyncIterator[str]:
    """The BHXH sandbox, its card number and funeral record number in every write's answer
    ending in ``mark``; yields its URL."""

    @web.middleware
    async def append(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        key = _REFERENCES.get(request.path)
        if key is None or not isinstance(response, web.Response) or response.body is None:
            return response
        answer = json.loads(bytes(response.body))  # type: ignore[arg-type]
        if answer.get(key):
            answer[key] += mark
        return web.json_response(answer, status=response.status)

    app = create_app(seed=0)
    app.middlewares.append(append)
    async with serve_app(app) as url:
        yield url


@pytest.mark.parametrize(
    "mark",
    ["\x00", "\x1b", "\n", "\x7f", "\x85"],
    ids=["nul", "escape", "newline", "delete", "c1-next-line"],
)
async def test_a_reference_with_a_control_character_is_a_malformed_reply(mark: str) -> None:
    async with (
        insurance_marking_references(mark) as url,
        InsuranceConnector(endpoint(url)) as bhxh,
    ):
        with pytest.raises(TransientError) as failed:
            await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="nb-1")
    assert "malformed reply" in failed.value.message
    assert "control character" in failed.value.message
    # The message names the reference escaped: it is itself stored, logged and shown.
    assert mark not in failed.value.message


async def test_a_plain_reference_is_taken() -> None:
    async with insurance_marking_references("") as url, InsuranceConnector(endpoint(url)) as bhxh:
        issued = await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="nb-1")
    assert issued.reference and issued.reference.isprintable()


class RefusedAfterWriting(Connector):
    """A registry that records the write, after which the call fails (the gateway refusing the
    answer's evidence), naming the reference it recorded."""

    registry = "civil_status"
    operations = frozenset({"birth.register"})

    def __init__(self, recorded: str) -> None:
        self.recorded = recorded

    async def handle(self, request: Request) -> Result:
        raise PermanentError(self.registry, "certificate refused", recorded=self.recorded)


async def test_a_write_recorded_before_a_failure_names_its_reference() -> None:
    async with RefusedAfterWriting("KS.040.2026.000001") as register:
        with pytest.raises(PermanentError) as failed:
            await register.call("birth.register", {})
    assert failed.value.recorded == "KS.040.2026.000001"


@pytest.mark.parametrize("mark", ["\x00", "\x1b", "\n"], ids=["nul", "escape", "newline"])
async def test_a_recorded_reference_with_a_control_character_is_a_malformed_reply(
    mark: str,
) -> None:
    async with RefusedAfterWriting(f"KS.040{mark}") as register:
        with pytest.raises(TransientError) as failed:
            await register.call("birth.register", {})
    assert "malformed reply" in failed.value.message and mark not in failed.value.message
    assert failed.value.recorded is None
