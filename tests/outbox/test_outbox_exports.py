from __future__ import annotations

import importlib

import pytest

import gateway.outbox

MODULES = ["breaker", "cli", "errors", "jobs", "retry", "testing", "views", "worker"]


def test_package_exports_exist_and_are_sorted() -> None:
    names = gateway.outbox.__all__
    assert sorted(names) == sorted(set(names))
    for name in names:
        assert getattr(gateway.outbox, name) is not None


@pytest.mark.parametrize("module", MODULES)
def test_module_exports_exist(module: str) -> None:
    mod = importlib.import_module(f"gateway.outbox.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


def test_the_public_api_is_reachable_from_the_package() -> None:
    # What the flow engine, the app and the admin API use.
    for name in [
        "Worker",
        "JobHandler",
        "Delivery",
        "enqueue",
        "replay",
        "RetryPolicy",
        "Breakers",
        "CircuitOpen",
        "JobNotFound",
        "NotDead",
        "list_jobs",
        "counts",
    ]:
        assert name in gateway.outbox.__all__
