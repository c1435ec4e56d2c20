"""The business-registration connector: ``enterprise.lookup`` over :mod:`connectors.rest`."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from connectors.api import Connector, Endpoint, PermanentError, Request, Result, TransientError
from connectors.business.mapping import WireEnterprise, to_record
from connectors.identifiers import InvalidIdentifier, check_tax_code
from connectors.rest import RestTransport

__all__ = ["BusinessConnector"]


class BusinessConnector(Connector):
    """Enterprise lookup by tax code (10 digits, or 13 as ``NNNNNNNNNN-NNN`` for a branch)."""

    registry: ClassVar[str] = "business"
    operations: ClassVar[frozenset[str]] = frozenset({"enterprise.lookup"})

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._http = RestTransport(self.registry, endpoint, headers={"ApiKey": endpoint.api_key})

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
        return Result(data=record, reference=tax_code)
