"""The inter-connected procedures of Decree 63/2024 as declared step lists.

A step names a registry and an operation (see connectors/ and .notes/operations.md), how to build
its parameters from the dossier and the outputs of earlier steps, and how to judge the answer. The
engine (:mod:`gateway.flows.engine`) runs any of them the same way; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.api import PermanentError
from connectors.text import VIETNAM

__all__ = ["FLOWS", "Context", "Flow", "Step"]


@dataclass(frozen=True)
class Context:
    """What a step may read: the dossier as accepted (corrections included) and earlier outputs."""

    dossier: Mapping[str, Any]  # the DossierIn document (JSON-shaped)
    outputs: Mapping[str, Mapping[str, Any]]  # step name → result data

    @property
    def data(self) -> Mapping[str, Any]:
        result: Mapping[str, Any] = self.dossier["data"]
        return result

    @property
    def applicant(self) -> Mapping[str, Any]:
        result: Mapping[str, Any] = self.dossier["applicant"]
        return result


@dataclass(frozen=True)
class Step:
    name: str
    registry: str
    operation: str
    params: Callable[[Context], dict[str, Any]]
    # Raises PermanentError when the registry answered but the answer stops the flow.
    judge: Callable[[Context, dict[str, Any]], None] | None = None
    # What of the result the dossier keeps: those fields, or what the function makes of the
    # result (None: all). A check needs its verdict, not the citizen's whole record: the less
    # personal data is stored, the less can leak.
    keep: tuple[str, ...] | Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # Whether the operation changes the registry (a lookup does not): a write whose answer was
    # lost may have been registered.
    writes: bool = True
    # Who the personal id in the answer is issued to (the child, by the birth registration):
    # the dossier then names them too, and an auditor's search by that id finds it.
    issues: str | None = None
    # The registry's reference identifies a person (a health-insurance card number holds its
    # holder's social-insurance code): the permanent audit log keeps its keyed hash
    # (digests.reference_hmac), as a card lookup's event keeps its parameters' (params_hmac);
    # the dossier's step, which its client reads, keeps the number.
    personal_reference: bool = False
    # The registry's verdict on the merits (connectors.api.Verdict: the funeral allowance the
    # deceased is not eligible for) ends the step ``refused`` and the flow goes on, as after an
    # answer: what came before is registered for good, and no correction would change the
    # verdict. Any other refusal stops the flow needs_attention, to be corrected.
    final_refusal: bool = False
    # Why the step has nothing to do for this dossier ("" or None: it runs): it is then done
    # without a call, its result ``{"skipped": why}``. Judged when it runs, on the dossier as
    # corrected by then.
    skip: Callable[[Context], str | None] | None = None
    # What the dossier should give, said with a refusal of the registry's (None: nothing to add):
    # the operator reads it where the flow stopped.
    advice: Callable[[Context, PermanentError], str | None] | None = None


@dataclass(frozen=True)
class Flow:
    """A flow's steps as new dossiers get them. A dossier keeps the list of step names it was
    accepted with (its step rows), and runs those, looked up here by name: a step added to a
    flow reaches the dossiers accepted after it, and none already running."""

    name: str
    steps: tuple[Step, ...]

    def index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.name == name)

    def step(self, name: str) -> Step:
        return self.steps[self.index(name)]


def _agency(ctx: Context) -> str:
    """The agency whose one-stop system filed the dossier (its code's prefix): the requesting
    unit of every registry call made for it (MaDonVi, maDonVi), not the connector's default."""
    return str(ctx.dossier["code"]).split("-", 1)[0]


def _asking(ctx: Context) -> dict[str, str]:
    """Who asks the population registry, and for which public service: the filing agency, and
    the dossier's procedure (MaDVC; it was a constant no service catalogue holds)."""
    return {"agency_id": _agency(ctx), "service_code": str(ctx.dossier["procedure"])}


def _verified(
    name: str,
    who: str,
    person: Callable[[Context], Mapping[str, Any]],
    keep: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    *,
    living: bool | Callable[[Context], str | None] = True,
    skip: Callable[[Context], str | None] | None = None,
) -> Step:
    """A step that looks ``person`` up in the population registry (by id, name and birth date:
    service 037 asks for all three) and stops the flow unless the registry holds them as given
    — and, when ``living``, alive (a function of the dossier: None when their death does not
    stop this dossier, else what the dossier should give instead, said with the refusal). It
    keeps the verdict, not the citizen's record: the less personal data stored, the less can
    leak; and what ``keep`` takes of the record besides."""

    def kept(result: Mapping[str, Any]) -> dict[str, Any]:
        verdict = {"match": result.get("match"), "mismatches": result.get("mismatches")}
        return {**verdict, **keep(result)} if keep is not None else verdict

    def params(ctx: Context) -> dict[str, Any]:
        p = person(ctx)
        return {
            "personal_id": p["personal_id"],
            "full_name": p["full_name"],
            "birth_date": p["birth_date"],
            **_asking(ctx),
        }

    def judge(ctx: Context, result: dict[str, Any]) -> None:
        mismatches = list(result.get("mismatches") or [])
        if not result.get("citizen") or mismatches:
            what = ", ".join(mismatches) or "personal_id"
            raise PermanentError(
                "population", f"the {who} does not match the population registry ({what})"
            )
        died = result["citizen"].get("death_record_number")
        instead = living(ctx) if callable(living) else ("" if living else None)
        if died and instead is not None:
            # A dead mother's household refuses her child after the birth is registered, which
            # cannot be undone; the dead declare nothing, nor are they paid.
            raise PermanentError(
                "population",
                f"the {who} is recorded deceased by the population registry (death record {died})"
                + (f": {instead}" if instead else ""),
            )

    return Step(
        name,
        "population",
        "citizen.lookup",
        params,
        judge,
        keep=kept,
        writes=False,
        skip=skip,
    )


VERIFY_APPLICANT = _verified("verify_applicant", "applicant", lambda ctx: ctx.applicant)

# What a birth's residence says of the household the child joins (models.Residence), which the
# address sent to the population registry does not carry.
_HOUSEHOLD = ("household_head_id", "household_relation")


def _household(ctx: Context) -> tuple[str, str]:
    """Whose household the child joins, and its relation to them (ChuHo/QuanHe codes): as the
    dossier names it, else the mother's, as her child."""
    residence = ctx.data["residence"]
    head = residence.get("household_head_id")
    if head:
        return str(head), str(residence.get("household_relation") or "CH03")
    return str(ctx.data["mother"]["personal_id"]), "CH03"


_GIVE_HOUSEHOLD = (
    "give data.residence.household_head_id, the personal id of whom the child lives with (and "
    "data.residence.household_relation: CH03 their child, CH05 other)"
)


def _mothers_household(ctx: Context) -> str | None:
    """Why a deceased mother stops the birth (None: she does not; the child joins another's)."""
    if _household(ctx)[0] != ctx.data["mother"]["personal_id"]:
        return None
    return f"the child cannot join her household; {_GIVE_HOUSEHOLD}"


def _household_refused(ctx: Context, refusal: PermanentError) -> str | None:
    """The household named (the mother's, by default) takes no one in: its head died since she
    was verified, or the id names no one. The residence step is not done: a correction naming
    another household is taken."""
    return _GIVE_HOUSEHOLD if refusal.code == "CHU_HO" else None


# Before the birth is registered, which cannot be undone: the child joins a household next, hers
# unless the dossier names another (a dead household head takes no one in).
VERIFY_MOTHER = _verified(
    "verify_mother", "mother", lambda ctx: ctx.data["mother"], living=_mothers_household
)


def _declarant(ctx: Context) -> dict[str, Any]:
    a = ctx.applicant
    return {
        "full_name": a["full_name"],
        "personal_id": a["personal_id"],
        "relation": ctx.data.get("relation", ""),
    }


def _declared_on(ctx: Context) -> str:
    """The day the dossier was filed, in Vietnam: when the birth or death was declared."""
    filed = datetime.fromisoformat(str(ctx.dossier["submitted_at"]))
    return filed.astimezone(VIETNAM).date().isoformat()


def _birth_params(ctx: Context) -> dict[str, Any]:
    d = ctx.data
    params = {
        "child": d["child"],
        "mother": d["mother"],
        "declarant": _declarant(ctx),
        "declared_on": _declared_on(ctx),
        "agency_id": _agency(ctx),
        # Registered where the child will live (the same commune registers its residence next):
        # its number then begins with that province's code, not the connector's default's.
        "place": {"province_code": str(d["residence"]["province_code"]).zfill(3)},
    }
    if d.get("father"):
        params["father"] = d["father"]
    return params


def _child(ctx: Context) -> dict[str, Any]:
    born = ctx.outputs["register_birth"]
    child = ctx.data["child"]
    return {
        "personal_id": born["personal_id"],
        "full_name": child["full_name"],
        "birth_date": child["birth_date"],
        "sex": child["sex"],
    }


def _residence_params(ctx: Context) -> dict[str, Any]:
    head, relation = _household(ctx)
    return {
        **{k: v for k, v in _child(ctx).items() if k != "sex"},
        "address": {k: v for k, v in ctx.data["residence"].items() if k not in _HOUSEHOLD},
        "household_head_id": head,
        "relation": relation,
        **_asking(ctx),
    }


def _card_params(ctx: Context) -> dict[str, Any]:
    province = ctx.data["residence"]["province_code"]
    return {**_child(ctx), "province_code": province[-2:]}


BIRTH = Flow(
    "birth",
    (
        VERIFY_APPLICANT,
        VERIFY_MOTHER,
        Step("register_birth", "civil_status", "birth.register", _birth_params, issues="child"),
        Step(
            "register_residence",
            "population",
            "residence.register",
            _residence_params,
            advice=_household_refused,
        ),
        Step(
            "issue_health_card",
            "insurance",
            "card.issue_newborn",
            _card_params,
            personal_reference=True,
        ),
    ),
)


def _deceased(ctx: Context) -> Mapping[str, Any]:
    result: Mapping[str, Any] = ctx.data["deceased"]
    return result


def _last_province(result: Mapping[str, Any]) -> dict[str, Any]:
    """The province of the deceased's last residence as the registry holds it (where they lived,
    else their permanent address), where the death is registered when the dossier does not say:
    a death was registered in the connector's own province (Nghệ An's) whoever filed it."""
    citizen = result.get("citizen") or {}
    for address in (citizen.get("current_address"), citizen.get("permanent_address")):
        if address and address.get("province_code"):
            return {"residence_province": address["province_code"]}
    return {}


# Before the death is registered, which cannot be undone: a death of someone the population
# registry does not hold was registered, then its residence could not be de-registered, and
# the dossier could be neither corrected (the registered death had sent the deceased) nor
# finished.
# Alive or not: the registry may hold the death already (declared by another dossier, or
# de-registered first) — the death registration then says whether it is a second one.
VERIFY_DECEASED = _verified(
    "verify_deceased", "deceased", _deceased, keep=_last_province, living=False
)


def _death_params(ctx: Context) -> dict[str, Any]:
    dead = _deceased(ctx)
    params = {
        "deceased": {k: v for k, v in dead.items() if k != "residence"},
        "declarant": _declarant(ctx),
        "declared_on": _declared_on(ctx),
        "agency_id": _agency(ctx),
    }
    # Registered where the deceased last lived, as a birth is: as the dossier says, else as the
    # population registry said when the deceased was verified.
    if dead.get("residence"):
        province = str(dead["residence"]["province_code"]).zfill(3)
    else:
        province = str(ctx.outputs.get("verify_deceased", {}).get("residence_province") or "")
    if not province:
        raise PermanentError(
            "civil_status",
            "the deceased's last residence is not known (the population registry holds none): "
            "give data.deceased.residence",
        )
    params["place"] = {"province_code": province}
    return params


def _deregister_params(ctx: Context) -> dict[str, Any]:
    dead = _deceased(ctx)
    return {
        "personal_id": dead["personal_id"],
        "full_name": dead["full_name"],
        "reason": "death",
        "death_record_number": ctx.outputs["register_death"]["death_record_number"],
        **_asking(ctx),
    }


def _beneficiary_is_applicant(ctx: Context) -> str | None:
    named = ctx.data.get("beneficiary")
    if not named or named["personal_id"] == ctx.applicant["personal_id"]:
        return "the beneficiary is the applicant, verified by verify_applicant"
    return None


# Before the death is registered, which cannot be undone: the allowance was paid to whoever the
# dossier named, unverified (a mistyped id, someone dead). Alive, as the applicant is.
VERIFY_BENEFICIARY = _verified(
    "verify_beneficiary",
    "beneficiary (data.beneficiary)",
    lambda ctx: ctx.data["beneficiary"],
    skip=_beneficiary_is_applicant,
)


def _funeral_params(ctx: Context) -> dict[str, Any]:
    dead = _deceased(ctx)
    named = ctx.data.get("beneficiary") or ctx.applicant
    # Who BHXH pays, by name and id (the birth date was the population registry's to check).
    beneficiary = {"full_name": named["full_name"], "personal_id": named["personal_id"]}
    return {
        "personal_id": dead["personal_id"],
        "full_name": dead["full_name"],
        "death_date": dead["death_date"],
        "death_record_number": ctx.outputs["register_death"]["death_record_number"],
        "beneficiary": beneficiary,
    }


DEATH = Flow(
    "death",
    (
        VERIFY_APPLICANT,
        VERIFY_DECEASED,
        VERIFY_BENEFICIARY,
        Step("register_death", "civil_status", "death.register", _death_params),
        Step("deregister_residence", "population", "residence.deregister", _deregister_params),
        Step(
            "pay_funeral_allowance",
            "insurance",
            "funeral.pay",
            _funeral_params,
            final_refusal=True,
        ),
    ),
)

FLOWS: dict[str, Flow] = {f.name: f for f in (BIRTH, DEATH)}
