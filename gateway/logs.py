"""JSON logs, one object a line, carrying whatever ``extra`` a caller gave, and the id of the request
being served, if any, whoever logs the line."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import msgspec

from gateway.audit.events import withhold_numbers
from gateway.requestid import current_request_id

__all__ = ["OWN_LOGGERS", "JsonFormatter", "configure_logging", "log_banner"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder(enc_hook=str)  # anything else a caller passes: its str()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        # Any line logged while a request is served names it, not only those that pass it.
        if entry.get("request_id") is None and (request_id := current_request_id()):
            entry["request_id"] = request_id
        if record.exc_info:
            # An exception's text is foreign words (a registry's, a library's quoting a value)
            # and may carry a personal id: withheld as the audit log withholds it.
            entry["error"] = withhold_numbers(self.formatException(record.exc_info))
        # msgspec: a third of json.dumps's cost, on a line written for every request.
        return _encoder.encode(entry).decode()


# The packages whose loggers follow --log-level. Every other logger is a library's, and logs at
# WARNING at least whatever the level: at DEBUG, signxml logs each document it signs or verifies
# whole (a civil-status request: the mother's personal id, names, birth dates), zeep its
# messages, fontTools and asyncio their internals; none of it is the gateway's to show.
OWN_LOGGERS = ("lienthong", "gateway", "connectors", "signing")


def _own(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in OWN_LOGGERS


def _libraries_at_warning(record: logging.LogRecord) -> bool:
    # The root's level stops most of a library's lines; this stops those of a library that set
    # its own logger's level.
    return record.levelno >= logging.WARNING or _own(record)


def configure_logging(level: str = "INFO", handler: logging.Handler | None = None) -> None:
    """JSON lines on stderr (or to ``handler``: the demo's file): the gateway's own loggers at
    ``level``, libraries' at WARNING or above (see OWN_LOGGERS), pyHanko's not at all."""
    handler = handler or logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_libraries_at_warning)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    # A library's warning (cryptography's on a certificate a client sent) is a line of this log,
    # logger py.warnings: Python printed it on stderr as plain text, two lines of it.
    logging.captureWarnings(True)
    # Not even their warnings: each names a certificate by its full subject, a person's name and
    # CCCD number on a personal certificate (as every command but serve has them silenced).
    from signing.cli import silence_pyhanko

    silence_pyhanko()


def log_banner(message: str) -> None:
    """aiohttp's start-up message (``======== Running on http://… ========``, ``(Press CTRL+C to
    quit)``) as JSON lines, one for each of its lines: printed, it broke a log that is otherwise
    one JSON object a line, as a shipper parses it."""
    for line in message.splitlines():
        if text := line.strip("= \t"):
            logging.getLogger("lienthong").info(text)
