"""The gateway's JSON log lines."""

from __future__ import annotations

import json
import logging
import sys

from gateway.logs import JsonFormatter


def test_a_traceback_keeps_no_personal_id() -> None:
    """An exception's text is foreign words (a registry's, a library's quoting a value): its
    traceback may carry a personal id or card number, as a registry's error does, and logs are
    shipped and read more widely than the audit log. Runs of nine digits or more are withheld,
    as they are from the audit log's free text; the rest of the traceback is kept."""
    try:
        raise KeyError("no household for 019053987654 (card DN4797924134567)")
    except KeyError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "lookup failed", None, sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "019053987654" not in entry["error"] and "4797924134567" not in entry["error"]
    assert "no household for [number withheld] (card DN[number withheld])" in entry["error"]
    assert entry["error"].startswith("Traceback") and "KeyError" in entry["error"]
    assert entry["message"] == "lookup failed"


def test_a_traceback_keeps_its_amounts_of_money() -> None:
    """An amount written the Vietnamese way ("2.000.000.000đ") is no personal id and is kept; a
    personal id before a currency word is withheld all the same (tests/audit/test_withhold_amounts)."""
    try:
        raise ValueError("mức 2.000.000.000đ vượt hạn mức của 079 198 105 555 đồng")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "payment failed", None, sys.exc_info()
        )
    error = json.loads(JsonFormatter().format(record))["error"]
    assert "079 198 105 555" not in error
    assert "ValueError: mức 2.000.000.000đ vượt hạn mức của [number withheld] đồng" in error
