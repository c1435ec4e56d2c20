"""Vietnam Social Security (BHXH): health-insurance card check, newborn cards, funeral allowance."""

from __future__ import annotations

from connectors.insurance.client import InsuranceConnector

__all__ = ["InsuranceConnector"]
