"""The dialect-aware loader and the parameter translation (no server needed)."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from gateway.store.postgres import to_psycopg
from gateway.store.queries import merge_overrides, positional, queries, schema_scripts


def test_sqlite_reads_the_portable_blocks_only() -> None:
    assert queries() == queries("sqlite")
    assert "SKIP LOCKED" not in queries()["outbox.claim"]
    assert all("BYTEA" not in s for s in schema_scripts())


def test_postgres_replaces_only_the_blocks_it_overrides() -> None:
    sqlite, postgres = queries("sqlite"), queries("postgres")
    assert postgres.keys() == sqlite.keys()
    assert "FOR UPDATE SKIP LOCKED" in postgres["outbox.claim"]
    assert postgres["kv.put"] == sqlite["kv.put"]
    assert len(schema_scripts("postgres")) == len(schema_scripts("sqlite"))


def test_unknown_dialects_and_stale_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        queries("mysql")
    with pytest.raises(ValueError, match=r"unknown SQL block.*kv\.renamed"):
        merge_overrides({"kv.get": "x"}, {"kv.renamed": "y"})


def _overrides() -> dict[str, str]:
    folder = resources.files("gateway.store").joinpath("sql", "postgres")
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            text = entry.read_text("utf-8")
            parts = re.split(r"^--\s*name:\s*([\w.]+)\s*$", text, flags=re.MULTILINE)
            for name, body in zip(parts[1::2], parts[2::2], strict=True):
                found[f"{entry.name.removesuffix('.sql')}.{name}"] = body
    return found


def test_every_override_ports_the_current_block() -> None:
    # Each PostgreSQL block names the sha256 of the block it was written from. When that block
    # changes (a column, a filter), this fails until the PostgreSQL version follows.
    stale = []
    for key, body in sorted(_overrides().items()):
        m = re.search(r"^-- base: ([0-9a-f]{16})$", body, re.MULTILINE)
        current = hashlib.sha256(queries("sqlite")[key].encode()).hexdigest()[:16]
        if m is None or m.group(1) != current:
            stale.append(f"{key}: update the PostgreSQL version, then set '-- base: {current}'")
    assert stale == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT v FROM kv WHERE k = :k", "SELECT v FROM kv WHERE k = %(k)s"),
        ("SELECT :a::text, x::bigint", "SELECT %(a)s::text, x::bigint"),
        ("SELECT ':not_a_param', 'it''s :no'", "SELECT ':not_a_param', 'it''s :no'"),
        ('SELECT ":col" FROM t', 'SELECT ":col" FROM t'),
        ("-- :refund is 1\nSELECT :x", "-- :refund is 1\nSELECT %(x)s"),
        ("/* :a */ SELECT 1", "/* :a */ SELECT 1"),
        ("SELECT 5 % 2, '100%' LIKE :p -- 50%", "SELECT 5 %% 2, '100%%' LIKE %(p)s -- 50%%"),
        ("SELECT $q$ :x $q$, arr[1:2]", "SELECT $q$ :x $q$, arr[1:2]"),
        ("SELECT :a, :a", "SELECT %(a)s, %(a)s"),
    ],
)
def test_parameters_are_translated_once_and_only_outside_literals(sql: str, expected: str) -> None:
    assert to_psycopg(sql) == expected


@pytest.mark.parametrize("sql", ["SELECT 'open", 'SELECT "open', "SELECT 1 /* open", "SELECT $$ x"])
def test_unterminated_text_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        to_psycopg(sql)


@pytest.mark.parametrize(
    ("sql", "expected", "names"),
    [
        ("SELECT v FROM kv WHERE k = :k", "SELECT v FROM kv WHERE k = ?1", ("k",)),
        ("SELECT :a, :b, :a", "SELECT ?1, ?2, ?1", ("a", "b")),
        ("SELECT ':no', 'it''s :no', :yes", "SELECT ':no', 'it''s :no', ?1", ("yes",)),
        ('SELECT ":c", [:d], `:e` FROM t', 'SELECT ":c", [:d], `:e` FROM t', ()),
        ("-- :x\nSELECT /* :y */ :z", "-- :x\nSELECT /* :y */ ?1", ("z",)),
    ],
)
def test_sqlite_positional_parameters_only_outside_literals(
    sql: str, expected: str, names: tuple[str, ...]
) -> None:
    text, bind = positional(sql)
    assert text == expected
    values = {n: f"value of {n}" for n in names}
    assert bind({**values, "unused": 0}) == tuple(values[n] for n in names)


def test_positional_binding_needs_every_parameter() -> None:
    _, bind = positional("SELECT :a, :b")
    with pytest.raises(KeyError, match="b"):
        bind({"a": 1})


@pytest.mark.parametrize("sql", ["SELECT 'open", 'SELECT "open', "SELECT 1 /* open", "SELECT [x"])
def test_positional_refuses_unterminated_text(sql: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        positional(sql)


def test_every_sqlite_block_has_a_positional_form() -> None:
    for key, sql in queries().items():
        if not key.endswith(".schema"):
            text, _ = positional(sql)
            assert ":" not in re.sub(r"'[^']*'|--[^\n]*", "", text), key
