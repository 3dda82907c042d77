"""Whether a plan's outbox release was concluded, as far as its changes are within reach."""

from __future__ import annotations

from datetime import datetime, timedelta

from hpsteer.config import Settings
from hpsteer.ports.store import DocumentStore
from hpsteer.services.outbox import marker_path


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
