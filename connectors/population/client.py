"""The population registry connector (CSDLQG về dân cư, C06): citizen lookup and permanent
residence registration / de-registration over SOAP."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import ClassVar

import schemas
from connectors.api import Connector, Endpoint, PermanentError, Request, Result, TransientError
from connectors.population import mapping
from connectors.soap import SoapClient

__all__ = ["WSDL", "PopulationConnector", "auth_headers"]

WSDL = schemas.path("wsdl", "population.wsdl")


def auth_headers(endpoint: Endpoint, url: str, *, now_ms: int | None = None) -> dict[str, str]:
    """The national platform's request headers: ``Authorization`` (Basic with a SHA-256 over the
    URL, user, timestamp and secret), ``Timestamp`` (epoch ms), ``X-Road-Client``, ``ApiKey``."""
    timestamp = str(now_ms if now_ms is not None else time.time_ns() // 1_000_000)
    headers = {
        "Authorization": mapping.authorization(url, endpoint.username, timestamp, endpoint.secret),
        "Timestamp": timestamp,
    }
    if endpoint.client_id:
        headers["X-Road-Client"] = endpoint.client_id
    if endpoint.api_key:
        headers["ApiKey"] = endpoint.api_key
    return headers


_SOAP_OPERATIONS = {
    "citizen.lookup": ("TraCuuThongTinCongDan", mapping.lookup_request),
    "residence.register": ("DangKyThuongTru", mapping.register_request),
    "residence.deregister": ("XoaDangKyThuongTru", mapping.deregister_request),
}


class PopulationConnector(Connector):
    """``citizen.lookup``, ``residence.register``, ``residence.deregister``.

    ``MaYeuCau`` is the idempotency key for writes (the registry answers a repeated key with its
    original answer), else the request id, else a fresh UUID. ``agency_id`` (``MaDonVi``),
    ``officer_id`` (``MaCanBo``) and ``service_code`` (``MaDVC``) are defaults that a call's
    params may override with ``agency_id`` / ``officer_id`` / ``service_code``.

    :meth:`call` raises :class:`PermanentError` for bad params, unknown operations, refused
    credentials (HTTP 401), Client faults and a (de-)registration refused with MaKetQua 1 or 2
    (``code`` = MaKetQua, the message carries the registry's MoTa); :class:`TransientError` for
    network failures, 5xx, Server faults and malformed replies (an unknown MaKetQua, or a lookup
    answered with another citizen's record, among them).
    """

    registry: ClassVar[str] = "population"
    operations: ClassVar[frozenset[str]] = frozenset(_SOAP_OPERATIONS)

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        agency_id: str = "000.00.00.H41",
        officer_id: str = "",
        service_code: str = "LIENTHONG",
        wsdl: Path = WSDL,
    ) -> None:
        self.endpoint = endpoint
        self.agency_id = agency_id
        self.officer_id = officer_id
        self.service_code = service_code
        self._soap = SoapClient(
            self.registry, endpoint, wsdl, headers=lambda url: auth_headers(endpoint, url)
        )

    async def open(self) -> None:
        await self._soap.open()

    async def close(self) -> None:
        await self._soap.close()

    async def handle(self, request: Request) -> Result:
        soap_operation, build = _SOAP_OPERATIONS[request.operation]
        params = request.params
        request_id = request.idempotency_key or request.request_id or uuid.uuid4().hex
        header = {
            "service_code": str(params.get("service_code") or self.service_code),
            "officer_id": str(params.get("officer_id") or self.officer_id),
            "agency_id": str(params.get("agency_id") or self.agency_id),
            "account": self.endpoint.username,
        }
        fields = self._map(lambda: build(params, request_id, **header), PermanentError)
        # Safe to send twice: the lookup is a read, and a write is registered once per MaYeuCau
        # (always set, above), which a second sending of the same envelope carries.
        reply = await self._soap.call(soap_operation, fields, repeatable=True)
        if request.operation == "citizen.lookup":
            asked = fields["SoDinhDanh"]
            data = self._map(lambda: mapping.lookup_result(reply, asked), TransientError)
            return Result(data=data)
        date_field = "NgayDangKy" if request.operation == "residence.register" else "NgayXoa"
        data = self._map(lambda: mapping.registration_result(reply, date_field), TransientError)
        return Result(data=data, reference=data["registration_number"])
