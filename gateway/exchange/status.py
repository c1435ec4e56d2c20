"""The forward-only status machine of one recipient of one document (edXML StatusCode 01-16).

Main chain: 01 arrived → 03 accepted → 04 assigned → 05 in progress → 06 done; a recipient may skip
steps forward (systems in service often send 03 then 05) but never go back. 02 (refused) may only
follow nothing or 01, and ends the chain. Recall/update: 13 (requested, recorded when the sender
revokes or updates) may come at any time before the chain is closed; 15 (accepted) closes it; 16
(refused) puts the recipient back where it was, forward moves allowed again.

``advance`` is pure: the caller loads the history, calls it, and stores the code if it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.exchange.errors import StatusTransitionError

__all__ = ["MEANINGS", "StatusState", "advance", "replay"]

MEANINGS: dict[str, str] = {
    "01": "arrived",
    "02": "refused",
    "03": "accepted",
    "04": "assigned",
    "05": "in progress",
    "06": "done",
    "13": "recall requested",
    "15": "recall or update accepted",
    "16": "recall or update refused",
}

_CHAIN = {"01": 1, "03": 2, "04": 3, "05": 4, "06": 5}


@dataclass(frozen=True, slots=True)
class StatusState:
    """Where one recipient stands: ``stage`` is the last main-chain code (or None)."""

    stage: str | None = None
    recall_pending: bool = False
    closed: bool = False  # refused (02) or recalled (15): nothing may follow
    last: str | None = None


def _reject(state: StatusState, code: str, why: str) -> StatusTransitionError:
    return StatusTransitionError(
        f"status {code} cannot follow {state.last or 'nothing'}: {why}",
        current=state.last,
        requested=code,
    )


def advance(state: StatusState | Iterable[str], code: str) -> StatusState:
    """The state after ``code``; ``state`` may also be the history of codes so far.

    Raises StatusTransitionError for an unknown code or a move that is not forward.
    """
    if not isinstance(state, StatusState):
        state = replay(state)
    if code not in MEANINGS:
        raise _reject(state, code, "unknown status code")
    if state.closed:
        raise _reject(state, code, "the recipient's chain is closed")
    if code == "13":
        if state.recall_pending:
            raise _reject(state, code, "a recall is already pending")
        return StatusState(state.stage, True, False, code)
    if code in ("15", "16"):
        if not state.recall_pending:
            raise _reject(state, code, "no recall or update was requested")
        return StatusState(state.stage, False, code == "15", code)
    if state.recall_pending:
        raise _reject(state, code, "answer the pending recall (15 or 16) first")
    if code == "02":
        if state.stage not in (None, "01"):
            raise _reject(state, code, "a document already accepted cannot be refused")
        return StatusState("02", False, True, code)
    current = _CHAIN.get(state.stage, 0) if state.stage else 0
    if _CHAIN[code] <= current:
        raise _reject(state, code, "statuses only move forward")
    return StatusState(code, False, False, code)


def replay(history: Iterable[str]) -> StatusState:
    """Fold a stored history; raises StatusTransitionError if the history itself is invalid."""
    state = StatusState()
    for code in history:
        state = advance(state, code)
    return state
