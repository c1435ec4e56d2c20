"""The audit log: events appended with each state change, hash-chained, verifiable offline."""

from .chain import ChainReport, verify_chain, verify_rows
from .events import GENESIS, AuditEvent, append, citizen_hash, decode_entry, leaf_hash

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ChainReport",
    "append",
    "citizen_hash",
    "decode_entry",
    "leaf_hash",
    "verify_chain",
    "verify_rows",
]
