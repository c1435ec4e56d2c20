"""Connectors to the national registries, their sandboxes, and the interface they share.

``create_connector(name, endpoint)`` builds the connector of one registry, importing its package
only when asked (the SOAP registries pull in zeep and the signing stack; a caller that needs only
the REST ones should not pay for them).
"""

from __future__ import annotations

import importlib
from typing import Any

from connectors.api import Connector, Endpoint
from connectors.sandboxes import REGISTRIES

__all__ = ["REGISTRIES", "Connector", "Endpoint", "create_connector"]

_CLASSES: dict[str, tuple[str, str]] = {
    "population": ("connectors.population.client", "PopulationConnector"),
    "civil_status": ("connectors.civil_status.client", "CivilStatusConnector"),
    "insurance": ("connectors.insurance.client", "InsuranceConnector"),
    "business": ("connectors.business.client", "BusinessConnector"),
    "portal": ("connectors.portal.client", "PortalConnector"),
}


def create_connector(name: str, endpoint: Endpoint, **options: Any) -> Connector:
    """The connector of registry ``name`` for ``endpoint``; ``options`` go to its constructor
    (``signer``/``trust`` for civil_status). Use it as ``async with``.

    Raises:
        ValueError: ``name`` is not one of :data:`REGISTRIES`.
        TypeError: an option the connector does not take.
    """
    try:
        module_name, class_name = _CLASSES[name]
    except KeyError:
        raise ValueError(
            f"unknown registry {name!r}; expected one of {', '.join(REGISTRIES)}"
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    connector: Connector = cls(endpoint, **options)
    return connector
