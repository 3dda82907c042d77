"""What a heat pump is doing and why: one read model from the device and what hangs off it.

- **last telemetry**: ``devices/{id}.last_telemetry`` as ingest_telemetry keeps it;
- **intended vs actual mode**: the current plan's mode now, exactly as reconciliation reads it
  (:func:`hpsteer.services.reconcile.intended_now`, from the device document alone), against the
  mode the last telemetry reported; ``in_sync`` only when both are known and steering is on;
- **current plan**: ``devices/{id}/plans/{current_plan_id}``: its slots (mode, price, expected
  power, predicted indoor temperature), expected and baseline cost (none when the document is
  missing or unreadable: logged, and ``mode.plan_id`` still names it);
- **recent commands**: the last ten by ``updated_at`` with their lifecycle events;
- **open alerts**: the device's unresolved alerts;
- **override**: ``override_until`` and whether it is in force now.
"""

from __future__ import annotations

import logging

from hpsteer.domain.commands import Command
from hpsteer.domain.instants import instant_or_none
from hpsteer.domain.operator_views import (
    CommandView,
    DeviceStatus,
    ModeComparison,
    OverrideView,
    PlanView,
)
from hpsteer.errors import MalformedMessage
from hpsteer.ports.store import Order
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.command_log import events_of
from hpsteer.services.operator.alerts import device_alerts
from hpsteer.services.operator.errors import UnknownTarget
from hpsteer.services.operator.views import (
    command_view,
    device_view,
    is_deleted,
    telemetry_view,
)
from hpsteer.services.paths import device_path, plan_path
from hpsteer.services.plans_store import plan_from_document
from hpsteer.services.reconcile import intended_now

__all__ = ["RECENT_COMMANDS", "device_status"]

_log = logging.getLogger(__name__)

RECENT_COMMANDS = 10


def _plan(deps: Dependencies, device_id: str, plan_id: object) -> PlanView | None:
    if not isinstance(plan_id, str):
        return None
    snapshot = deps.store.get(plan_path(device_id, plan_id))
    if snapshot is None:
        return None
    try:
        plan = plan_from_document(snapshot.data)
    except MalformedMessage as err:  # the status is for finding such things: show the rest
        _log.error("current plan of %s is unreadable: %s", device_id, err)
        return None
    return PlanView(
        plan_id=plan.plan_id,
        created_at=plan.created_at,
        start_at=plan.slots[0].start_at,
        end_at=plan.slots[-1].end_at,
        resolution_minutes=int(plan.resolution),
        expected_cost_eur=plan.expected_cost_eur,
        baseline_cost_eur=plan.baseline_cost_eur,
        tariff_id=_text(snapshot.data.get("tariff_id")),
        tariff_note=_text(snapshot.data.get("tariff_note")),
        expected_bill_eur=_number(snapshot.data.get("expected_bill_eur")),
        baseline_bill_eur=_number(snapshot.data.get("baseline_bill_eur")),
        solver=plan.solver,
        solver_gap=plan.solver_gap,
        slots=list(plan.slots),
    )


def _recent_commands(deps: Dependencies, device_id: str) -> list[CommandView]:
    page = deps.store.query(
        f"{device_path(device_id)}/commands",
        order_by=[Order("updated_at", "desc")],
        limit=RECENT_COMMANDS,
    )
    views = []
    for document in page.documents:
        command = Command.parse(document.data)
        views.append(command_view(command, events_of(document.data)))
    return views


def device_status(deps: Dependencies, device_id: str) -> DeviceStatus:
    snapshot = deps.store.get(device_path(device_id))
    if snapshot is None or is_deleted(snapshot.data):
        raise UnknownTarget(f"no device {device_id}", code="unknown_device")
    data = snapshot.data
    now = deps.clock.now()
    device = device_view(device_id, data)
    telemetry = telemetry_view(data)
    intended, _ = intended_now(data, now)
    actual = telemetry.observed_mode if telemetry is not None else None
    judged = device.steering_enabled and intended.mode is not None and actual is not None
    override_until = instant_or_none(data.get("override_until"))
    return DeviceStatus(
        device=device,
        as_of=now,
        last_telemetry=telemetry,
        mode=ModeComparison(
            intended_mode=intended.mode,
            intended_since=intended.since,
            intended_until=intended.until,
            plan_id=intended.plan_id,
            actual_mode=actual,
            actual_observed_at=telemetry.observed_at if telemetry is not None else None,
            in_sync=(intended.mode == actual) if judged else None,
        ),
        current_plan=_plan(deps, device_id, data.get("current_plan_id")),
        recent_commands=_recent_commands(deps, device_id),
        open_alerts=device_alerts(deps, device_id),
        override=OverrideView(
            until=override_until, in_force=override_until is not None and now < override_until
        ),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
