"""The National Population Database (CSDLQG về dân cư): connector, mapping and sandbox."""

from connectors.population.client import WSDL, PopulationConnector, auth_headers

__all__ = ["WSDL", "PopulationConnector", "auth_headers"]
