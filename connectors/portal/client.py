"""The portal connector: ``dossier.sync`` and ``dossier.progress`` over :mod:`connectors.rest`."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import msgspec

from connectors.api import Connector, Endpoint, PermanentError, Request, Result, TransientError
from connectors.portal.mapping import progress_record, sync_envelope
from connectors.rest import RestTransport

__all__ = ["PortalConnector"]

PATH = "api/dichvucong"


class _Reply(msgspec.Struct):
    error_code: str
    message: str
    MaGiaoDich: str = ""


class PortalConnector(Connector):
    """Synchronises dossiers and their progress with the national public-service portal."""

    registry: ClassVar[str] = "portal"
    operations: ClassVar[frozenset[str]] = frozenset({"dossier.sync", "dossier.progress"})

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        auth = aiohttp.encode_basic_auth(endpoint.username, endpoint.password)
        self._http = RestTransport(self.registry, endpoint, headers={"Authorization": auth})

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def handle(self, request: Request) -> Result:
        """Send one record; the reference is the portal's transaction id (``MaGiaoDich``).

        Raises:
            PermanentError: code ``"invalid-params"`` (bad params, nothing sent), ``"rejected"``
                (the portal refused the record; its reasons in the message), ``"http-401"``
                (wrong credentials), ``"http-409"`` (idempotency key reused for another record).
            TransientError: unreachable, 5xx, timeouts, a reply that is not the contract's.
        """
        try:
            if request.operation == "dossier.sync":
                body = sync_envelope(request.params)
            else:
                body = progress_record(request.params)
        except (ValueError, TypeError, AttributeError) as exc:
            raise PermanentError(self.registry, str(exc), code="invalid-params") from exc
        reply = await self._http.request(
            "POST",
            PATH,
            json=body,
            idempotency_key=request.idempotency_key,
            request_id=request.request_id,
            accept=(400,),
            type=_Reply,
        )
        if reply.status == 400:
            raise PermanentError(self.registry, _reasons(reply.data), code="rejected")
        answer: _Reply = reply.data
        if answer.error_code != "0":
            raise PermanentError(
                self.registry, f"{answer.error_code}: {answer.message}", code=answer.error_code
            )
        if not answer.MaGiaoDich:
            raise TransientError(self.registry, "malformed reply: no MaGiaoDich")
        code = body["data"][0]["MaHoSo"]
        return Result(
            data={"code": code, "transaction": answer.MaGiaoDich}, reference=answer.MaGiaoDich
        )


def _reasons(data: Any) -> str:
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
        if data.get("message"):
            return str(data["message"])
    return "record rejected (no reason given)"
