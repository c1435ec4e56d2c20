"""``docs inbox --fetch`` writes each package to a hidden ``.part`` beside it first. That part had
one fixed name per document (``.ID.xml.part``): two fetchers at once (an agency's cron overlapping
a manual run) wrote the same file, one truncating what the other had written, and a part left by
a killed fetcher stayed until that very document was fetched again. Each fetcher now writes a
part of its own, locked while it writes it; the next fetch removes those no live fetcher holds.

The fetchers here are real ``lienthong docs inbox --fetch`` processes. Each reaches the hub
through a valve: a proxy that lets the document's answer through up to a few bytes and then holds
the rest, catching its fetcher mid-write for as long as the test wants."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from signing.pdf import sign_pdf
from signing.testing import TestPKI, sample_pdf
from tests.e2e.test_documents import TOKENS, Hub, eventually, package, running_hub
from tests.exchange.factories import NGHE_AN, TAY_NINH_STC

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("pki_server")
BUDGET = 1 << 14  # bytes of a package a valve lets through: more than a fetcher's write buffer


class Valve:
    """A TCP proxy to the hub: a document's answer (what follows a ``GET /v1/documents/d…``)
    passes up to ``budget`` bytes, the rest once :meth:`open` is called."""

    def __init__(self, hub_port: int, budget: int) -> None:
        self.hub_port, self.budget = hub_port, budget
        self.holding = asyncio.Event()  # an answer cut at its budget, its fetcher mid-write
        self._open = asyncio.Event()

    def open(self) -> None:
        self._open.set()

    async def serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        hub, to_hub = await asyncio.open_connection("127.0.0.1", self.hub_port)
        asked = asyncio.Event()

        async def requests() -> None:
            while data := await client.read(1 << 16):
                if b"GET /v1/documents/d" in data:
                    asked.set()  # asked once the inbox's answer is read: all after is the package
                to_hub.write(data)
                await to_hub.drain()

        async def answers() -> None:
            passed = 0
            while data := await hub.read(1 << 16):
                if asked.is_set() and not self._open.is_set():
                    room = max(self.budget - passed, 0)
                    if len(data) > room:
                        to_client.write(data[:room])
                        await to_client.drain()
                        passed, data = self.budget, data[room:]
                        self.holding.set()
                        await self._open.wait()
                    passed += len(data)
                to_client.write(data)
                await to_client.drain()
            to_client.close()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(answers())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            to_hub.close()
            to_client.close()


@asynccontextmanager
async def valve(hub: Hub, budget: int) -> AsyncIterator[tuple[Valve, str]]:
    """A front for the hub on a port the kernel picks, letting ``budget`` bytes through."""
    v = Valve(int(hub.url.rsplit(":", 1)[1]), budget)
    server = await asyncio.start_server(v.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield v, f"http://127.0.0.1:{port}"
    finally:
        v.open()
        server.close()


async def fetcher(url: str, folder: Path, *more: str) -> asyncio.subprocess.Process:
    """``lienthong docs inbox --fetch FOLDER`` as Nghệ An, in a process of its own."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "docs", "inbox", "--fetch", str(folder), "--json",
        *more,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LIENTHONG_URL": url,
             "LIENTHONG_TOKEN": TOKENS[NGHE_AN]},
    )  # fmt: skip


async def finished(proc: asyncio.subprocess.Process) -> list[str]:
    """The files a fetcher says it wrote, once it has exited 0."""
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()
    return [item["file"] for item in json.loads(out)["items"]]


def parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(".part")}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def until(check: Callable[[], bool], what: str) -> None:
    async def polled() -> bool:
        return await asyncio.to_thread(check)

    await eventually(polled, what, limit=20)


@pytest.fixture(scope="module")
def pdf(pki: TestPKI) -> bytes:
    return asyncio.run(
        sign_pdf(sample_pdf("Quyet dinh 12/QD " * 2000), pki.key(f"agency-{TAY_NINH_STC}"))
    )


@pytest.fixture
async def hub(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path, pki) as h:
        yield h


async def deliver(hub: Hub, pki: TestPKI, pdf: bytes, number: str) -> tuple[str, bytes]:
    """A package from Tây Ninh to Nghệ An: its id, and the bytes the hub stored to hand out."""
    async with await hub.send(
        TAY_NINH_STC, package(pki, TAY_NINH_STC, (NGHE_AN,), pdf, number)
    ) as r:
        assert r.status == 202, await r.text()
        doc = r.headers["Location"].rsplit("/", 1)[1]
    async with hub.http.get(f"{hub.url}/v1/documents/{doc}", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200 and r.content_type == "application/xml"
        stored = await r.read()
    digest = hashlib.sha256(stored).hexdigest()
    assert (hub.blob_dir / "sha256" / digest[:2] / digest[2:4] / digest).is_file()  # the hub's own
    assert len(stored) > 3 * BUDGET  # a few valve budgets: the fetchers are caught mid-write
    return doc, stored


async def test_two_fetches_at_once_each_end_with_the_document_whole(
    hub: Hub, pki: TestPKI, pdf: bytes, tmp_path: Path
) -> None:
    doc, stored = await deliver(hub, pki, pdf, "12")
    folder = tmp_path / "in"
    async with (
        valve(hub, BUDGET) as (first_valve, first_url),
        valve(hub, BUDGET) as (second_valve, second_url),
    ):
        first = await fetcher(first_url, folder)
        await first_valve.holding.wait()
        await until(lambda: any(parts(folder).values()), "the first fetcher's part")
        second = await fetcher(second_url, folder)
        await second_valve.holding.wait()
        # Each writes a part of its own: the second took nothing from the first's.
        await until(lambda: len(parts(folder)) == 2 and all(parts(folder).values()), "a part each")
        first_valve.open()
        assert await finished(first) == [str(folder / f"{doc}.xml")]
        assert (folder / f"{doc}.xml").read_bytes() == stored  # whole under its name
        second_valve.open()
        assert await finished(second) == [str(folder / f"{doc}.xml")]
    assert listing(folder) == [f"{doc}.xml"]
    assert (folder / f"{doc}.xml").read_bytes() == stored


@pytest.mark.parametrize("stopped_first", [False, True], ids=["killed", "stopped-then-killed"])
async def test_the_part_of_a_fetcher_killed_mid_write_is_removed_by_the_next_fetch(
    hub: Hub, pki: TestPKI, pdf: bytes, tmp_path: Path, stopped_first: bool
) -> None:
    """Even when the next fetch fetches another document: the killed one's was acknowledged
    meanwhile (another run, another system of the agency's), and it never comes again."""
    doc, _ = await deliver(hub, pki, pdf, "12")
    folder = tmp_path / "in"
    async with valve(hub, BUDGET) as (held, url):
        killed = await fetcher(url, folder)
        await held.holding.wait()
        await until(lambda: any(parts(folder).values()), "the fetcher's part")
        if stopped_first:
            killed.send_signal(signal.SIGSTOP)
        killed.send_signal(signal.SIGKILL)
        assert await killed.wait() == -signal.SIGKILL
    assert listing(folder) == list(parts(folder)) and len(parts(folder)) == 1  # what it left
    async with hub.http.post(f"{hub.url}/v1/documents/{doc}/ack", headers=hub.h(NGHE_AN)) as r:
        assert r.status == 200, await r.text()
    other, stored = await deliver(hub, pki, pdf, "13")
    assert await finished(await fetcher(hub.url, folder)) == [str(folder / f"{other}.xml")]
    assert listing(folder) == [f"{other}.xml"]
    assert (folder / f"{other}.xml").read_bytes() == stored


async def test_the_part_of_a_fetcher_still_writing_survives_another_fetch(
    hub: Hub, pki: TestPKI, pdf: bytes, tmp_path: Path
) -> None:
    doc, stored = await deliver(hub, pki, pdf, "12")
    folder = tmp_path / "in"
    async with valve(hub, BUDGET) as (held, url):
        writing = await fetcher(url, folder)
        await held.holding.wait()
        await until(lambda: any(parts(folder).values()), "the fetcher's part")
        theirs = parts(folder)
        writing.send_signal(signal.SIGSTOP)  # alive, its lock held, however long it stops
        try:
            assert await finished(await fetcher(hub.url, folder)) == [str(folder / f"{doc}.xml")]
            assert parts(folder) == theirs  # untouched: neither removed nor written to
            assert (folder / f"{doc}.xml").read_bytes() == stored
        finally:
            writing.send_signal(signal.SIGCONT)
        held.open()
        assert await finished(writing) == [str(folder / f"{doc}.xml")]
    assert listing(folder) == [f"{doc}.xml"]
    assert (folder / f"{doc}.xml").read_bytes() == stored


async def test_only_abandoned_parts_of_packages_are_removed(hub: Hub, tmp_path: Path) -> None:
    """An abandoned part of a package (``.<id>.xml.<hex>.part``, ``.mime`` alike) goes, even with
    the inbox empty; files that merely look alike (another program's, a user's) stay."""
    folder = tmp_path / "in"
    folder.mkdir()
    abandoned = [".d0123.xml.0123456789abcdef.part", ".d4567.mime.fedcba9876543210.part"]
    others = [
        ".d0123.xml.part",  # an earlier version's fixed name: no lock tells whether it is written
        ".notes.txt.0123456789abcdef.part",
        ".d0123.xml.0123456789ABCDEF.part",
        "d0123.xml.0123456789abcdef.part",
    ]
    for name in abandoned + others:
        (folder / name).write_bytes(b"cut short")
    (folder / ".d8901.xml.0123456789abcdef.part").mkdir()  # not a file: left alone
    assert await finished(await fetcher(hub.url, folder)) == []
    assert listing(folder) == sorted([".d8901.xml.0123456789abcdef.part", *others])
