"""The audit log: events appended with each state change, hash-chained, verifiable offline."""

from .bundle import BundleError, Scope, build_bundle
from .chain import ChainReport, verify_chain, verify_rows
from .checkpoints import (
    Checkpoint,
    CheckpointCheck,
    Checkpointer,
    CheckpointError,
    verify_checkpoint,
)
from .events import (
    GENESIS,
    WITHHELD,
    Actor,
    AuditEvent,
    append,
    citizen_hash,
    decode_entry,
    leaf_hash,
    withhold_numbers,
)
from .merkle import MerkleTree, ProofError, root, verify_consistency, verify_inclusion
from .proofs import LogTree, ProofUnavailable
from .query import EventFilter, EventPage, FilterError, access_report, query_events
from .verify import BundleReport, LogReport, verify_bundle, verify_log

__all__ = [
    "GENESIS",
    "WITHHELD",
    "Actor",
    "AuditEvent",
    "BundleError",
    "BundleReport",
    "ChainReport",
    "Checkpoint",
    "CheckpointCheck",
    "CheckpointError",
    "Checkpointer",
    "EventFilter",
    "EventPage",
    "FilterError",
    "LogReport",
    "LogTree",
    "MerkleTree",
    "ProofError",
    "ProofUnavailable",
    "Scope",
    "access_report",
    "append",
    "build_bundle",
    "citizen_hash",
    "decode_entry",
    "leaf_hash",
    "query_events",
    "root",
    "verify_bundle",
    "verify_chain",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "verify_rows",
    "withhold_numbers",
]
