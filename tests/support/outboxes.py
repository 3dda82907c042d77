"""Plans published as optimize publishes them, and whether an outbox release was concluded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.outbox import ReleaseBatch, ReleaseOutcome, marker_path, release_plan
from hpsteer.services.plans_store import make_current, outbox_marker

PLAN_START = datetime(2025, 1, 15, 6, tzinfo=UTC)
"""Where the plans of :func:`publish` start (the local fleet's clock starts there too)."""
HOUR = timedelta(hours=1)


def outbox_concluded(
    store: DocumentStore, settings: Settings, device_id: str, plan_id: str
) -> bool:
    """The release's conclusion was written: with no change left pending, the marker is gone;
    with changes left for later, the marker waits for the next one to come within
    ``release_ahead_minutes`` and names no superseded command (their rows are out)."""
    plan = store.get(f"devices/{device_id}/plans/{plan_id}")
    assert plan is not None, f"no plan {plan_id} of {device_id}"
    later = [
        datetime.fromisoformat(str(entry["at"]))
        for entry in plan.data.get("outbox", [])
        if entry.get("status") == "pending"
    ]
    marker = store.get(marker_path(device_id, plan_id))
    if marker is None:
        return not later
    reach = timedelta(minutes=settings.release_ahead_minutes)
    return (
        bool(later)
        and marker.data.get("due_at") == min(later) - reach
        and not marker.data.get("superseded_command_ids")
    )


def plan_document(
    local: LocalFleet, device_id: str, plan_id: str, runs: Sequence[tuple[int, Mode]], end_h: int
) -> dict[str, Any]:
    """A plan as optimize writes it, from :data:`PLAN_START`: one outbox entry per run of one
    mode (hours after the start), slot index = hours, ending ``end_h`` hours after the start."""
    return {
        "plan_id": plan_id,
        "device_id": device_id,
        "created_at": local.clock.now(),
        "start_at": PLAN_START,
        "end_at": PLAN_START + end_h * HOUR,
        "outbox": [
            {
                "at": (PLAN_START + h * HOUR).isoformat(),
                "action": mode.action.value,
                "slot_index": h,
                "status": "pending",
            }
            for h, mode in runs
        ],
    }


def publish(
    local: LocalFleet,
    device_id: str,
    plan_id: str,
    runs: Sequence[tuple[int, Mode]],
    *,
    end_h: int = 12,
    batch: ReleaseBatch | None = None,
) -> ReleaseOutcome:
    """Write the plan and its marker, make it current with its mode runs (as optimize does, a
    minute after the one before), and release it."""
    local.fleet.advance(local.clock.now() + timedelta(minutes=1))
    store = local.deps.store
    document = plan_document(local, device_id, plan_id, runs, end_h)
    store.set(f"devices/{device_id}/plans/{plan_id}", document)
    store.set(
        marker_path(device_id, plan_id),
        outbox_marker(device_id, plan_id, local.clock.now()),
    )
    schedule = [(PLAN_START + h * HOUR, mode) for h, mode in runs]
    assert make_current(
        store,
        device_id,
        plan_id,
        PLAN_START,
        local.clock.now(),
        schedule,
        PLAN_START + end_h * HOUR,
    )
    device = store.get(f"devices/{device_id}")
    assert device is not None
    return release_plan(local.deps, device_id, device.data, document, batch=batch, fresh=True)
