"""Audit events in the store (``audit_events/{audit_id}``) and in the analytics table.

A change stages its event with :func:`stage_audit` inside the transaction that makes the change,
so the two commit together or not at all (``create``: an id recorded before is refused, and the
transaction with it, so a change is never recorded twice). Once committed, :func:`export_audit`
appends the event to ``audit_events`` (insert id = audit id: appending again adds nothing) and
marks the document ``exported``. If analytics is down the change stands and the document stays
``exported: false``, which is how a backfill finds it; the caller is not failed for a copy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpsteer.domain.audit import AuditEvent
from hpsteer.domain.roles import Role
from hpsteer.errors import TransientError
from hpsteer.ports.analytics import Column, TableSchema
from hpsteer.ports.store import Transaction
from hpsteer.runtime.bootstrap import Dependencies

__all__ = ["AUDIT_EVENTS", "Actor", "audit_path", "export_audit", "stage_audit"]

_log = logging.getLogger(__name__)

AUDIT_EVENTS = TableSchema(
    name="audit_events",
    columns=(
        Column("audit_id", "STRING", required=True),
        Column("occurred_at", "TIMESTAMP", required=True),
        Column("actor", "STRING", required=True, description="the caller's email"),
        Column("actor_role", "STRING", required=True),
        Column("operation", "STRING", required=True),
        Column("target_type", "STRING", required=True, description="device, alert or area"),
        Column("target_id", "STRING", required=True),
        Column("before", "JSON", description="the target before the change (null: none)"),
        Column("after", "JSON", description="the target after the change (null: gone)"),
        Column("context", "JSON"),
    ),
    partition_by="occurred_at",
    cluster_by=("target_type", "target_id"),
    description="Every change made through the operator API: who, when, what, before and after.",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a verified email (or the local runtime's fixed identity) and its role."""

    email: str
    role: Role


def audit_path(audit_id: str) -> str:
    return f"audit_events/{audit_id}"


def stage_audit(tx: Transaction, event: AuditEvent) -> None:
    """Create the event's document in ``tx`` (fails the transaction if the id exists)."""
    tx.create(
        audit_path(event.audit_id),
        {**event.to_document(), "occurred_at": event.occurred_at, "exported": False},
    )


def _row(event: AuditEvent) -> dict[str, Any]:
    document = event.to_document()
    return {
        "audit_id": event.audit_id,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "actor_role": event.actor_role.value,
        "operation": event.operation.value,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "before": document["before"],
        "after": document["after"],
        "context": document["context"],
    }


def export_audit(deps: Dependencies, events: Sequence[AuditEvent]) -> None:
    """Append committed events to ``audit_events`` and mark them exported (module docstring)."""
    if not events:
        return
    try:
        deps.analytics.ensure_table(AUDIT_EVENTS)
        deps.analytics.append(
            AUDIT_EVENTS.name, [_row(e) for e in events], [e.audit_id for e in events]
        )
    except TransientError as err:
        _log.warning(
            "audit events %s kept in the store only (exported: false): %s",
            json.dumps([e.audit_id for e in events]),
            err,
        )
        return
    for event in events:
        try:
            deps.store.update(audit_path(event.audit_id), {"exported": True})
        except TransientError as err:
            _log.warning("audit event %s appended but not marked exported: %s", event.audit_id, err)
