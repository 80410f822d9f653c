"""The audit trail: one hash-chained record per answered question, in SQLite."""

from appliance.audit.export import write_csv, write_jsonl
from appliance.audit.log import GENESIS_HASH, AuditLog, VerifyResult
from appliance.audit.records import AuditEntry, AuditPassage, AuditRecord, Outcome

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditPassage",
    "AuditRecord",
    "Outcome",
    "VerifyResult",
    "write_csv",
    "write_jsonl",
]
