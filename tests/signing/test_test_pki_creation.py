"""A test PKI (`pki init`, the demo, `[sandbox] pki`): its private keys are readable by their owner
alone."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from signing.testing import TestPKI

BASE = "http://127.0.0.1:9"


@pytest.fixture
def debian_umask() -> Iterator[None]:
    """The umask most accounts have (022): files readable by every local user unless made so."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("debian_umask")
def test_private_keys_are_the_owners_alone(tmp_path: Path) -> None:
    pki = TestPKI.create(tmp_path / "pki", base_url=BASE)
    keys = sorted(pki.directory.glob("*.key.pem"))
    assert {k.name for k in keys} >= {"root.key.pem", "intermediate.key.pem", "gateway.key.pem"}
    assert {k.name: _mode(k) for k in keys} == {k.name: 0o600 for k in keys}
    p12s = sorted(pki.directory.glob("*.p12"))
    assert {p.name: _mode(p) for p in p12s} == {p.name: 0o600 for p in p12s}
    assert (_mode(pki.root_pem), _mode(pki.cert_path("gateway"))) == (0o644, 0o644)
    assert _mode(pki.directory) == 0o755  # a folder as any other: its certificates are public
