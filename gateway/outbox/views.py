"""The outside view of a job, shared by the admin API and the CLI's ``--json``.

The payload is left out on purpose: flow steps carry citizens' data, and an operator deciding
whether to replay needs the error, the dossier and the attempts, not the personal details.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import msgspec

from .jobs import Job, step_of

__all__ = ["JobList", "JobView", "escape_controls", "iso", "page", "view"]


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    step: str
    key: str
    dossier: str | None
    document: str | None
    state: str
    attempts: int
    last_error: str | None
    run_after: str  # ISO 8601 UTC
    created_at: str
    updated_at: str
    owner: str | None = None
    lease_until: str | None = None


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[JobView]
    next: int | None  # pass as ``after`` for the next page; None when this page is the last


def escape_controls(text: str) -> str:
    """``text`` with every control and format character but newline and tab written out as an
    escape (``\\x1b``, ``\\u202e``): what a job's error quotes comes from outside (a registry's
    message, a proxy's error page), and a terminal acts on ESC, BEL or a bidi override — a
    portal's refusal cleared the operator's screen and printed, in green, that nothing was dead."""
    return "".join(
        ch.encode("unicode_escape").decode()
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf")
        else ch
        for ch in text
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        step=step_of(job),
        key=job.key,
        dossier=job.dossier,
        document=job.document,
        state=job.state,
        attempts=job.attempts,
        last_error=job.last_error,
        run_after=iso(job.run_after),
        created_at=iso(job.created_at),
        updated_at=iso(job.updated_at),
        owner=job.owner,
        lease_until=None if job.lease_until is None else iso(job.lease_until),
    )


def page(read: list[Job], limit: int) -> JobList:
    """A page of ``limit`` jobs from ``read``, up to ``limit + 1`` jobs: one more than the page
    tells whether jobs follow it (``next`` set), which a full page alone does not."""
    jobs = read[:limit]
    more = len(read) > limit
    return JobList(items=[view(j) for j in jobs], next=jobs[-1].id if jobs and more else None)
