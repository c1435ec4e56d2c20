"""Ctrl-C while ``lienthong`` is still importing its modules: one line and exit 130.

Importing the command line (pyHanko, aiohttp, lxml, cryptography) takes a second or two before
click runs; an interrupt then was a Python traceback through the import machinery. Imported
first by :mod:`gateway.cli`, with nothing but the standard library, so that it covers the rest;
:func:`imported` hands SIGINT back to Python's own handler, which the running command turns into
the same line (gateway.cli)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

__all__ = ["imported"]


def _interrupted(signum: int, frame: FrameType | None) -> None:
    if sys.stderr.isatty():  # after the terminal's ^C, not on its line
        sys.stderr.write("\n")
    sys.stderr.write("Error: lienthong: interrupted\n")
    sys.stderr.flush()
    raise SystemExit(130)


def _quiet_while_importing() -> None:
    # Only where Python's handler is in place: a SIGINT ignored (a shell's background job) stays
    # ignored, and signal handlers can be set from the main thread alone.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _interrupted)


def imported() -> None:
    """The command line is imported: SIGINT is KeyboardInterrupt again."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_quiet_while_importing()
