"""What free text keeps of a number that may be a person's: a personal id written in groups.

Found by probing: only an unbroken run of 9 or more digits was withheld, and a CCCD is commonly
written in groups of three (``079 198 105 555``, ``CCCD-079-198-105-555``): a registry's words,
an operator's reason or a mistyped path quoting it so reached the log as they were. Dates, times,
dossier codes, agency ids and addresses must come through as they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit import WITHHELD, AuditEvent, append, decode_entry, withhold_numbers
from gateway.store import SQLiteStore


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("no citizen 079198105555", f"no citizen {WITHHELD}"),
        ("no citizen 079 198 105 555", f"no citizen {WITHHELD}"),
        ("no citizen 079-198-105-555.", f"no citizen {WITHHELD}."),
        ("no citizen 079.198.105.555", f"no citizen {WITHHELD}"),
        ("no citizen 079.198.105.155", f"no citizen {WITHHELD}"),  # no IPv4 address: its 0
        ("CCCD-079-198-105-555 unknown", f"CCCD-{WITHHELD} unknown"),
        ("CCCD 0791 9810 5555", f"CCCD {WITHHELD}"),
        ("CMND 123 456 789 (old)", f"CMND {WITHHELD} (old)"),
        ("phone 0912 345 678", f"phone {WITHHELD}"),
        ("BHXH 79 1234 5678", f"BHXH {WITHHELD}"),
        ("card TE1 79 7912345678", f"card TE1 79 {WITHHELD}"),
        # A no-break space (a web page's, a word processor's, a locale's thousands separator).
        ("no citizen 079\u00a0198\u00a0105\u00a0555", f"no citizen {WITHHELD}"),
        ("no citizen 079\u202f198\u202f105\u202f555", f"no citizen {WITHHELD}"),
    ],
)
def test_a_personal_id_written_in_groups_is_withheld(text: str, kept: str) -> None:
    assert withhold_numbers(text) == kept


@pytest.mark.parametrize(
    "text",
    [
        "registered on 2026-12-07 08:30:15 (UTC)",
        "at 2026-12-07T08:30:15.123456+07:00",
        "the birth on 01/11/2026 10:15 to this mother",
        "the birth on 01.11.2026 10.15",
        "from 07-12-2026 to 08-12-2026",
        "between 2026-12-07 2026-12-08",
        "dossier 000.00.00.H41-261122-0001 step 2",
        "document 000.00.11.H53,2026/12/07,2491/STC-BCTC",
        "KS.040.2026.000001 issued",
        "cannot connect to 192.168.100.200:8080 (10.0.0.5 too)",
        "attempts 1 2 3 4 5 6 7 8 9 10",
        "retry in 12.5s, 3 of 10",
    ],
)
def test_dates_times_codes_and_addresses_are_kept(text: str) -> None:
    assert withhold_numbers(text) == text


async def test_an_events_detail_keeps_no_grouped_personal_id(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "a.db") as store:
        detail = "operator: wrong id 079 198 105 555 corrected on 2026-12-07 08:30"
        await store.transact(
            lambda tx: append(tx, AuditEvent(action="dossier.corrected", detail=detail))
        )
        [row] = await store.read(lambda tx: tx.all("audit.range", start=0, stop=1))
    assert decode_entry(bytes(row["entry"]))["detail"] == (
        f"operator: wrong id {WITHHELD} corrected on 2026-12-07 08:30"
    )
