"""Operators: the outbox's dead letters and their replay (the ``admin`` right)."""

from __future__ import annotations

from aiohttp import web

from gateway import dossiers
from gateway.api.common import (
    SQL_INT_MAX,
    json_response,
    only_parameters,
    parse_int,
    query_int,
    query_text,
)
from gateway.app import RUNTIME
from gateway.audit import Actor
from gateway.auth import require
from gateway.outbox import STATES, JobNotFound, NotDead, list_jobs
from gateway.outbox.views import page, view
from gateway.problems import Problem
from gateway.requestid import REQUEST_ID_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()

_MAX_LIMIT = 500


@routes.get("/v1/admin/outbox")
async def list_outbox(request: web.Request) -> web.Response:
    """``?state=dead&limit=100&after=ID`` → ``{items, next}``; ``next`` feeds ``after``."""
    require(request, "admin")
    only_parameters(request, "state", "limit", "after")
    state = query_text(request, "state")
    if state is not None and state not in STATES:
        raise Problem(
            400,
            "invalid-query",
            f"state must be one of {', '.join(STATES)}",
            parameter="state",
        )
    limit = query_int(request, "limit", 100, lo=1, hi=_MAX_LIMIT)
    after = query_int(request, "after", 0)
    jobs = await request.app[RUNTIME].store.read(  # one more: whether more follow
        lambda tx: list_jobs(tx, state=state, limit=limit + 1, after_id=after)
    )
    return json_response(page(jobs, limit))


@routes.post("/v1/admin/outbox/{id}/replay")
async def replay_job(request: web.Request) -> web.Response:
    """Dead → pending with fresh attempts; audited as ``job.replayed`` by the caller."""
    identity = require(request, "admin")
    runtime = request.app[RUNTIME]
    job_id = parse_int(request.match_info["id"])
    if job_id is None or not 0 < job_id <= SQL_INT_MAX:
        raise Problem(404, "unknown-job", f"no outbox job {request.match_info['id']}")

    try:
        job = await runtime.store.transact(
            lambda tx: dossiers.replay_job(
                tx,
                job_id,
                actor=Actor(identity.subsystem.member, identity.id),
                request_id=request.get(REQUEST_ID_KEY),
            )
        )
    except JobNotFound as exc:
        raise Problem(404, "unknown-job", str(exc)) from None
    except NotDead as exc:
        raise Problem(409, "job-not-dead", str(exc), state=exc.state) from None
    if runtime.worker is not None:
        runtime.worker.wake()
    return json_response(view(job))
