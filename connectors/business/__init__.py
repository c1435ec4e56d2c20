"""National Business Registration (đăng ký doanh nghiệp): enterprise lookup by tax code.

No public contract exists; the REST contract in :mod:`connectors.business.mapping` and the
sandbox are the project's own design.
"""

from __future__ import annotations

from connectors.business.client import BusinessConnector

__all__ = ["BusinessConnector"]
