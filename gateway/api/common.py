"""What every handler needs: typed app state, strict JSON in, JSON out."""

from __future__ import annotations

import unicodedata
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.problems import Problem

__all__ = ["json_response", "nfc", "read_json"]

T = TypeVar("T")


def nfc(value: Any) -> Any:
    """Vietnamese arrives in NFC and NFD: normalise every string at the boundary."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nfc(v) for v in value]
    return value


def decode(body: bytes, model: type[T], *, where: str = "$") -> T:
    """Strictly decode JSON into ``model``, every string in NFC.

    Normalising the text before decoding is not enough: JSON may escape combining marks
    (``\u0301``), so strings are normalised after parsing, then converted. Raises Problem 400 / 422
    with msgspec's own path to the offending field.
    """
    try:
        return msgspec.convert(nfc(msgspec.json.decode(body)), model)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$", f"`{where}", 1) if where != "$" else str(exc)
        slug = "unknown-field" if "unknown field" in message else "invalid-request"
        raise Problem(422, slug, message) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed-json", f"the body is not valid JSON: {exc}") from None


async def read_json(request: web.Request, model: type[T]) -> T:
    """The request body as ``model``. Raises Problem 415 / 413 / 400 / 422."""
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            f"send application/json, not {request.content_type or 'nothing'}",
        )
    body = await request.read()  # client_max_size caps it (413 before we see it)
    return decode(body, model)


def json_response(
    value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )
