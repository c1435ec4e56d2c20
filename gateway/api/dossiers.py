"""Dossiers: provincial one-stop systems submit them; operators list, correct and resume them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from connectors.identifiers import (
    InvalidIdentifier,
    check_agency_id,
    check_dossier_code,
    check_personal_id,
    check_procedure_code,
)
from connectors.text import VIETNAM
from gateway import dossiers
from gateway.api.common import (
    check_life_date,
    decode,
    json_response,
    only_parameters,
    query_text,
    read_json,
    refuse_unless_accepting,
)
from gateway.app import RUNTIME
from gateway.audit import Actor
from gateway.auth import IDENTITY_KEY, Identity, require
from gateway.models import (
    Accepted,
    BirthData,
    DeathData,
    DossierCorrection,
    DossierIn,
    DossierList,
    DossierView,
    Links,
)
from gateway.outbox import NotDead
from gateway.problems import Problem
from gateway.procedures import flow_of
from gateway.requestid import REQUEST_ID_KEY
from gateway.settings import is_http_url
from gateway.store import Tx

__all__ = ["routes", "validate"]

routes = web.RouteTableDef()

_DATA_MODELS: dict[str, type[BirthData] | type[DeathData]] = {
    "birth": BirthData,
    "death": DeathData,
}
_SLUGS = {
    "personal id": "invalid-personal-id",
    "agency id": "invalid-agency-id",
    "dossier code": "invalid-dossier-code",
    "procedure code": "invalid-procedure-code",
}


def _check(fn: Any, value: str, where: str, **kw: Any) -> None:
    try:
        fn(value, **kw)
    except InvalidIdentifier as exc:
        raise Problem(422, _SLUGS[exc.kind], f"{where}: {exc.reason}", field=where) from None


def _person_ids(data: BirthData | DeathData) -> list[tuple[str, str, date | None]]:
    found: list[tuple[str, str, date | None]]
    if isinstance(data, BirthData):
        found = [("data.mother.personal_id", data.mother.personal_id, data.mother.birth_date)]
        if data.father is not None:
            found.append(
                ("data.father.personal_id", data.father.personal_id, data.father.birth_date)
            )
        if data.residence.household_head_id is not None:
            found.append(
                ("data.residence.household_head_id", data.residence.household_head_id, None)
            )
        return found
    found = [("data.deceased.personal_id", data.deceased.personal_id, data.deceased.birth_date)]
    if data.beneficiary is not None:
        found.append(
            (
                "data.beneficiary.personal_id",
                data.beneficiary.personal_id,
                data.beneficiary.birth_date,
            )
        )
    return found


def _check_dates(doc: DossierIn, data: BirthData | DeathData) -> None:
    """Births and deaths between 1900 and today (Vietnam's date), a child born after its
    mother: the registries refuse anything else, after the dossier was accepted."""
    dates: list[tuple[str, date | None]] = [("applicant.birth_date", doc.applicant.birth_date)]
    if isinstance(data, BirthData):
        dates += [
            ("data.child.birth_date", data.child.birth_date),
            ("data.mother.birth_date", data.mother.birth_date),
            ("data.father.birth_date", data.father.birth_date if data.father else None),
        ]
    else:
        dates += [
            ("data.deceased.death_date", data.deceased.death_date),
            ("data.deceased.birth_date", data.deceased.birth_date),
            (
                "data.beneficiary.birth_date",
                data.beneficiary.birth_date if data.beneficiary else None,
            ),
        ]
    for where, day in dates:
        check_life_date(day, where)
    filed_on = _filed_on(doc)
    if isinstance(data, BirthData):
        _check_filed_after(filed_on, data.child.birth_date, "birth")
        for where, parent in (("mother", data.mother), ("father", data.father)):
            if parent is None:
                continue
            # Without a date, the year its personal id encodes: a parent born the child's year
            # or later is refused by the register, after the dossier was accepted.
            younger = (
                parent.birth_date >= data.child.birth_date
                if parent.birth_date
                else check_personal_id(parent.personal_id).birth_year >= data.child.birth_date.year
            )
            if younger:
                raise Problem(
                    422,
                    "inconsistent-dossier",
                    f"the child is born on {data.child.birth_date}, before its {where}",
                    field=f"data.{where}.birth_date",
                )
        if _age(data.child.birth_date, filed_on) >= _CARD_AGE:
            # The procedure ends with the health-insurance card of a child under 6: an older
            # child's birth and residence would be registered, and the flow stop at the card.
            raise Problem(
                422,
                "inconsistent-dossier",
                f"the child was {_CARD_AGE} or older on {filed_on}: the inter-connected birth"
                " procedure is for a child under 6 (its health-insurance card); register the"
                " birth alone",
                field="data.child.birth_date",
            )
    else:
        _check_filed_after(filed_on, data.deceased.death_date, "death")
        if data.deceased.birth_date > data.deceased.death_date:
            raise Problem(
                422,
                "inconsistent-dossier",
                "the deceased died before being born",
                field="data.deceased",
            )


_CARD_AGE = 6  # BHXH issues group-TE cards to children under 6 (spec/registries.md)
# A one-stop system's clock may run a little ahead of the gateway's; no more than this.
_CLOCK_SKEW = timedelta(minutes=5)
_FIRST_YEAR = 1900  # no birth or death filed is earlier (check_life_date)


def _filed_on(doc: DossierIn) -> date:
    """The day the dossier was filed, in Vietnam (what a registration says it was declared on);
    refuses a filing time in the future, or before 1900 (as the births and deaths filed)."""
    if doc.submitted_at > datetime.now(VIETNAM) + _CLOCK_SKEW:
        raise Problem(
            422,
            "invalid-request",
            f"submitted_at: {doc.submitted_at.isoformat()} is in the future",
            field="submitted_at",
        )
    if doc.submitted_at.year < _FIRST_YEAR:
        # Before the conversion: 0001-01-01T00:00:00+07:00 (.NET's DateTime.MinValue with the
        # office's offset, an unset field) is before year 1 in UTC, which Python cannot hold.
        raise Problem(
            422,
            "invalid-request",
            f"submitted_at: {doc.submitted_at.isoformat()} is before {_FIRST_YEAR}",
            field="submitted_at",
        )
    return doc.submitted_at.astimezone(VIETNAM).date()


def _check_filed_after(filed_on: date, event: date, what: str) -> None:
    # The register refuses a declaration dated before the event, and no correction can change
    # when a dossier was filed.
    if filed_on < event:
        raise Problem(
            422,
            "inconsistent-dossier",
            f"submitted_at: filed on {filed_on}, before the {what} it declares ({event})",
            field="submitted_at",
        )


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def own_code(code: str, identity: Identity) -> None:
    """A provincial system files dossiers under its own agency's codes (``{agency}-…``), where
    its member id names an agency (``VN:GOV:000.00.00.H41``): another agency's code would take
    that code from it."""
    agency = identity.subsystem.member.rsplit(":", 1)[-1]
    try:
        check_agency_id(agency)
    except InvalidIdentifier:
        return  # a member id without an agency (development configs): nothing to compare
    if code.split("-", 1)[0] != agency:
        raise Problem(
            422,
            "invalid-dossier-code",
            f"code: {code} is another agency's; yours begin with {agency}-",
            field="code",
        )


def own_callback(url: str | None, identity: Identity) -> None:
    """A callback goes only where the operator let this subsystem's callbacks go."""
    if url is None or identity.subsystem.allows_callback(url):
        return
    allowed = ", ".join(identity.subsystem.callback_urls) or "none: ask the operator for them"
    raise Problem(
        422,
        "callback-not-allowed",
        f"callback_url: {url} is not under this subsystem's callback URLs ({allowed})",
        field="callback_url",
    )


def validate(doc: DossierIn) -> dict[str, Any]:
    """Check a dossier beyond its shape; return it as the JSON document to store.

    Raises Problem 422 with a slug per rule (shared/spec/identifiers.md).
    """
    # The issuing agency comes first, when there is one: a code with no dash ("bad") is no
    # dossier code, not an agency id gone wrong.
    if "-" in doc.code:
        _check(check_agency_id, doc.code.split("-", 1)[0], "code")
    _check(check_dossier_code, doc.code, "code")
    # yymmdd: the day the one-stop system received it; a day's grace for clocks either side of
    # midnight.
    issued = doc.code.split("-")[1]
    received = date(2000 + int(issued[:2]), int(issued[2:4]), int(issued[4:]))
    if received > datetime.now(VIETNAM).date() + timedelta(days=1):
        raise Problem(
            422, "invalid-dossier-code", f"code: dated {received}, in the future", field="code"
        )
    _check(check_procedure_code, doc.procedure, "procedure")
    known = flow_of(doc.procedure)
    if known is None:
        raise Problem(
            422, "unknown-procedure", f"procedure {doc.procedure} is not run by this gateway"
        )
    local = doc.procedure[9:]  # a locally published variant's agency id, if any
    if local and local.rsplit(".", 1)[-1] != doc.code.split("-", 1)[0].rsplit(".", 1)[-1]:
        # Published by another province or ministry (its level-1 code, H29, G15): not a
        # procedure of the agency filing the dossier.
        raise Problem(
            422,
            "unknown-procedure",
            f"procedure {doc.procedure} is {local}'s local variant, and the dossier is filed by "
            f"{doc.code.split('-', 1)[0]}",
            field="procedure",
        )
    if known[0] != doc.flow:
        raise Problem(
            422,
            "flow-mismatch",
            f"procedure {doc.procedure} runs the {known[0]} flow, not {doc.flow}",
        )
    _check(
        check_personal_id,
        doc.applicant.personal_id,
        "applicant.personal_id",
        birth_date=doc.applicant.birth_date,
    )
    if doc.callback_url is not None and not is_http_url(doc.callback_url):
        raise Problem(
            422,
            "invalid-request",
            "callback_url: expected an absolute http:// or https:// URL",
            field="callback_url",
        )
    data = decode(msgspec.json.encode(doc.data), _DATA_MODELS[doc.flow], where="$.data")
    for where, pid, born in _person_ids(data):
        _check(check_personal_id, pid, where, birth_date=born)
    _check_dates(doc, data)
    if isinstance(data, BirthData):
        data = _birth_declarant(doc, data)
        if data.residence.household_relation and data.residence.household_head_id is None:
            raise Problem(
                422,
                "invalid-request",
                "data.residence.household_relation: a relation to no one; give "
                "data.residence.household_head_id, whose household the child joins",
                field="data.residence.household_relation",
            )
        for key in ("district_code", "ward_code"):  # where the child's residence is registered
            if getattr(data.residence, key) is None:
                raise Problem(
                    422,
                    "invalid-request",
                    f"Object missing required field `{key}` - at `$.data.residence`",
                    field=f"data.residence.{key}",
                )
    if (
        isinstance(data, BirthData)
        and data.father
        and (data.father.personal_id == data.mother.personal_id)
    ):
        raise Problem(
            422,
            "inconsistent-dossier",
            "the father and the mother have the same personal id",
            field="data.father.personal_id",
        )
    if isinstance(data, DeathData):
        dead = data.deceased.personal_id
        beneficiary = (
            data.beneficiary.personal_id if data.beneficiary else doc.applicant.personal_id
        )
        if dead in (doc.applicant.personal_id, beneficiary):
            raise Problem(
                422,
                "inconsistent-dossier",
                "the deceased cannot be the applicant or the beneficiary of the funeral allowance",
            )
    document: dict[str, Any] = _builtins(doc)
    document["data"] = _builtins(data)
    return document


# The relations a birth's declarant may name that say who they are: a parent the dossier names.
_PARENTS = {"mother": "mother", "mẹ": "mother", "father": "father", "cha": "father", "bố": "father"}


def _birth_declarant(doc: DossierIn, data: BirthData) -> BirthData:
    """``data`` with the applicant's relation to the child, which the register writes on the
    birth certificate: a parent's when the applicant is one, else as the client says it."""
    parents = {"mother": data.mother, "father": data.father}
    applicant = doc.applicant.personal_id
    if data.relation is None:
        role = next(
            (r for r, p in parents.items() if p is not None and p.personal_id == applicant), None
        )
        if role is None:
            raise Problem(
                422,
                "invalid-request",
                "data.relation: required when the applicant is neither parent"
                " (grandparent, sibling, relative, guardian, …)",
                field="data.relation",
            )
        return msgspec.structs.replace(data, relation=role)
    role = _PARENTS.get(data.relation.strip().lower())
    if role is not None and getattr(parents[role], "personal_id", None) != applicant:
        raise Problem(
            422,
            "inconsistent-dossier",
            f"data.relation: the applicant is not the child's {role} (data.{role}.personal_id)",
            field="data.relation",
        )
    return data


def _builtins(value: Any) -> Any:
    """``value`` as JSON builtins, each default spelled out and each absent field (None) left out.

    What the gateway acts on is stored, whether the client sent a default or left it to the model:
    with msgspec's ``omit_defaults`` (which compares strings by identity) a birth dossier without
    ``relation`` was stored without it, and its registration refused ("declarant.relation is
    required"); and the same dossier sent again with ``"nationality": "VN"`` spelled out was
    stored another way, so refused as a conflict."""
    if not isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    return {
        f.encode_name: _builtins(v)
        for f in msgspec.structs.fields(value)
        if (v := getattr(value, f.name)) is not None
    }


def _own_scope(identity: Identity) -> str | None:
    """Operators see every dossier; a provincial system only its own."""
    return None if identity.may("admin") else identity.id


def _path_code(request: web.Request) -> str:
    """The dossier code in the path. One that cannot be a dossier code is no dossier: 404, as an
    unknown one, without asking the store (PostgreSQL refuses a NUL in text: it was a 500)."""
    code = request.match_info["code"]
    try:
        check_dossier_code(code)
    except InvalidIdentifier:
        raise Problem(404, "unknown-dossier", f"no dossier {code!r}") from None
    return code


def _caller(request: web.Request) -> Identity:
    identity: Identity | None = request.get(IDENTITY_KEY)
    if identity is not None and identity.may("admin"):
        return identity
    return require(request, "dossiers.submit")


@routes.post("/v1/dossiers")
async def submit(request: web.Request) -> web.Response:
    identity = require(request, "dossiers.submit")
    runtime = request.app[RUNTIME]
    refuse_unless_accepting(runtime.extras)
    document = validate(await read_json(request, DossierIn))
    own_code(document["code"], identity)
    own_callback(document.get("callback_url"), identity)
    request_id = request[REQUEST_ID_KEY]
    try:
        outcome = await runtime.store.transact(
            lambda tx: dossiers.accept(
                tx,
                document=document,
                client=identity.id,
                member=identity.subsystem.member,
                request_id=request_id,
                citizen_key=runtime.citizen_key,
            )
        )
    except dossiers.Conflict as exc:
        raise Problem(409, "duplicate-conflict", str(exc), code=document["code"]) from None
    if runtime.worker is not None and not outcome.replayed:
        runtime.worker.wake()
    location = f"/v1/dossiers/{outcome.code}"
    body = Accepted(code=outcome.code, status="accepted", links=Links(self=location))
    return json_response(body, status=202, headers={"Location": location})


@routes.get("/v1/dossiers/{code}")
async def get_dossier(request: web.Request) -> web.Response:
    identity = _caller(request)
    code = _path_code(request)
    try:
        view = await request.app[RUNTIME].store.read(
            lambda tx: dossiers.view(tx, code, client=_own_scope(identity))
        )
    except dossiers.UnknownDossier:
        raise Problem(404, "unknown-dossier", f"no dossier {code}") from None
    return json_response(view)


@routes.get("/v1/dossiers")
async def list_dossiers(request: web.Request) -> web.Response:
    identity = _caller(request)
    only_parameters(request, "status", "cursor")
    status = query_text(request, "status")
    allowed = ("accepted", "in_progress", "completed", "needs_attention", "failed")
    if status is not None and status not in allowed:
        raise Problem(
            400,
            "invalid-query",
            f"status must be one of {', '.join(allowed)}",
            parameter="status",
        )
    after = query_text(request, "cursor") or ""
    if after:  # the code of the last dossier of the page before
        try:
            check_dossier_code(after)
        except InvalidIdentifier:
            raise Problem(
                400, "invalid-query", "cursor: not one this API gave", parameter="cursor"
            ) from None
    limit = 100
    items = await request.app[RUNTIME].store.read(
        lambda tx: dossiers.list_dossiers(
            tx, status=status, client=_own_scope(identity), after=after, limit=limit
        )
    )
    return json_response(
        DossierList(items=items, next=items[-1].code if len(items) == limit else None)
    )


def _merge(document: dict[str, Any], patch: DossierCorrection) -> DossierIn:
    data = dict(document["data"])
    for key, value in (patch.data or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    merged = {**document, "data": data}
    if patch.applicant is not None:
        merged["applicant"] = msgspec.to_builtins(patch.applicant)
    return decode(msgspec.json.encode(merged), DossierIn)


@routes.patch("/v1/dossiers/{code}")
async def correct(request: web.Request) -> web.Response:
    identity = require(request, "admin")
    runtime = request.app[RUNTIME]
    code = _path_code(request)
    patch = await read_json(request, DossierCorrection)

    def corrected(tx: Tx) -> DossierView:
        # Merged onto the document as it stands in the transaction that stores the result: two
        # corrections at once are applied one after the other, neither lost. The answer is read
        # in the same transaction: a read after the commit that failed would deny it happened.
        dossiers.correct(
            tx,
            code,
            change=lambda current: validate(_merge(current, patch)),
            actor=Actor(identity.subsystem.member, identity.id),
            reason=patch.reason,
            request_id=request[REQUEST_ID_KEY],
            citizen_key=runtime.citizen_key,
        )
        return dossiers.view(tx, code)

    try:
        view = await runtime.store.transact(corrected)
    except dossiers.UnknownDossier:
        raise Problem(404, "unknown-dossier", f"no dossier {code}") from None
    except dossiers.NotCorrectable as exc:
        raise Problem(409, "status-transition", str(exc)) from None
    return json_response(view)


@routes.post("/v1/dossiers/{code}/resume")
async def resume(request: web.Request) -> web.Response:
    identity = require(request, "admin")
    runtime = request.app[RUNTIME]
    code = _path_code(request)

    def resumed(tx: Tx) -> DossierView:
        dossiers.resume(
            tx,
            code,
            actor=Actor(identity.subsystem.member, identity.id),
            request_id=request[REQUEST_ID_KEY],
        )
        return dossiers.view(tx, code)  # in the same transaction, as for a correction

    try:
        view = await runtime.store.transact(resumed)
    except dossiers.UnknownDossier:
        raise Problem(404, "unknown-dossier", f"no dossier {code}") from None
    except dossiers.NotCorrectable as exc:
        raise Problem(409, "status-transition", str(exc)) from None
    except NotDead as exc:  # its dead step was replayed meanwhile (the outbox's own replay)
        raise Problem(409, "status-transition", f"dossier {code}: {exc}") from None
    if runtime.worker is not None:
        runtime.worker.wake()
    return json_response(view, status=202)
