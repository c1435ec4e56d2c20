"""A text field that is no line of text is refused in words, not with its pattern's regex."""

from __future__ import annotations

import msgspec
import pytest
from msgspec import Struct

from gateway.api.common import decode
from gateway.models import AuditExport, Line, OptionalLine
from gateway.problems import Problem


class _Household(Struct, forbid_unknown_fields=True):
    names: list[Line]
    note: OptionalLine = ""


def _detail(body: object, model: type, **kw: str) -> str:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    with pytest.raises(Problem) as info:
        decode(raw, model, **kw)
    assert (info.value.status, info.value.slug) == (422, "invalid-request")
    return info.value.detail


def test_an_item_of_a_list_is_found_by_its_index() -> None:
    detail = _detail({"names": ["An", "Bình\u2029"]}, _Household)
    assert detail == (
        "Expected one line of text: character 5 is a line or paragraph separator (U+2029)"
        " - at `$.names[1]`"
    )


def test_a_part_decoded_on_its_own_names_its_place_in_the_whole() -> None:
    detail = _detail({"names": [" \u0301"]}, _Household, where="$.data")
    assert detail == (
        "Expected one line of text: it holds nothing but spaces and combining marks"
        " - at `$.data.names[0]`"
    )


def test_an_empty_optional_line_is_taken_and_a_noncharacter_is_told() -> None:
    assert decode(b'{"names": ["An"], "note": ""}', _Household).note == ""
    detail = _detail({"names": ["An"], "note": "x\ufffe"}, _Household)
    assert detail == (
        "Expected one line of text: character 2 is U+FFFE, which XML cannot carry - at `$.note`"
    )


def test_a_renamed_field_of_an_audit_export() -> None:
    detail = _detail({"from": "2026-01-01\n"}, AuditExport)
    assert detail == (
        "Expected one line of text: character 11 is a control character (U+000A) - at `$.from`"
    )


def test_other_problems_keep_msgspecs_words() -> None:
    assert _detail({"names": [7]}, _Household) == "Expected `str`, got `int` - at `$.names[0]`"
