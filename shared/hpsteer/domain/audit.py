"""Audit events: who changed what, when, and how it looked before and after.

Every change the operator API makes is recorded as one :class:`AuditEvent`: the caller (an email
and the role it acted in), the instant, the operation, the target (a device, an alert, a price
area) and the target's state before and after, as JSON-ready maps. Events never carry a secret:
devices hold ids and settings, never credentials, and callers pass only those.

An event's id is chosen by the change, so that a retried request that repeats a change cannot
record it twice: a device change is ``device-{device_id}-r{revision}`` (the device's revision
counter moves by one with every change), an acknowledgement ``alert-{alert_id}-acknowledged``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.roles import Operation, Role

__all__ = ["AuditEvent", "AuditTarget", "device_audit_id"]

AuditTarget = Literal["device", "alert", "area"]


class AuditEvent(Record):
    audit_id: str = Field(min_length=1, max_length=400)
    occurred_at: UtcDatetime
    actor: str = Field(min_length=1, max_length=320)
    """The caller's email (the local runtime's fixed identity locally)."""
    actor_role: Role
    operation: Operation
    target_type: AuditTarget
    target_id: str = Field(min_length=1, max_length=200)
    before: dict[str, Any] | None = None
    """The target's state before the change (None: it did not exist)."""
    after: dict[str, Any] | None = None
    """The target's state after the change (None: it no longer exists)."""
    context: dict[str, Any] = Field(default_factory=dict)
    """Where the change came from beyond the caller (e.g. a CSV import's line number)."""


def device_audit_id(device_id: str, revision: int) -> str:
    """The audit id of the change that gave a device ``revision``."""
    return f"device-{device_id}-r{revision:06d}"
