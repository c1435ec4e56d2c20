"""The CLI against a real store file, through click's CliRunner (sync tests: the CLI runs its own
event loop)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.outbox import enqueue, get_job
from gateway.outbox.cli import commands, outbox
from gateway.outbox.testing import audit_entries
from gateway.store import SQLiteStore, Tx


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose store holds jobs 1 (pending), 2 (dead) and 3 (dead, on a document)."""
    path = tmp_path / "lienthong.toml"
    path.write_text('[store]\nurl = "sqlite:///data/lienthong.db"\n', "utf-8")

    def fill(tx: Tx) -> None:
        for i, (state, dossier, document) in enumerate(
            [("pending", "D-1", None), ("dead", "D-2", None), ("dead", None, "DOC-3")], start=1
        ):
            enqueue(
                tx,
                kind="flow.step",
                key=f"k{i}",
                payload={"step": f"s{i}"},
                dossier=dossier,
                document=document,
                now=1000.0,
            )
            if state == "dead":
                tx.all("outbox.claim", owner="w/1", now=10**10, lease=1, limit=5)
                tx.execute(
                    "outbox.bury",
                    id=i,
                    owner="w/1",
                    now=1001.0,
                    error=f"PermanentError: registry said no\nto job {i}",
                )
                tx.execute(
                    "outbox.retry",
                    id=1,
                    owner="w/1",
                    error=None,
                    delay=-1.0,  # due at 1000.0
                    refund=1,
                    now=1001.0,
                )  # leave job 1 pending and untried

    async def setup() -> None:
        async with SQLiteStore(tmp_path / "data" / "lienthong.db") as store:
            await store.transact(fill)

    asyncio.run(setup())
    return path


def states(config: Path) -> dict[int, tuple[str, int]]:
    async def read() -> dict[int, tuple[str, int]]:
        async with SQLiteStore(config.parent / "data" / "lienthong.db") as store:
            found = {}
            for i in (1, 2, 3):
                job = await store.read(lambda tx, i=i: get_job(tx, i))
                assert job is not None
                found[i] = (job.state, job.attempts)
            return found

    return asyncio.run(read())


def test_the_group_is_exported_for_the_main_cli() -> None:
    assert commands == [outbox]
    assert set(outbox.commands) == {"list", "replay"}


def test_list_shows_a_table(config: Path) -> None:
    result = CliRunner().invoke(outbox, ["list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = ["ID", "KIND", "DOSSIER", "ATTEMPTS", "STATE", "DUE", "LAST", "ERROR"]
    assert lines[0].split() == header
    # When a pending job is due (a running one: when its lease ends), so that an operator sees
    # why a job waits.
    assert lines[1].split()[:6] == [
        "1", "flow.step", "D-1", "0", "pending", "1970-01-01T00:16:40+00:00"
    ]  # fmt: skip
    assert lines[2].split()[:6] == ["2", "flow.step", "D-2", "1", "dead", "-"]
    assert lines[2].endswith("PermanentError: registry said no to job 2")  # one line per job
    assert lines[3].split()[:6] == ["3", "flow.step", "DOC-3", "1", "dead", "-"]
    assert len(lines) == 4


def test_list_shows_when_a_running_jobs_lease_ends(config: Path) -> None:
    async def claim() -> None:
        async with SQLiteStore(config.parent / "data" / "lienthong.db") as store:
            await store.transact(
                lambda tx: tx.all("outbox.claim", owner="w/2", now=2000.0, lease=60, limit=1)
            )

    asyncio.run(claim())
    result = CliRunner().invoke(outbox, ["list", "--config", str(config), "--state", "running"])
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[1].split()
    assert row[:7] == [
        "1",
        "flow.step",
        "D-1",
        "1",
        "running",
        "lease",
        "1970-01-01T00:34:20+00:00",
    ]


def test_list_dead_as_json_with_the_config_from_the_environment(config: Path) -> None:
    result = CliRunner().invoke(
        outbox, ["list", "--dead", "--json"], env={"LIENTHONG_CONFIG": str(config)}
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [j["id"] for j in doc["items"]] == [2, 3]
    assert doc["next"] is None
    first = doc["items"][0]
    assert (first["state"], first["step"], first["dossier"], first["attempts"]) == (
        "dead",
        "s2",
        "D-2",
        1,
    )
    assert "payload" not in first  # personal data stays out of listings
    assert first["created_at"] == "1970-01-01T00:16:40+00:00"


def test_list_pages(config: Path) -> None:
    runner = CliRunner()
    first = json.loads(
        runner.invoke(outbox, ["list", "--config", str(config), "--json", "--limit", "2"]).output
    )
    assert [j["id"] for j in first["items"]] == [1, 2] and first["next"] == 2
    rest = json.loads(
        runner.invoke(
            outbox, ["list", "--config", str(config), "--json", "--limit", "2", "--after", "2"]
        ).output
    )
    assert [j["id"] for j in rest["items"]] == [3] and rest["next"] is None


def test_list_says_so_when_empty(config: Path) -> None:
    result = CliRunner().invoke(outbox, ["list", "--config", str(config), "--state", "running"])
    assert result.exit_code == 0
    assert result.output.strip() == "no running jobs"


def test_contradictory_filters_are_a_usage_error(config: Path) -> None:
    result = CliRunner().invoke(
        outbox, ["list", "--config", str(config), "--dead", "--state", "done"]
    )
    assert result.exit_code == 2
    assert "--dead and --state disagree" in result.output


def test_replay_revives_a_dead_job(config: Path) -> None:
    result = CliRunner().invoke(outbox, ["replay", "2", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert (doc["id"], doc["state"], doc["attempts"]) == (2, "pending", 0)
    assert states(config) == {1: ("pending", 0), 2: ("pending", 0), 3: ("dead", 1)}

    async def events() -> list[dict[str, object]]:
        async with SQLiteStore(config.parent / "data" / "lienthong.db") as store:
            return await audit_entries(store)

    [event] = asyncio.run(events())
    assert event["action"] == "job.replayed"
    # The command line is no member: "cli", and the login name as its subsystem.
    assert event["member"] == "cli" and str(event["subsystem"]).startswith("cli:")
    assert event["service"] == "admin"


def test_replay_text_output(config: Path) -> None:
    result = CliRunner().invoke(outbox, ["replay", "3", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("job 3 (flow.step, DOC-3) is pending again")


@pytest.mark.parametrize(
    ("job_id", "message"),
    [("99", "Error: no outbox job 99"), ("1", "Error: outbox job 1 is pending, not dead")],
)
def test_replay_refusals_are_one_line_and_exit_1(config: Path, job_id: str, message: str) -> None:
    result = CliRunner().invoke(outbox, ["replay", job_id, "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert len(result.output.strip().splitlines()) == 1
    assert states(config)[1] == ("pending", 0)


def test_a_missing_config_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(outbox, ["list"], env={"LIENTHONG_CONFIG": None})
    assert result.exit_code == 1
    assert "no configuration" in result.output


def test_a_missing_store_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "lienthong.toml"
    path.write_text('[store]\nurl = "sqlite:///nowhere.db"\n', "utf-8")
    result = CliRunner().invoke(outbox, ["list", "--config", str(path)])
    assert result.exit_code == 1
    assert "no store at" in result.output
    assert not (tmp_path / "nowhere.db").exists()


def _foreign_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Nguyễn Văn A')")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is not a lienthong store"),
        (lambda p: p.write_text("hello\n"), "is not a SQLite database"),
        (_foreign_db, "is not a lienthong store (no table audit_events, dossiers, outbox_jobs)"),
        (lambda p: p.mkdir(), "(a folder)"),
    ],
    ids=["empty-file", "text-file", "another-applications-database", "a-folder"],
)
def test_a_file_that_is_not_a_store_is_refused_and_left_as_it_was(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    target = tmp_path / "other.db"
    make(target)
    before = sorted((p.name, p.read_bytes() if p.is_file() else b"") for p in tmp_path.iterdir())
    config = tmp_path / "lienthong.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{target}"\n', "utf-8")
    result = CliRunner().invoke(outbox, ["list", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    after = sorted(
        (p.name, p.read_bytes() if p.is_file() else b"") for p in tmp_path.iterdir() if p != config
    )
    assert after == before  # no -wal file, no tables, nothing switched to WAL


@pytest.mark.parametrize(
    "command",
    [["outbox", "list"], ["flows", "resume", "000.00.00.H41-261122-0001"], ["audit", "verify"]],
    ids=" ".join,
)
def test_an_unreachable_store_is_one_line_for_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    from gateway.cli import main

    config = tmp_path / "lienthong.toml"
    config.write_text('[store]\nurl = "postgresql://postgres@127.0.0.1:1/test"\n', "utf-8")
    result = CliRunner().invoke(main, [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: store: PostgreSQL store could not open")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args", [["replay", str(2**63)], ["list", "--after", str(2**64)]], ids=["replay", "list"]
)
def test_ids_beyond_the_stores_integers_are_usage_errors(config: Path, args: list[str]) -> None:
    result = CliRunner().invoke(outbox, [*args, "--config", str(config)])
    assert result.exit_code == 2, result.output  # click's usage error, not an OverflowError
    assert "is not in the range" in result.output


TRAP = "\x1b[2J\x1b[H\x1b[32mOK: outbox empty, no dead letters\x1b[8m\a\u202e"


def test_list_never_prints_what_a_terminal_would_act_on(config: Path) -> None:
    """A registry's or portal's words (an error page, a refusal) are quoted in last_error: an
    escape sequence there cleared the operator's screen and wrote, in green, that nothing was
    dead. They are shown escaped, as text."""
    db = config.parent / "data" / "lienthong.db"
    raw = sqlite3.connect(db)
    raw.execute("UPDATE outbox_jobs SET last_error = ? WHERE id = 2", (f"E42: {TRAP}",))
    raw.commit()
    raw.close()
    result = CliRunner().invoke(outbox, ["list", "--config", str(config), "--dead"])
    assert result.exit_code == 0, result.output
    assert all(ch.isprintable() for ch in result.output.replace("\n", ""))
    assert r"E42: \x1b[2J\x1b[H\x1b[32mOK: outbox empty" in result.output


def test_a_page_that_ends_the_list_says_no_more(config: Path) -> None:
    """Three jobs, three asked for: no "… more" (its --after N then found nothing)."""
    runner = CliRunner()
    table = runner.invoke(outbox, ["list", "--config", str(config), "--limit", "3"]).output
    assert "more" not in table and len(table.splitlines()) == 4
    doc = json.loads(
        runner.invoke(outbox, ["list", "--config", str(config), "--limit", "3", "--json"]).output
    )
    assert [j["id"] for j in doc["items"]] == [1, 2, 3] and doc["next"] is None
    shorter = runner.invoke(outbox, ["list", "--config", str(config), "--limit", "2"]).output
    assert shorter.splitlines()[-1] == "… more: --after 2"
