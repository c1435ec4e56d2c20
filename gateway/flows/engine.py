"""The one engine that runs every flow: an outbox job handler for ``flow.step`` jobs.

A job names a dossier and a step index. The handler reads the dossier and earlier outputs, builds
the step's parameters, calls the registry through its connector (behind that registry's circuit
breaker) with the job's key as the idempotency key, judges the answer, and returns the unit of work
that records it — which the outbox worker commits together with the job's completion and its audit
event. The recording schedules the next step, so a flow advances one durable step at a time and a
crash anywhere resumes from the last committed step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from connectors.api import Connector, ConnectorError, PermanentError, Verdict
from gateway import dossiers
from gateway.flows.definitions import FLOWS, Context, Step
from gateway.metrics import Metrics
from gateway.outbox.breaker import Breakers, call_registry
from gateway.outbox.jobs import Job
from gateway.outbox.worker import Delivery, after_giving_up
from gateway.store import Store, Tx

__all__ = ["FlowStepHandler", "slim"]

# Large binary results are kept by digest in the dossier's history; the document itself is
# verified by the connector and handed on, not stored in every status read.
_BINARY_FIELDS = ("certificate_pdf",)


def slim(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The result without its large binary fields, and the SHA-256 of each field removed."""
    kept: dict[str, Any] = {}
    digests: dict[str, str] = {}
    for key, value in data.items():
        if key in _BINARY_FIELDS and isinstance(value, str):
            raw = base64.b64decode(value)
            digests[key] = hashlib.sha256(raw).hexdigest()
            kept[f"{key}_sha256"] = digests[key]
            kept[f"{key}_bytes"] = len(raw)
        else:
            kept[key] = value
    return kept, digests


class FlowStepHandler:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, Connector],
        breakers: Breakers,
        *,
        citizen_key: bytes,
        metrics: Metrics | None = None,
        on_result: Callable[[str, Step, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.breakers = breakers
        self.citizen_key = citizen_key  # hashes a personal id an answer issues (Step.issues)
        self.metrics = metrics
        self.on_result = on_result  # lets the demo keep artefacts (signed certificates)

    def _load(self, tx: Tx, code: str, idx: int) -> tuple[Context, Step, dict[str, Any] | None]:
        """The step's context, the step, and its request as kept when it was scheduled."""
        row = tx.one("dossiers.get", code=code)
        if row is None:
            raise PermanentError("gateway", f"dossier {code} does not exist")
        steps = tx.all("dossiers.steps", dossier=code)
        ctx = Context(msgspec.json.decode(row["body"]), dossiers.step_outputs(steps))
        # The dossier's own step, by the name it was accepted with (see Flow).
        step = FLOWS[row["flow"]].step(steps[idx]["name"])
        kept = tx.one("dossiers.request", dossier=code, idx=idx)
        return ctx, step, None if kept is None else msgspec.json.decode(kept["body"])

    async def run(self, job: Job) -> Callable[[Tx], Any]:
        code, idx = job.dossier, int(job.payload["index"])
        assert code is not None
        ctx, step, kept = await self.store.read(lambda tx: self._load(tx, code, idx))
        why = step.skip(ctx) if step.skip is not None else None
        if why:
            return self._skipped(code, idx, step, job, why)
        try:
            # A write sends what it was first built as: the registry may hold it under this key.
            params = kept if kept is not None else step.params(ctx)
        except KeyError as exc:  # the dossier lacks what this step needs: an operator corrects it
            raise PermanentError(
                step.registry, f"the dossier has no {exc.args[0]!r} for {step.name}"
            ) from None
        try:
            result = await call_registry(
                self.breakers.get(step.registry),
                step.operation,
                lambda: self.connectors[step.registry].call(
                    step.operation,
                    params,
                    idempotency_key=job.key,
                    request_id=str(job.payload.get("request_id") or job.key),
                ),
                self.metrics,
            )
        except Verdict as verdict:
            if not step.final_refusal:
                raise  # stops the flow as any refusal does
            return self._refused(code, idx, step, job, verdict)
        except PermanentError as refusal:
            hint = step.advice(ctx, refusal) if step.advice is not None else None
            if not hint:
                raise
            raise PermanentError(
                refusal.registry,
                f"{refusal.message}: {hint}",
                code=refusal.code,
                recorded=refusal.recorded,
            ) from refusal
        if step.judge is not None:
            step.judge(ctx, result.data)
        if self.on_result is not None:
            self.on_result(code, step, result.data)
        if step.keep is None:
            kept = result.data
        elif callable(step.keep):
            kept = step.keep(result.data)
        else:
            kept = {k: result.data.get(k) for k in step.keep}
        data, digests = slim(kept)

        issued = str(result.data.get("personal_id") or "") if step.issues else ""
        audited = result.reference  # what the step.delivered event says of the reference
        if step.personal_reference and result.reference:
            audited = None
            digests["reference_hmac"] = hmac.new(
                self.citizen_key, result.reference.encode(), hashlib.sha256
            ).hexdigest()

        def record(tx: Tx) -> Delivery:
            dossiers.step_delivered(
                tx, code, idx, attempts=job.attempts, data=data, reference=result.reference
            )
            if issued:
                dossiers.issued(tx, code, issued, str(step.issues), self.citizen_key)
            return Delivery(
                reference=audited,
                service=f"{step.registry}/{step.operation}",
                digests=digests,
            )

        return record

    @staticmethod
    def _skipped(code: str, idx: int, step: Step, job: Job, why: str) -> Callable[[Tx], Delivery]:
        """The unit that records a step with nothing to do for this dossier, done unsent."""

        def record(tx: Tx) -> Delivery:
            dossiers.step_delivered(
                tx, code, idx, attempts=job.attempts, data={"skipped": why}, reference=None
            )
            return Delivery(service=f"{step.registry}/{step.operation}", detail=f"not sent: {why}")

        return record

    @staticmethod
    def _refused(
        code: str, idx: int, step: Step, job: Job, verdict: Verdict
    ) -> Callable[[Tx], Delivery]:
        """The unit that ends the step with the registry's verdict as its outcome, told to the
        dossier's client with the registry's code and words, and moves the flow on."""

        def record(tx: Tx) -> Delivery:
            dossiers.step_refused(
                tx,
                code,
                idx,
                attempts=job.attempts,
                verdict={"code": verdict.code, "reason": verdict.reason},
                error=str(verdict),
            )
            return Delivery(
                refused=True,
                service=f"{step.registry}/{step.operation}",
                # The code, not the words (which may name a person): as a failed step's event.
                detail=f"attempt {job.attempts}: {step.registry} refused the request "
                f"(code {verdict.code}), a verdict: the flow goes on without it",
            )

        return record

    def failed(
        self,
        tx: Tx,
        job: Job,
        error: BaseException,
        *,
        dead: bool,
        retry_in: float | None,
        given_up: str | None = None,
    ) -> None:
        """The step's failed attempt in its dossier, with the registry's own words (which the
        job's last_error withholds); a step given up for its time of failing says so first: the
        province's operator tells "BHXH failed every call for three days" from a few refusals."""
        assert job.dossier is not None
        said = str(error) or type(error).__name__  # never empty: a bare TimeoutError
        dossiers.step_failed(
            tx,
            job.dossier,
            int(job.payload["index"]),
            attempts=job.attempts,
            error=said if given_up is None else after_giving_up(given_up, said),
            dead=dead,
            permanent=isinstance(error, PermanentError),
            # The registry recorded the write, whatever became of the call after it.
            reference=error.recorded if isinstance(error, ConnectorError) else None,
        )
