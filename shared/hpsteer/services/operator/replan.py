"""Ask for a re-plan now: a :class:`~hpsteer.domain.messages.ReplanRequest` on
``replan-requests``, the message reconciliation publishes after a household override and optimize
fans out (one device, or every steered device of a price area).

An operator's request is audited (``replan-{target}-{hash of the message id}``: one event per
message published); the re-plans the API asks for by itself (a comfort change, steering switched
on) belong to the change that caused them and are audited with it.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from hpsteer.domain.audit import AuditEvent
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import ReplanRequest
from hpsteer.domain.operator_views import ReplanAccepted
from hpsteer.domain.roles import Operation
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.operator.audit import Actor, export_audit, stage_audit
from hpsteer.services.operator.errors import Conflict, UnknownTarget
from hpsteer.services.operator.views import is_deleted
from hpsteer.services.paths import device_path
from hpsteer.services.replan_requests import publish_replan_request

__all__ = ["publish_replan", "replan_area", "replan_device"]


def publish_replan(
    deps: Dependencies,
    reason: str,
    *,
    device_id: str | None = None,
    area: PriceArea | None = None,
) -> ReplanAccepted:
    """Publish one re-plan request (no audit: the caller's change carries it)."""
    now = deps.clock.now()
    request = ReplanRequest(area=area, device_id=device_id, reason=reason[:300], requested_at=now)
    message_id = publish_replan_request(deps.bus, request)
    return ReplanAccepted(
        message_id=message_id, requested_at=now, device_id=device_id, price_area=area
    )


def _audit(
    deps: Dependencies,
    actor: Actor,
    accepted: ReplanAccepted,
    target_type: Literal["device", "area"],
    target_id: str,
    reason: str,
) -> None:
    digest = hashlib.sha256(accepted.message_id.encode()).hexdigest()[:20]
    event = AuditEvent(
        audit_id=f"replan-{target_id}-{digest}",
        occurred_at=accepted.requested_at,
        actor=actor.email,
        actor_role=actor.role,
        operation=Operation.REPLAN,
        target_type=target_type,
        target_id=target_id,
        context={"reason": reason, "message_id": accepted.message_id},
    )
    deps.store.run_transaction(lambda tx: stage_audit(tx, event))
    export_audit(deps, [event])


def replan_device(
    deps: Dependencies, actor: Actor, device_id: str, reason: str | None
) -> ReplanAccepted:
    """Re-plan one steered device now; 404 for an unknown device, 409 when steering is off."""
    snapshot = deps.store.get(device_path(device_id))
    if snapshot is None or is_deleted(snapshot.data):
        raise UnknownTarget(f"no device {device_id}", code="unknown_device")
    if snapshot.data.get("steering_enabled") is not True:
        raise Conflict(
            f"steering of {device_id} is off: enable it first (enabling re-plans it)",
            code="steering_disabled",
        )
    why = reason or f"re-plan asked by {actor.email}"
    accepted = publish_replan(deps, why, device_id=device_id)
    _audit(deps, actor, accepted, "device", device_id, why)
    return accepted


def replan_area(
    deps: Dependencies, actor: Actor, area: PriceArea, reason: str | None
) -> ReplanAccepted:
    """Re-plan every steered device of ``area`` now."""
    why = reason or f"re-plan of {area.value} asked by {actor.email}"
    accepted = publish_replan(deps, why, area=area)
    _audit(deps, actor, accepted, "area", area.value, why)
    return accepted
