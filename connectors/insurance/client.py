"""The BHXH connector: ``card.check``, ``card.issue_newborn``, ``funeral.pay``.

Authentication follows the registry: a token from ``POST /api/token/take``, then every service
call carries ``token``, ``id_token``, ``username`` and ``password`` in the query string (the
registry's contract, not a choice: keep URLs out of logs). The token is cached with its expiry,
taken again shortly before it expires, and once more if the registry answers 401 anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.api import (
    Connector,
    Endpoint,
    PermanentError,
    Request,
    Result,
    TransientError,
    Verdict,
)
from connectors.insurance.mapping import (
    CARD_CODES,
    FUNERAL_VERDICTS,
    WRITE_CODES,
    WireCard,
    WireFuneral,
    WireNewbornCard,
    WireToken,
    card_check_body,
    card_check_data,
    dates_of,
    funeral_body,
    newborn_body,
)
from connectors.rest import RestTransport
from connectors.text import nfc

__all__ = ["InsuranceConnector"]


def _card(number: str) -> str:
    """A card number as the request sends it (``card_check_body``): no spaces, upper case."""
    return number.replace(" ", "").upper()


CARD_CHECK = "api/egw/KQNhanLichSuKCB2024"
NEWBORN_CARD = "api/egw/CapTheTreEm"  # the project's own design
FUNERAL = "api/egw/TroCapMaiTang"  # the project's own design


@dataclass(frozen=True)
class _Token:
    access_token: str
    id_token: str
    expires_at: float | None  # on the connector's clock; None: until the registry refuses it


class InsuranceConnector(Connector):
    """Vietnam Social Security: health-insurance cards and the funeral allowance.

    ``officer_name`` / ``officer_id`` fill ``hoTenCb`` / ``cccdCb``: the officer on whose behalf
    a card is checked, a person (full name, personal id), whom the registry requires (without
    one a card check is refused ``205``). ``clock`` is for tests (monotonic seconds).
    """

    registry: ClassVar[str] = "insurance"
    operations: ClassVar[frozenset[str]] = frozenset(
        {"card.check", "card.issue_newborn", "funeral.pay"}
    )

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        officer_name: str = "",
        officer_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        # Not the account's username or X-Road id: BHXH logs a person as the one asking.
        self.officer_name, self.officer_id = officer_name, officer_id
        self._clock = clock
        self._http = RestTransport(self.registry, endpoint)
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self.tokens_taken = 0  # for operators' curiosity and the tests

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        self._token = None
        await self._http.close()

    async def handle(self, request: Request) -> Result:
        """Perform one operation.

        ``card.check`` answers every card-level outcome (expired, wrong name, revoked, …) as data:
        ``status``/``code``/``message``; only registry failures raise.

        Raises:
            PermanentError: ``"invalid-params"`` (nothing sent), ``"http-401"`` (credentials
                refused, or a fresh token refused again), the registry's ``"205"`` / ``"206"`` /
                ``"207"`` (missing field, invalid data, not eligible), other 4xx; a
                :class:`~connectors.api.Verdict` (code ``"207"``) when BHXH's reason for a
                funeral allowance's 207 is a verdict on eligibility (``FUNERAL_VERDICTS``).
            TransientError: unreachable, 5xx, timeouts, malformed replies (a card check
                answered about another card, whatever its code, among them), result codes
                ``100``/``101`` (registry data / server error), an unknown result code.
        """
        try:
            if request.operation == "card.check":
                body: dict[str, Any] = card_check_body(request.params, *self._officer(request))
            elif request.operation == "card.issue_newborn":
                body = newborn_body(request.params)
            else:
                body = funeral_body(request.params)
        except (ValueError, TypeError) as exc:
            raise PermanentError(self.registry, str(exc), code="invalid-params") from exc
        if request.operation == "card.check":
            card = await self._call(CARD_CHECK, body, WireCard, request)
            asked = str(body["maThe"])
            if card.maThe and _card(card.maThe) != asked:
                # Whatever its code says (valid, expired, revoked, ask again) is said of the card
                # in the answer: of another card, it says nothing about the one asked.
                raise TransientError(
                    self.registry,
                    f"malformed reply: card {card.maThe} answered (maKetQua {card.maKetQua}), "
                    f"{asked} was asked",
                )
            meaning = CARD_CODES.get(card.maKetQua)
            if meaning is None:
                note = f": {card.ghiChu}" if card.ghiChu else ""
                raise TransientError(
                    self.registry,
                    f"unknown result code {card.maKetQua!r}{note}",
                    code=card.maKetQua,
                )
            if meaning.transient:
                raise TransientError(
                    self.registry, meaning.message, code=card.maKetQua, answered=True
                )
            if card.maKetQua == "205":  # which field, in the registry's note, as a write's
                note = f" ({card.ghiChu})" if card.ghiChu else ""
                raise PermanentError(self.registry, meaning.message + note, code="205")
            if card.maKetQua == "000" and not card.maThe:
                # "Valid" is said of the card in the answer: one about no card would vouch for a
                # card nobody checked.
                raise TransientError(
                    self.registry,
                    f"malformed reply: card (none) said valid, {asked} was asked",
                    code="000",
                )
            try:
                data = card_check_data(card)
            except ValueError as exc:
                raise TransientError(self.registry, f"malformed reply: {exc}") from exc
            return Result(data=data, reference=None)
        if request.operation == "card.issue_newborn":
            issued = await self._call(NEWBORN_CARD, body, WireNewbornCard, request)
            self._check_write(issued.maKetQua, issued.ghiChu)
            if not issued.maThe:
                raise TransientError(self.registry, "malformed reply: no maThe")
            try:
                valid_from, valid_to = dates_of(issued)
            except ValueError as exc:
                raise TransientError(self.registry, f"malformed reply: {exc}") from exc
            data = {"card_number": issued.maThe, "valid_from": valid_from, "valid_to": valid_to}
            return Result(data=data, reference=issued.maThe)
        paid = await self._call(FUNERAL, body, WireFuneral, request)
        if paid.maKetQua == "207" and paid.maLyDo in FUNERAL_VERDICTS:
            # Not eligible, the request as it should be: the allowance is refused, for good.
            note = nfc(paid.ghiChu) if paid.ghiChu else WRITE_CODES["207"].vietnamese
            raise Verdict(
                self.registry, f"{WRITE_CODES['207'].message} ({note})", code="207", reason=note
            )
        self._check_write(paid.maKetQua, paid.ghiChu)
        if not paid.maHoSo or paid.soTien is None:
            raise TransientError(self.registry, "malformed reply: no maHoSo or soTien")
        return Result(data={"reference": paid.maHoSo, "amount": paid.soTien}, reference=paid.maHoSo)

    def _officer(self, request: Request) -> tuple[str, str]:
        # The gateway may name the officer on whose behalf it asks; taken as given, even empty.
        officer = request.params.get("officer")
        if isinstance(officer, dict):
            return str(officer.get("full_name", "")), str(officer.get("personal_id", ""))
        return self.officer_name, self.officer_id

    def _check_write(self, code: str, note: str | None) -> None:
        meaning = WRITE_CODES.get(code)
        detail = f" ({note})" if note else ""
        if meaning is None:
            raise TransientError(self.registry, f"unknown result code {code!r}{detail}", code=code)
        if meaning.transient:  # an answer (about one record), as a card check's: see there
            raise TransientError(self.registry, meaning.message + detail, code=code, answered=True)
        if code != "000":
            raise PermanentError(self.registry, meaning.message + detail, code=code)

    async def _call(
        self, path: str, body: dict[str, Any], wire: type[Any], request: Request
    ) -> Any:
        """POST to a service with a valid token; on a 401, take a new token and try once more."""
        stale: _Token | None = None
        for _attempt in range(2):
            token = await self._valid_token(stale)
            reply = await self._http.request(
                "POST",
                path,
                params={
                    "token": token.access_token,
                    "id_token": token.id_token,
                    "username": self.endpoint.username,
                    "password": self.endpoint.password,
                },
                json=body,
                idempotency_key=request.idempotency_key,
                request_id=request.request_id,
                accept=(401,),
                type=wire,
                # A card check is a read; the writes are safe to repeat by their key alone.
                repeatable=path == CARD_CHECK,
            )
            if reply.status != 401:
                return reply.data
            stale = token
        raise PermanentError(self.registry, "a fresh token was refused too", code="http-401")

    async def _valid_token(self, stale: _Token | None) -> _Token:
        async with self._token_lock:
            # Another call may have refreshed while this one waited for the lock.
            token = self._token
            if (
                token is not None
                and token is not stale
                and (token.expires_at is None or self._clock() < token.expires_at)
            ):
                return token
            self._token = await self._take_token()
            return self._token

    async def _take_token(self) -> _Token:
        # Not repeatable: each take issues a new credential, under no idempotency key, and
        # whether a registry counts, limits or revokes earlier ones on a take is not ours to
        # know. A take that meets a dropped kept-alive connection fails like any other.
        reply = await self._http.request(
            "POST",
            "api/token/take",
            json={"username": self.endpoint.username, "password": self.endpoint.password},
            type=WireToken,
        )
        answer: WireToken = reply.data
        if answer.maKetQua != "200" or answer.APIKey is None:
            raise PermanentError(
                self.registry, f"token refused (maKetQua {answer.maKetQua})", code=answer.maKetQua
            )
        self.tokens_taken += 1
        key = answer.APIKey
        expires_at = None
        if key.expires_in is not None:
            # Renew a little early: a token that expires in flight costs a 401 and a retry.
            expires_at = self._clock() + key.expires_in - min(30.0, key.expires_in / 10)
        return _Token(key.access_token, key.id_token, expires_at)
