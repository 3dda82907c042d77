"""Plans published as optimize publishes them, and whether an outbox release was concluded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.outbox import ReleaseBatch, ReleaseOutcome, release_plan
from hpsteer.services.outbox_markers import RELEASE_DUE_AT, RELEASE_SUPERSEDED, new_release
from hpsteer.services.plans_store import make_current

PLAN_START = datetime(2025, 1, 15, 6, tzinfo=UTC)
"""Where the plans of :func:`publish` start (the local fleet's clock starts there too)."""
HOUR = timedelta(hours=1)


def outbox_concluded(
    store: DocumentStore, settings: Settings, device_id: str, plan_id: str
) -> bool:
    """The release's conclusion was written: with no change left pending, the plan's release
    fields are cleared; with changes left for later, its release comes due when the next one
    comes within ``release_ahead_minutes`` and names no superseded command (their rows are out)."""
    plan = store.get(f"devices/{device_id}/plans/{plan_id}")
    assert plan is not None, f"no plan {plan_id} of {device_id}"
    later = [
        datetime.fromisoformat(str(entry["at"]))
        for entry in plan.data.get("outbox", [])
        if entry.get("status") == "pending"
    ]
    due_at = plan.data.get(RELEASE_DUE_AT)
    if due_at is None:
        return not later and not plan.data.get(RELEASE_SUPERSEDED)
    reach = timedelta(minutes=settings.release_ahead_minutes)
    return bool(later) and due_at == min(later) - reach and not plan.data.get(RELEASE_SUPERSEDED)


def release_due_at(store: DocumentStore, device_id: str, plan_id: str) -> datetime | None:
    """When the plan's release comes due for the sweep; None once its outbox was concluded (or
    dropped), or if it never had a change to release."""
    plan = store.get(f"devices/{device_id}/plans/{plan_id}")
    assert plan is not None, f"no plan {plan_id} of {device_id}"
    due = plan.data.get(RELEASE_DUE_AT)
    assert due is None or isinstance(due, datetime)
    return due


def plan_document(
    local: LocalFleet, device_id: str, plan_id: str, runs: Sequence[tuple[int, Mode]], end_h: int
) -> dict[str, Any]:
    """A plan as optimize writes it, from :data:`PLAN_START`: one outbox entry per run of one
    mode (hours after the start), slot index = hours, ending ``end_h`` hours after the start,
    with its release fields if it has any change (as
    :func:`~hpsteer.services.plans_store.write_plan` writes them)."""
    return {
        **(new_release(local.clock.now()) if runs else {}),
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
    """Write the plan with its release fields, make it current with its mode runs (as optimize
    does, a minute after the one before), and release it."""
    local.fleet.advance(local.clock.now() + timedelta(minutes=1))
    store = local.deps.store
    document = plan_document(local, device_id, plan_id, runs, end_h)
    store.set(f"devices/{device_id}/plans/{plan_id}", document)
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
