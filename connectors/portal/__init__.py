"""National Public Service Portal (Cổng Dịch vụ công quốc gia): dossier and progress sync."""

from __future__ import annotations

from connectors.portal.client import PortalConnector

__all__ = ["PortalConnector"]
