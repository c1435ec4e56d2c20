"""Each package's ``__all__`` names exactly what it exports: nothing missing, nothing stale."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "connectors",
    "connectors.population",
    "connectors.civil_status",
    "connectors.insurance",
    "connectors.business",
    "connectors.portal",
    "signing",
    "schemas",
    "gateway.store",
    "gateway.audit",
    "gateway.outbox",
    "gateway.flows",
    "gateway.exchange",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_honest(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and getattr(v, "__module__", "").startswith(name)
        and not isinstance(v, type(module))
    }
    unlisted = sorted(public - set(exported))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"
