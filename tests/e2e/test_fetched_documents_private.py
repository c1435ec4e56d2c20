"""``docs inbox --fetch`` writes each package readable by its owner alone (0600), whatever the
umask, as the store and the keys are: an official letter can name citizens (a decision about a
person, a list of beneficiaries). Found by probing: the fetched files were 0644."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.exchange.cli import docs
from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from tests.conftest import file_mode
from tests.e2e.test_documents import TOKENS, package, running_hub
from tests.exchange.factories import NGHE_AN, TAY_NINH_STC


@pytest.mark.usefixtures("debian_umask", "pki_server")
async def test_a_fetched_package_is_the_owners_alone(tmp_path: Path, pki: TestPKI) -> None:
    pdf = await sign_pdf(sample_pdf("Quyet dinh 12/QD"), pki.key(f"agency-{TAY_NINH_STC}"))
    async with running_hub(tmp_path, pki) as hub:
        async with await hub.send(TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), pdf)) as r:
            assert r.status == 202, await r.text()
        env = {"LIENTHONG_URL": hub.url, "LIENTHONG_TOKEN": TOKENS[NGHE_AN]}
        args = ["inbox", "--fetch", str(tmp_path / "in"), "--json"]
        done = await asyncio.to_thread(
            CliRunner().invoke, docs, args, env=env, catch_exceptions=False
        )
    assert done.exit_code == 0, done.output
    (item,) = json.loads(done.output)["items"]
    fetched = Path(item["file"])
    assert (await asyncio.to_thread(fetched.read_bytes)).startswith(b"<?xml")
    assert await asyncio.to_thread(file_mode, fetched) == 0o600
