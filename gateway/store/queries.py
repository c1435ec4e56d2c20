"""Named SQL blocks, loaded once from ``gateway/store/sql/*.sql``.

A file holds blocks headed ``-- name: <block>``; a block is addressed as ``"<file>.<block>"``.
Each file's ``schema`` block (several statements allowed) is run when a store opens, in file-name
order. Parameters are ``:name``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

__all__ = ["queries", "schema_scripts"]

_HEADER = re.compile(r"^--\s*name:\s*([\w.]+)\s*$", re.MULTILINE)


def _parse(stem: str, text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, …]
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        key = f"{stem}.{name}"
        if key in blocks:
            raise ValueError(f"duplicate SQL block {key}")
        blocks[key] = body.strip()
    return blocks


@functools.cache
def queries() -> dict[str, str]:
    """Every named block of every SQL file."""
    found: dict[str, str] = {}
    folder = resources.files("gateway.store").joinpath("sql")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            found.update(_parse(entry.name.removesuffix(".sql"), entry.read_text("utf-8")))
    return found


def schema_scripts() -> list[str]:
    """The ``schema`` blocks, in file-name order."""
    return [sql for key, sql in sorted(queries().items()) if key.endswith(".schema")]
