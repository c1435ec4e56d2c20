"""What ``serve``'s log holds at each --log-level: the gateway's own lines at the level chosen,
never a library's debugging, which quoted whole signed registry requests (personal ids, names,
birth dates)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.logs import OWN_LOGGERS, configure_logging
from gateway.samples import sample_dossiers

LIBRARIES = ("pyhanko", "pyhanko_certvalidator", "signxml", "zeep", "aiohttp")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging sets the process's loggers: put them back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    named = [logging.getLogger(n) for n in (*OWN_LOGGERS, *LIBRARIES)]
    levels = [lg.level for lg in named]
    yield
    root.handlers[:], root.level = handlers, level
    for lg, was in zip(named, levels, strict=True):
        lg.setLevel(was)


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def test_debug_logs_the_gateways_lines_and_no_signed_request(
    make_gateway: Any, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """A birth registration is a signed civil-status request: signxml logged it whole at DEBUG,
    the mother's personal id and name with it."""
    birth = next(d for d in sample_dossiers(8, seed=0, death_share=0))
    mother = birth["applicant"]
    configure_logging("DEBUG")
    async with make_gateway() as gw:
        async with await gw.post("/v1/dossiers", birth) as r:
            assert r.status == 202, await r.text()
        done = await gw.wait_status(birth["code"], {"completed", "needs_attention", "failed"})
        assert done["status"] == "completed", done["steps"]
    err = capsys.readouterr().err
    lines = _lines(err)
    assert any(e["level"] == "debug" and e["logger"].startswith("lienthong.") for e in lines)
    leaked = [e for e in lines if mother["personal_id"] in json.dumps(e, ensure_ascii=False)]
    assert leaked == [], leaked[:2]
    libraries = {e["logger"] for e in lines if e["logger"].split(".")[0] not in OWN_LOGGERS}
    below = [e for e in lines if e["logger"] in libraries and e["level"] in ("debug", "info")]
    assert below == [], below[:2]
