"""The business-registration connector: ``enterprise.lookup`` over :mod:`connectors.rest`."""

from __future__ import annotations

import logging
from typing import ClassVar
from urllib.parse import quote

from connectors.api import Connector, Endpoint, PermanentError, Request, Result, TransientError
from connectors.business.mapping import UNKNOWN_STATUS, WireEnterprise, to_record
from connectors.identifiers import InvalidIdentifier, check_tax_code
from connectors.rest import RestTransport

__all__ = ["BusinessConnector"]

log = logging.getLogger("lienthong.registries")

# The unknown status codes a connector remembers having logged: a registry that sent a new code
# in every reply would otherwise grow the set without end (past it, no more are logged).
_UNKNOWN_STATUSES_LOGGED = 100


class BusinessConnector(Connector):
    """Enterprise lookup by tax code (10 digits, or 13 as ``NNNNNNNNNN-NNN`` for a branch)."""

    registry: ClassVar[str] = "business"
    operations: ClassVar[frozenset[str]] = frozenset({"enterprise.lookup"})

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._http = RestTransport(self.registry, endpoint, headers={"ApiKey": endpoint.api_key})
        self._unknown_statuses: set[str] = set()

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def handle(self, request: Request) -> Result:
        """Look the enterprise up.

        Raises:
            PermanentError: code ``"invalid-tax-code"`` (checked before any request is sent:
                a bad check digit is the caller's typo, not the registry's business),
                ``"not-found"`` (a 404 with ``maLoi: KHONG_TIM_THAY``), ``"http-401"`` (wrong
                API key), other 4xx.
            TransientError: unreachable, 5xx, timeouts, a reply that is not the contract's
                (any other 404: ``"http-404"``).
        """
        raw = request.params.get("tax_code")
        if not isinstance(raw, str):
            raise PermanentError(self.registry, "tax_code is required", code="invalid-tax-code")
        try:
            tax_code = check_tax_code(raw.strip())
        except InvalidIdentifier as exc:
            raise PermanentError(self.registry, str(exc), code="invalid-tax-code") from exc
        reply = await self._http.request(
            "GET",
            f"api/doanhnghiep/{quote(tax_code)}",
            request_id=request.request_id,
            accept=(404,),
            type=WireEnterprise,
        )
        if reply.status == 404:
            said = reply.data if isinstance(reply.data, dict) else {}
            if said.get("maLoi") == "KHONG_TIM_THAY":
                raise PermanentError(
                    self.registry, f"no enterprise with tax code {tax_code}", code="not-found"
                )
            # Not the registry's answer: a web server's own 404 (a wrong url or base path, a
            # proxy) says nothing of the enterprise, and a registry that answers only that is
            # failing, which its breaker must see.
            raise TransientError(
                self.registry,
                "HTTP 404 without the registry's not-found answer (maLoi KHONG_TIM_THAY): "
                "is its url right?",
                code="http-404",
            )
        wire: WireEnterprise = reply.data
        if wire.maSoDoanhNghiep != tax_code:
            # An answer about another enterprise is a registry fault, not a fact about this one.
            raise TransientError(
                self.registry, f"asked for {tax_code}, answered {wire.maSoDoanhNghiep}"
            )
        try:
            record = to_record(wire)
        except ValueError as exc:
            raise TransientError(self.registry, f"malformed reply: {exc}") from exc
        if record["status"] == UNKNOWN_STATUS:
            self._log_unknown_status(record["status_code"], record["status_label"])
        return Result(data=record, reference=tax_code)

    def _log_unknown_status(self, code: str, label: str) -> None:
        # Once a code: every lookup of such an enterprise meets it, and it is news only once
        # (until STATUSES has it, it is answered as "unknown").
        if (
            code in self._unknown_statuses
            or len(self._unknown_statuses) >= _UNKNOWN_STATUSES_LOGGED
        ):
            return
        self._unknown_statuses.add(code)
        log.warning(
            "business: enterprise status code %r (%r) is not one the gateway knows: "
            "answered as status %r with the code beside it",
            code[:100],
            label[:200],
            UNKNOWN_STATUS,
        )
