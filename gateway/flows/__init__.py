"""The inter-connected procedures (Decree 63/2024) and the engine that runs them on the outbox."""

from .definitions import FLOWS, Context, Flow, Step
from .engine import FlowStepHandler
from .notify import (
    CallbackHandler,
    PortalProgressHandler,
    PortalSyncHandler,
    sign_callback,
    verify_callback,
)

__all__ = [
    "FLOWS",
    "CallbackHandler",
    "Context",
    "Flow",
    "FlowStepHandler",
    "PortalProgressHandler",
    "PortalSyncHandler",
    "Step",
    "sign_callback",
    "verify_callback",
]
