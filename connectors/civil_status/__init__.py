"""The electronic civil-status register (hộ tịch): connector, mapping and sandbox."""

from connectors.civil_status.client import WSDL, CivilStatusConnector, add_soap_header

__all__ = ["WSDL", "CivilStatusConnector", "add_soap_header"]
