"""Validation against schemas/xsd/edxml.xsd (loaded once, on first use)."""

from __future__ import annotations

import threading

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

import schemas
from gateway.exchange.errors import SchemaInvalid

__all__ = ["validate"]

_lock = threading.Lock()
_schema: etree.XMLSchema | None = None


def _load() -> etree.XMLSchema:
    global _schema
    with _lock:
        if _schema is None:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            doc = etree.parse(str(schemas.path("xsd", "edxml.xsd")), parser)
            _schema = etree.XMLSchema(doc)
        return _schema


def validate(root: etree._Element) -> None:
    """Raises SchemaInvalid with up to 10 ``errors`` (line, message) if ``root`` does not match."""
    schema = _load()
    # XMLSchema objects keep per-validation state (error_log): serialise their use across threads.
    with _lock:
        ok = schema.validate(root)
        errors = [{"line": e.line, "message": e.message} for e in list(schema.error_log)[:10]]
    if not ok:
        first = errors[0]["message"] if errors else "schema validation failed"
        raise SchemaInvalid(f"edXML schema: {first}", errors=errors)
