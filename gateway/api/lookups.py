"""Synchronous lookups for provincial systems: citizen, health-insurance card, enterprise.

Each call goes through the registry's circuit breaker with a few quick in-request retries, and is
recorded in the audit log (who looked up which citizen — by keyed hash) before the answer leaves.
Personal ids travel only in bodies, never in URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from connectors.api import PermanentError, Result, TransientError
from connectors.identifiers import InvalidIdentifier, check_personal_id, check_tax_code
from gateway.api.common import (
    birth_date_or_year,
    json_response,
    read_json,
    refuse_unless_accepting,
)
from gateway.app import REGISTRY_SECONDS_KEY, RUNTIME, Runtime
from gateway.audit import AuditEvent, append, citizen_hash
from gateway.auth import Identity, require
from gateway.models import CitizenLookup, CitizenLookupResult, InsuranceCardLookup
from gateway.outbox.breaker import CircuitOpen, call_registry
from gateway.outbox.retry import call_with_retries
from gateway.problems import Problem
from gateway.requestid import REQUEST_ID_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()

# The longest a registry's own Retry-After is passed on to a lookup's client.
MAX_RETRY_AFTER_S = 300


def _retry_after(seconds: float) -> dict[str, str]:
    """A Retry-After header of whole seconds, at least 1, never before ``seconds`` have passed."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def _call(
    request: web.Request,
    identity: Identity,
    *,
    service: str,
    registry: str,
    operation: str,
    params: Mapping[str, Any],
    citizen: str | None = None,
    names_unit: bool = False,
    discloses: Callable[[Result], dict[str, list[str]]] | None = None,
) -> Result:
    """Call a registry with bounded retries; audit the access; translate failures to problems.

    ``names_unit``: the registry logs the requesting unit (population's MaDonVi): it is told
    the asking subsystem's agency, as a flow's calls name the agency that filed the dossier —
    not the connector's default, one province's. ``params`` (what was asked) is digested
    without it: the event names the member already.
    ``discloses``: the other people whose personal ids the answer hands out (personal id →
    roles): the lookup's event holds their hashes with their roles (``discloses``), which the
    store indexes, so that a search by their id finds it. One entry per lookup: an event each
    (``lookup.discloses``, before) tripled the log a lookup writes, and the lookup's p99.
    """
    runtime: Runtime = request.app[RUNTIME]
    refuse_unless_accepting(runtime.extras)  # a lookup appends to the audit log too
    connector = runtime.connector(registry)
    breaker = runtime.breakers.get(registry)
    request_id = request[REQUEST_ID_KEY]
    sent = {**params, "agency_id": identity.subsystem.agency} if names_unit else params

    def spent(seconds: float) -> None:  # in-request retries add up
        request[REGISTRY_SECONDS_KEY] = request.get(REGISTRY_SECONDS_KEY, 0.0) + seconds

    # One deadline for the whole lookup: without it a hanging registry held the client for
    # lookup_attempts × timeout_s. A try it cuts is the registry's failure to answer in time,
    # which its breaker counts as it counts the connector's own timeouts.
    limit = runtime.settings.gateway.lookup_timeout_s
    deadline = asyncio.get_running_loop().time() + limit

    async def ask() -> Result:
        try:
            async with asyncio.timeout_at(deadline):
                return await connector.call(operation, sent, request_id=request_id)
        except TimeoutError:  # the connectors translate their own: this is the deadline
            raise TransientError(
                registry,
                f"no answer within the lookup's {limit:g} s ([gateway] lookup_timeout_s)",
                timed_out=True,
            ) from None

    async def once() -> Result:
        return await call_registry(breaker, operation, ask, runtime.metrics, spent)

    outcome, problem, result = "ok", None, None
    unexpected: BaseException | None = None
    try:
        result = await call_with_retries(
            once, attempts=runtime.settings.gateway.lookup_attempts, deadline=deadline
        )
    except CircuitOpen as exc:
        outcome = "failed"
        problem = Problem(
            503,
            "registry-unavailable",
            f"the {registry} registry is failing; calls resume in {exc.retry_after:.0f} s",
            registry=registry,
            headers=_retry_after(exc.retry_after),
        )
    except TransientError as exc:
        outcome = "failed"
        # 504 when our own deadline ran out (a try's, or the lookup's), whatever the registry's
        # words; a registry's (or its proxy's) 502/503/504 is an answer, a bad one: 502, its
        # status in registry_code.
        coded: dict[str, Any] = {"registry_code": exc.code} if exc.code else {}
        # A registry that said when to come back (its 503 or 429 with Retry-After): the client
        # is told, within reason (a registry's date a year ahead is not the province's problem).
        wait = None if exc.wait_s is None else _retry_after(min(exc.wait_s, MAX_RETRY_AFTER_S))
        problem = Problem(
            504 if exc.timed_out else 502,
            "registry-timeout" if exc.timed_out else "registry-unavailable",
            f"the {registry} registry did not answer usably: {exc.message}",
            registry=registry,
            headers=wait,
            **coded,  # BHXH's 100/101: it answered, with a code saying to ask again later
        )
    except PermanentError as exc:
        outcome = "refused"
        problem = Problem(
            404 if exc.code == "not-found" else 502,
            "not-found" if exc.code == "not-found" else "registry-refused",
            f"the {registry} registry refused the request: {exc.message}",
            registry=registry,
            registry_code=exc.code,
        )
    except Exception as exc:
        # A bug, ours or a connector's: the registry may have been asked all the same, and every
        # access is audited. The problem middleware answers it (500) once the event is in.
        outcome, unexpected = "failed", exc
    except asyncio.CancelledError as exc:
        # The client went away (aiohttp cancels its handler) or the gateway is stopping: the
        # registry may have been asked all the same. Recorded, then the cancellation goes on.
        outcome, unexpected = "cancelled", exc
    # Keyed, as the citizen's hash is: a plain SHA-256 of {personal_id, full_name, birth_date}
    # gave the id back to anyone who read the log and knew the name and birth date (a million
    # guesses for a province and year).
    params_hmac = hmac.new(runtime.citizen_key, msgspec.json.encode(params), hashlib.sha256)
    digests = {"params_hmac": params_hmac.hexdigest()}
    disclosed = discloses(result) if discloses is not None and result is not None else {}
    event = AuditEvent(
        action=f"lookup.{service.split('.', 1)[1]}",
        outcome=outcome,
        member=identity.subsystem.member,
        subsystem=identity.id,
        service=service,
        citizen=citizen,
        discloses={citizen_hash(runtime.citizen_key, p): r for p, r in disclosed.items()},
        request_id=request_id,
        digests=digests,
        detail=f"{registry}/{operation}",
    )
    # Committed before the answer leaves, so a crash of the gateway never loses it; not waiting
    # for the disk's sync, whose tail (tens of ms on a shared disk) would be every lookup's.
    record = runtime.store.transact(lambda tx: append(tx, event), durable=False)
    # Shielded: a cancellation while this is written (the client leaving once the registry has
    # answered, or a second one, a stop) must not drop the event: on PostgreSQL a unit still
    # waiting for a connection is dropped when its caller is cancelled.
    await asyncio.shield(record)
    if unexpected is not None:
        raise unexpected
    if problem is not None:
        raise problem
    assert result is not None
    return result


def _identifier(fn: Any, value: str, slug: str, field: str, **kw: Any) -> None:
    try:
        fn(value, **kw)
    except InvalidIdentifier as exc:
        raise Problem(422, slug, f"{field}: {exc.reason}", field=field) from None


@routes.post("/v1/lookups/citizen")
async def citizen(request: web.Request) -> web.Response:
    identity = require(request, "lookups.citizen")
    query = await read_json(request, CitizenLookup)
    born = birth_date_or_year(query.birth_date, "birth_date")
    _identifier(
        check_personal_id,
        query.personal_id,
        "invalid-personal-id",
        "personal_id",
        **({"birth_year": born} if isinstance(born, int) else {"birth_date": born}),
    )
    runtime = request.app[RUNTIME]
    result = await _call(
        request,
        identity,
        service="lookups.citizen",
        registry="population",
        operation="citizen.lookup",
        params={
            "personal_id": query.personal_id,
            "full_name": query.full_name,
            "birth_date": query.birth_date,
        },
        citizen=citizen_hash(runtime.citizen_key, query.personal_id),
        names_unit=True,  # MaDonVi; BHXH and the business registry are told no unit
        discloses=_parents,
    )
    data = result.data
    return json_response(
        CitizenLookupResult(
            match=bool(data.get("match")),
            mismatches=list(data.get("mismatches") or []),
            citizen=data.get("citizen"),
        )
    )


def _parents(result: Result) -> dict[str, list[str]]:
    """The parents a citizen's record names (``father``, ``mother``: their names and personal
    ids go to the asking subsystem with it), by personal id: an auditor's search by a parent's
    id finds the lookups that disclosed them."""
    named: dict[str, list[str]] = {}
    record = result.data.get("citizen") or {}
    for role in ("father", "mother"):
        parent = record.get(role)
        if isinstance(parent, Mapping) and parent.get("personal_id"):
            named.setdefault(str(parent["personal_id"]), []).append(role)
    return named


@routes.post("/v1/lookups/insurance-card")
async def insurance_card(request: web.Request) -> web.Response:
    identity = require(request, "lookups.insurance-card")
    query = await read_json(request, InsuranceCardLookup)
    birth_date_or_year(query.birth_date, "birth_date")
    result = await _call(
        request,
        identity,
        service="lookups.insurance-card",
        registry="insurance",
        operation="card.check",
        params={
            "card_number": query.card_number,
            "full_name": query.full_name,
            "birth_date": query.birth_date,
        },
    )
    return json_response(result.data)


@routes.get("/v1/lookups/enterprises/{tax_code}")
async def enterprise(request: web.Request) -> web.Response:
    identity = require(request, "lookups.enterprise")
    tax_code = request.match_info["tax_code"]
    _identifier(check_tax_code, tax_code, "invalid-tax-code", "tax_code")
    result = await _call(
        request,
        identity,
        service="lookups.enterprise",
        registry="business",
        operation="enterprise.lookup",
        params={"tax_code": tax_code},
    )
    return json_response(result.data)
