"""Contracts as data (WSDL, XSD, OpenAPI), shipped with the package, never fetched at run time."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["path"]


def path(*parts: str) -> Path:
    """The file ``schemas/<parts…>`` in the installed package: ``path("wsdl", "x.wsdl")``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
