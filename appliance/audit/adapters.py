"""Changes to the served adapter in the audit log, so an auditor can tell which adapter was
served when, who chose it and on what evidence.

One `adapter` record per action: `register` (an adapter added to the registry), `promote`
(with both evaluations and whether the gate was forced), `promote-refused` (the gate found a
regression; nothing changed) and `rollback`. The record's `question` reads "ACTION: NAME";
`retrieval` holds the details (the adapter's sha256, the one it replaces, the gate's numbers);
`error` holds the reason of a refusal. Unlike a denial, a change that cannot be recorded does
not happen: the caller writes the record first (refusals aside) and fails if it cannot.
"""

from __future__ import annotations

from typing import Any, Literal

from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEntry

AdapterAction = Literal["register", "promote", "promote-refused", "rollback"]


def record_adapter_action(
    audit: AuditLog,
    *,
    user: str,
    action: AdapterAction,
    name: str,
    details: dict[str, Any],
    reason: str | None = None,
    channel: str = "cli",
) -> str:
    """Append the record; its id. AuditError when the log cannot be written."""
    entry = AuditEntry(
        user=user,
        groups=(),
        question=f"{action}: {name}",
        retrieval={"action": action, "adapter": name, **details},
        passages=(),
        model={},
        prompt_sha256=None,
        answer=None,
        timings={},
        outcome="adapter",
        error=reason,
        channel=channel,
    )
    return audit.append(entry).id
