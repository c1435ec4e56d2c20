"""Each module's ``__all__`` is honest: every name exists, and the package exports its parts."""

from __future__ import annotations

import importlib
import pkgutil

import gateway.exchange

MODULES = sorted(m.name for m in pkgutil.iter_modules(gateway.exchange.__path__))


def test_every_module_all_names_exist() -> None:
    assert {
        "edxml",
        "stream",
        "xmldsig",
        "status",
        "blobs",
        "errors",
        "receipt",
        "hub",
        "cli",
    } <= set(MODULES)
    for name in MODULES:
        module = importlib.import_module(f"gateway.exchange.{name}")
        exported = getattr(module, "__all__", None)
        assert exported is not None, name
        missing = [n for n in exported if not hasattr(module, n)]
        assert not missing, (name, missing)


def test_package_all_is_importable_and_sorted_without_duplicates() -> None:
    names = gateway.exchange.__all__
    assert len(names) == len(set(names))
    for n in names:
        assert getattr(gateway.exchange, n) is not None


def test_every_error_has_a_distinct_problem_type() -> None:
    from gateway.exchange import errors

    classes = [getattr(errors, n) for n in errors.__all__]
    assert all(issubclass(c, errors.ExchangeError) for c in classes)
    leaf_slugs = {c.slug for c in classes if c not in (errors.SchemaInvalid,)}
    assert len(leaf_slugs) == len(classes) - 1
    for c in classes:
        assert c.status in (400, 403, 404, 409, 413, 422, 500, 503)
        assert c("x").problem()["type"] == f"urn:lienthong:problem:{c.slug}"
