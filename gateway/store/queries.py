"""Named SQL blocks, loaded once from ``gateway/store/sql/*.sql``.

A file holds blocks headed ``-- name: <block>``; a block is addressed as ``"<file>.<block>"``.
Each file's ``schema`` block (several statements allowed) is run when a store opens, in file-name
order. Parameters are ``:name``.

Dialects: ``sqlite`` (the default) reads ``sql/*.sql`` only. ``postgres`` reads the same blocks,
then lets each block of ``sql/postgres/<file>.sql`` replace the block of the same name in
``sql/<file>.sql`` — only where the portable SQL cannot run on PostgreSQL as written (SQLite types
in a schema, row locks, parameters PostgreSQL cannot type). An override of a block that does not
exist is an error, so a renamed block cannot leave a stale override behind.

:func:`positional` rewrites a block's ``:name`` parameters as SQLite's numbered ``?N``, for the
hot batched writes: sqlite3 binds a tuple faster than it looks up each name in a dict.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from importlib.abc import Traversable
from typing import Any

__all__ = ["CORE_TABLES", "DIALECTS", "LATER_TABLES", "positional", "queries", "schema_scripts"]

# Tables every lienthong store has had since its first version: a database without them is not
# one (an operator's command given a wrong URL must not turn it into one).
CORE_TABLES = ("audit_events", "dossiers", "outbox_jobs")

# Tables that queries read and stores made by an earlier version lack, with their columns. Opening
# a store writable creates them (the schema scripts); a reader of an older store opened read-only
# (an auditor's copy, where nothing may be created) stands each in with an empty temporary table,
# as it would be there: the queries that read it then work, and find what that version logged.
LATER_TABLES = (("audit_discloses", "citizen TEXT NOT NULL, seq BIGINT NOT NULL"),)

DIALECTS = ("sqlite", "postgres")
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


def _read_folder(folder: Traversable) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".sql"):
            found.update(_parse(entry.name.removesuffix(".sql"), entry.read_text("utf-8")))
    return found


def merge_overrides(base: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """``base`` with each block of ``overrides`` put in its place.

    Raises ValueError for an override whose block ``base`` does not have.
    """
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"dialect override of unknown SQL block(s): {', '.join(unknown)}")
    return {**base, **overrides}


@functools.cache
def queries(dialect: str = "sqlite") -> dict[str, str]:
    """Every named block of every SQL file, as ``dialect`` runs it.

    Raises ValueError for an unknown dialect, a duplicate block or an override of a missing block.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r} (expected one of {', '.join(DIALECTS)})")
    folder = resources.files("gateway.store").joinpath("sql")
    found = _read_folder(folder)
    if dialect != "sqlite":
        found = merge_overrides(found, _read_folder(folder.joinpath(dialect)))
    return found


def schema_scripts(dialect: str = "sqlite") -> list[str]:
    """The ``schema`` blocks, in file-name order."""
    return [sql for key, sql in sorted(queries(dialect).items()) if key.endswith(".schema")]


# What may hold a ':' that is no parameter (SQLite's quoting and comments), or a parameter.
_SQLITE_TOKEN = re.compile(
    r"""
      '(?:[^']|'')*'                    # string literal
    | "(?:[^"]|"")*"                    # quoted identifier
    | `(?:[^`]|``)*`                    # MySQL-style quoted identifier
    | \[[^\]]*\]                        # MS-style quoted identifier
    | --[^\n]*                          # line comment
    | /\*.*?\*/                         # block comment
    | :(?P<name>[A-Za-z_]\w*)           # :name parameter
    | (?P<open>['"`[]|/\*)              # an opener none of the above could close
    """,
    re.VERBOSE | re.DOTALL,
)


def sql_tokens(pattern: re.Pattern[str], sql: str) -> Iterator[re.Match[str]]:
    """``pattern``'s matches in ``sql``: a dialect's quoting, comments and ``:name`` parameters.

    ``pattern`` names a group ``open`` for an opener nothing closes; it raises ValueError there.
    """
    for m in pattern.finditer(sql):
        if m.group("open") is not None:
            raise ValueError(
                f"unterminated {m.group('open')!r} in SQL at {sql[m.start() :][:40]!r}"
            )
        yield m


@functools.cache
def positional(sql: str) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
    """``sql`` with each ``:name`` as ``?N`` (a name used twice keeps one number), and a function
    that turns a unit's params into the tuple to bind.

    The function raises KeyError for a missing parameter and ignores extra ones, as a named
    binding does. Raises ValueError on an unterminated literal, identifier or comment.
    """
    names: list[str] = []
    out: list[str] = []
    pos = 0
    for m in sql_tokens(_SQLITE_TOKEN, sql):
        name = m.group("name")
        if name is None:
            continue
        if name not in names:
            names.append(name)
        out.append(f"{sql[pos : m.start()]}?{names.index(name) + 1}")
        pos = m.end()
    out.append(sql[pos:])
    # itemgetter of one name returns the value itself, not a 1-tuple.
    if not names:
        return "".join(out), lambda _: ()
    if len(names) == 1:
        only = names[0]
        return "".join(out), lambda params: (params[only],)
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*names)
    return "".join(out), getter
