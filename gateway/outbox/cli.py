"""``lienthong outbox list|replay``: what operators run when deliveries fail.

The lead's ``gateway.cli`` adds :data:`commands` to the top-level group. Exit status is 0 only on
success; every error is one line on stderr (click's ``Error: …``) with exit status 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from gateway.cliopts import (
    cli_user,
    config_option,
    existing_store,
    json_option,
    open_settings,
)
from gateway.store import Store, StoreError, Tx

from .errors import OutboxError
from .jobs import STATES, Job, list_jobs
from .views import escape_controls, iso, page, view

__all__ = ["commands", "outbox"]

T = TypeVar("T")


def _run(config: Path | None, work: Callable[[Store], Any], *, readonly: bool = False) -> Any:
    """``work`` on the configured store; ``readonly`` for a command that only reads it (then a
    store this user may not write will do)."""
    store = existing_store(open_settings(config), readonly=readonly)

    async def main() -> Any:
        async with store:
            return await work(store)

    try:
        return asyncio.run(main())
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None


def _one_line(text: str | None, width: int) -> str:
    flat = escape_controls(" ".join((text or "").split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _due(job: Job) -> str:
    """When a pending job is due, or when a running one's lease ends (its holder's, if that
    gateway stopped): why a job waits, told without --json."""
    if job.state == "pending":
        return iso(job.run_after)
    if job.state == "running" and job.lease_until is not None:
        return f"lease {iso(job.lease_until)}"
    return "-"


def _table(jobs: list[Job]) -> str:
    header = ("ID", "KIND", "DOSSIER", "ATTEMPTS", "STATE", "DUE", "LAST ERROR")
    rows = [
        (
            str(j.id),
            j.kind,
            j.dossier or j.document or "-",
            str(j.attempts),
            j.state,
            _due(j),
            _one_line(j.last_error, 70) or "-",
        )
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines)


@click.group("outbox")
def outbox() -> None:
    """Inspect outbox jobs and replay dead ones."""


@outbox.command("list")
@config_option
@click.option("--dead", is_flag=True, help="only dead jobs (same as --state dead)")
@click.option("--state", type=click.Choice(STATES), help="only jobs in this state")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option(
    "--after", "after_id", type=click.IntRange(0, 2**63 - 1), default=0, help="ids after this one"
)
@json_option
def list_command(
    config: Path | None,
    dead: bool,
    state: str | None,
    limit: int,
    after_id: int,
    as_json: bool,
) -> None:
    """List jobs in id order, oldest first."""
    if dead:
        if state not in (None, "dead"):
            raise click.UsageError("--dead and --state disagree")
        state = "dead"

    async def work(store: Store) -> list[Job]:
        # One more than asked for tells whether more follow: a full page alone does not.
        return await store.read(
            lambda tx: list_jobs(tx, state=state, limit=limit + 1, after_id=after_id)
        )

    read: list[Job] = _run(config, work, readonly=True)
    listed = page(read, limit)
    if as_json:
        click.echo(msgspec.json.encode(listed).decode())
    elif not listed.items:
        click.echo(f"no {state + ' ' if state else ''}jobs")
    else:
        click.echo(_table(read[:limit]))
        if listed.next is not None:
            click.echo(f"… more: --after {listed.next}")


# A negative id would be parsed as an unknown option ("No such option '-1'"): taken as the
# argument instead, it gets the range's own message.
@outbox.command("replay", context_settings={"ignore_unknown_options": True})
@config_option
@click.argument("job_id", type=click.IntRange(1, 2**63 - 1))
@json_option
def replay_command(config: Path | None, job_id: int, as_json: bool) -> None:
    """Give a dead job a fresh set of attempts (audited as job.replayed)."""
    from gateway.audit import Actor

    actor = Actor.cli(cli_user())

    async def work(store: Store) -> Job:
        from gateway.dossiers import replay_job  # a flow's step is resumed with its dossier

        def unit(tx: Tx) -> Job:
            return replay_job(tx, job_id, actor=actor)

        return await store.transact(unit)

    job: Job = _run(config, work)
    if as_json:
        click.echo(msgspec.json.encode(view(job)).decode())
    else:
        click.echo(
            f"job {job.id} ({job.kind}, {job.dossier or job.document or 'no dossier'}) "
            "is pending again; a running gateway picks it up at its next poll"
        )


commands: list[click.Command] = [outbox]
