"""The recipients' forward-only status machine."""

from __future__ import annotations

import pytest

from gateway.exchange.errors import StatusTransitionError
from gateway.exchange.status import StatusState, advance, replay


@pytest.mark.parametrize(
    "history",
    [
        ["01", "03", "04", "05", "06"],
        ["01", "02"],
        ["02"],
        ["01", "03", "05", "06"],  # skipping forward is allowed
        ["01", "13", "16", "03", "06"],  # a refused recall resumes the chain
        ["01", "03", "13", "15"],
        ["01", "03", "04", "05", "06", "13", "16"],
    ],
)
def test_valid_histories(history: list[str]) -> None:
    state = replay(history)
    assert state.last == history[-1]


@pytest.mark.parametrize(
    ("history", "code", "why"),
    [
        (["01", "03"], "01", "forward"),
        (["01", "03", "04"], "03", "forward"),
        (["01", "03"], "03", "forward"),
        (["01", "03"], "02", "accepted cannot be refused"),
        (["01", "02"], "03", "closed"),
        (["01", "13", "15"], "03", "closed"),
        (["01"], "15", "no recall"),
        (["01"], "16", "no recall"),
        (["01", "13"], "13", "already pending"),
        (["01", "13"], "03", "pending recall"),
        (["01"], "07", "unknown"),
        ([], "99", "unknown"),
        ([], "1", "unknown"),
    ],
)
def test_refused_transitions(history: list[str], code: str, why: str) -> None:
    with pytest.raises(StatusTransitionError, match=why) as info:
        advance(history, code)
    assert info.value.slug == "status-transition"
    assert info.value.status == 409
    assert info.value.extra == {"current": history[-1] if history else None, "requested": code}


def test_advance_is_pure() -> None:
    s0 = StatusState()
    s1 = advance(s0, "01")
    assert s0 == StatusState() and s1.stage == "01"
    assert advance(s1, "03") == advance(["01"], "03")
