"""Wire models of the gateway's own API (msgspec): strict decoding, and the source of the OpenAPI
document. Unknown fields are refused, so a typo never silently drops data."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from connectors.identifiers import DOSSIER_CODE_MAX, PROVINCES

__all__ = [
    "TEXT_PATTERNS",
    "Accepted",
    "Address",
    "Applicant",
    "AuditExport",
    "AuditSearch",
    "Beneficiary",
    "BirthData",
    "Child",
    "CitizenLookup",
    "CitizenLookupResult",
    "DeathData",
    "Deceased",
    "DossierCorrection",
    "DossierIn",
    "DossierList",
    "DossierView",
    "InsuranceCardLookup",
    "Parent",
    "Person",
    "ProblemDetails",
    "Residence",
    "StepAttempt",
    "StepView",
    "text_fault",
]

# Patterns end in (?!\n)$ where nothing else excludes a newline: $ alone also matches before a
# final "\n" (Python's re, which msgspec uses), and codes travel on into headers and XML.
# Text that travels on into the registries' XML and SOAP is one line with no control character
# (C0, DEL, C1), no line or paragraph separator, and nothing XML 1.0 cannot carry (surrogates,
# U+FFFE, U+FFFF): a flow accepted with one stopped at the registry that got it.
_NOT_TEXT = r"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff"
# Combining marks: on their own they are no name and no place (the registries refuse them).
_MARKS = r"\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# A line of text, with more in it than spaces and marks.
_LINE = rf"^[^{_NOT_TEXT}]*[^\s{_NOT_TEXT}{_MARKS}][^{_NOT_TEXT}]*(?!\n)$"
Line = Annotated[str, Meta(max_length=500, pattern=_LINE)]
# The same, where an empty string says "none" (an address without a street line).
_LINE_OR_EMPTY = rf"^[^{_NOT_TEXT}]*(?!\n)$"
OptionalLine = Annotated[str, Meta(max_length=500, pattern=_LINE_OR_EMPTY)]
Name = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=_LINE, description="Full name, NFC")
]
# The patterns above, as msgspec quotes them when a value fails one: gateway.api.common tells
# what is wrong in words (text_fault) instead of quoting 400 characters of regular expression.
TEXT_PATTERNS = (_LINE, _LINE_OR_EMPTY)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATOR = re.compile(r"[\u2028\u2029]")
_NOT_XML = re.compile(r"[\ud800-\udfff\ufffe\uffff]")
_SOMETHING = re.compile(rf"[^\s{_NOT_TEXT}{_MARKS}]")


def text_fault(text: str) -> str | None:
    """What keeps ``text`` from being one line of text (``Line``), in words; None if nothing
    but its being empty or blank, which only ``Line`` refuses (``OptionalLine`` takes "")."""
    for pattern, what in (
        (_CONTROL, "a control character"),
        (_SEPARATOR, "a line or paragraph separator"),
    ):
        if found := pattern.search(text):
            return f"character {found.start() + 1} is {what} (U+{ord(found[0]):04X})"
    if found := _NOT_XML.search(text):
        return f"character {found.start() + 1} is U+{ord(found[0]):04X}, which XML cannot carry"
    if not _SOMETHING.search(text):
        return "it holds nothing but spaces and combining marks"
    return None


PersonalIdStr = Annotated[str, Meta(description="12-digit personal identification number")]
# A lookup's date of birth: older records hold only the year, which both registries take
# (population NgayThangNamSinh/Nam, BHXH ngaySinh yyyy). The handler checks the date itself.
BirthDateOrYear = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}(-[0-9]{2}-[0-9]{2})?(?!\n)$",
        description="Date of birth, YYYY-MM-DD; or the year alone, YYYY, for records holding only the year",
    ),
]
Sex = Literal["male", "female", "undetermined"]
DossierStatus = Literal["accepted", "in_progress", "completed", "needs_attention", "failed"]


class Strict(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    def __post_init__(self) -> None:
        # A name has a letter in it. The pattern cannot say so in Python's re: a name of marks
        # outside its ranges (U+0483, U+3099) or of a zero-width space passed, and reached the
        # registry empty (THIEU_TRUONG: a 502, or a flow stopped); one of digits ("12345", a
        # form's fields mixed up) was registered as the child's name.
        name = getattr(self, "full_name", None)
        if name is not None and not any(map(str.isalpha, name)):
            raise ValueError("full_name: a name has at least one letter")


class Applicant(Strict):
    full_name: Name
    personal_id: PersonalIdStr
    # Required: the first step of every procedure verifies the applicant against the population
    # registry by id, name and birth date (service 037 asks for all three). Optional, a dossier
    # without it was accepted and then stopped at that step.
    birth_date: date
    phone: Annotated[str, Meta(pattern=r"^\+?[0-9]{8,15}(?!\n)$")] | None = None
    email: Annotated[str, Meta(max_length=254, pattern=_LINE_OR_EMPTY)] | None = None


class Address(Strict):
    province_code: Annotated[str, Meta(pattern=r"^[0-9]{2,3}(?!\n)$")]
    district_code: Annotated[str, Meta(pattern=r"^[0-9]{3}(?!\n)$")] | None = None
    ward_code: Annotated[str, Meta(pattern=r"^[0-9]{5}(?!\n)$")] | None = None
    detail: OptionalLine = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        # "040" or the registries' "40": a province of the code list, or the residence
        # registry refuses it after the birth was registered (msgspec adds the path).
        if self.province_code.rjust(3, "0") not in PROVINCES:
            raise ValueError(f"province_code: unknown province code {self.province_code}")


class Person(Strict):
    full_name: Name
    personal_id: PersonalIdStr


class Parent(Strict):
    full_name: Name
    personal_id: PersonalIdStr
    birth_date: date | None = None
    ethnicity: Line | None = None
    nationality: Line = "VN"


class Mother(Strict):
    full_name: Name
    personal_id: PersonalIdStr
    # Required: the mother is verified against the population registry (by id, name and birth
    # date, as the applicant is) before the birth is registered: the child joins her household.
    birth_date: date
    ethnicity: Line | None = None
    nationality: Line = "VN"


class Child(Strict):
    full_name: Name
    sex: Sex
    birth_date: date
    birth_place: Line
    ethnicity: Line = "01"
    nationality: Line = "VN"


class Residence(Address):
    """A birth's residence: where the child lives, and whose household it joins there."""

    # The person whose household the child joins (its head, or a member): default the mother.
    # Needed when she has died: a dead household head takes no one in.
    household_head_id: PersonalIdStr | None = None
    # The child's relation to that person (ChuHo/QuanHe): CH03 their child (the default), CH05
    # other (a grandchild, a ward). Only with household_head_id.
    household_relation: Literal["CH03", "CH05"] | None = None


class BirthData(Strict):
    """Birth → permanent residence → health-insurance card for the child (Decree 63/2024)."""

    child: Child
    mother: Mother
    residence: Residence  # district_code and ward_code required: the child's residence
    father: Parent | None = None
    # The applicant's relation to the child, on the birth certificate. Default: mother or
    # father, when the applicant is that parent; required otherwise.
    relation: Line | None = None


class Deceased(Strict):
    full_name: Name
    personal_id: PersonalIdStr
    death_date: date
    death_place: Line
    # Required: the deceased is verified against the population registry (by id, name and
    # birth date, as the applicant is) before the death is registered.
    birth_date: date
    cause: Line | None = None
    # The last residence (nơi cư trú cuối cùng on the declaration form): the death is registered
    # in its province. Without it, in the civil-status connector's configured province.
    residence: Address | None = None


class Beneficiary(Strict):
    full_name: Name
    personal_id: PersonalIdStr
    # Required: a beneficiary other than the applicant is verified against the population
    # registry (by id, name and birth date, as the applicant is) before the death is registered.
    birth_date: date


class DeathData(Strict):
    """Death → residence de-registration → funeral allowance (Decree 63/2024)."""

    deceased: Deceased
    beneficiary: Beneficiary | None = None  # who receives the allowance; default: the applicant
    relation: Line = "child"


class DossierIn(Strict):
    code: Annotated[
        str,
        Meta(
            max_length=DOSSIER_CODE_MAX,
            description="Dossier code (mã hồ sơ): {agency}-{yymmdd}-{seq}, seq 4 to 6 digits",
        ),
    ]
    procedure: Annotated[str, Meta(description="National procedure code (mã TTHC)")]
    flow: Literal["birth", "death"]
    submitted_at: Annotated[
        datetime, Meta(tz=True, extra_json_schema={"format": "date-time"})
    ]  # with its offset: the time the citizen filed, unambiguous
    applicant: Applicant
    data: dict[str, Any]
    callback_url: Annotated[str, Meta(max_length=2048)] | None = None


class Links(Struct):
    self: str


class Accepted(Struct):
    code: str
    status: DossierStatus
    links: Links


class StepAttempt(Struct, omit_defaults=True):
    at: str
    attempt: int
    outcome: Literal["delivered", "refused", "retry", "failed", "dead", "replayed", "resumed"]
    error: str | None = None
    reference: str | None = None


class StepView(Struct):  # every field always present (null when empty): clients index them
    name: str
    registry: str
    operation: str
    status: Literal["pending", "running", "done", "refused", "failed"]
    attempts: int
    result: dict[str, Any] | None = None
    reference: str | None = None
    error: str | None = None
    history: list[StepAttempt] = []


class DossierView(Struct):
    code: str
    procedure: str
    flow: str
    status: DossierStatus
    steps: list[StepView]
    created_at: str
    updated_at: str


class DossierSummary(Struct):
    code: str
    flow: str
    status: DossierStatus
    updated_at: str


class DossierList(Struct):
    items: list[DossierSummary]
    next: str | None = None


class DossierCorrection(Strict):
    """PATCH: replace parts of ``data`` (merged one level deep) and/or the applicant."""

    reason: Line  # kept in the audit log: one line of text
    data: dict[str, Any] | None = None
    applicant: Applicant | None = None


class CitizenLookup(Strict):
    personal_id: PersonalIdStr
    full_name: Name
    birth_date: BirthDateOrYear


class CitizenLookupResult(Struct):
    match: bool
    mismatches: list[str]
    citizen: dict[str, Any] | None


class InsuranceCardLookup(Strict):
    # As printed on the card, "XX Y ZZ NNNNNNNNNN" (identifiers.md), in either case: BHXH is
    # asked without the spaces, in upper case (the connector's own form), so that is taken.
    card_number: Annotated[
        str,
        Meta(
            max_length=64,
            pattern=r"^ *[A-Za-z] *[A-Za-z](?: *[0-9]){13} *(?!\n)$",
            description="Health-insurance card: 2 letters and 13 digits, in either case, spaces "
            "anywhere (DN4404000456765, dn 4 40 4000456765)",
        ),
    ]
    full_name: Name
    birth_date: BirthDateOrYear

    def __post_init__(self) -> None:
        super().__post_init__()
        self.card_number = self.card_number.replace(" ", "").upper()


class AuditSearch(Struct, forbid_unknown_fields=True, rename={"start": "from", "stop": "to"}):
    """POST /v1/audit/search: events about one citizen (the id is hashed, never stored)."""

    personal_id: str
    start: str | None = None  # ISO 8601, inclusive
    stop: str | None = None  # ISO 8601, exclusive
    cursor: str | None = None  # ``next`` of the previous page


# An export's filters end up in the database's queries and the bundle's file name: no control
# character (PostgreSQL refuses a NUL in text: a 500).
Filter = Annotated[str, Meta(max_length=200, pattern=_LINE_OR_EMPTY)]


class AuditExport(Struct, forbid_unknown_fields=True, rename={"start": "from", "stop": "to"}):
    """POST /v1/audit/exports: exactly one of a dossier, a document, or from and to."""

    dossier: Filter | None = None
    document: Filter | None = None
    start: Filter | None = None
    stop: Filter | None = None


class ProblemDetails(Struct):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str


def schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
