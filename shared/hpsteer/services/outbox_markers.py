"""The outbox marker a plan with mode changes is written with (:mod:`hpsteer.services.outbox`).

Apart from both its writers (:mod:`hpsteer.services.plans_store` creates it with the plan; the
outbox's releases move its ``due_at`` or delete it) so that the dispatch function, which sweeps
the markers, does not import the plans' storage with it (cold start).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

__all__ = ["MARKERS", "RELEASE_GRACE", "marker_path", "outbox_marker"]

MARKERS = "outboxes"
RELEASE_GRACE = timedelta(minutes=2)
"""A release that has not concluded this long after it began is taken over by the sweep: the
``due_at`` a plan's outbox marker is written with (and every release rewrites, until it
concludes)."""


def marker_path(device_id: str, plan_id: str) -> str:
    return f"{MARKERS}/{device_id}~{plan_id}"


def outbox_marker(device_id: str, plan_id: str, created_at: datetime) -> dict[str, Any]:
    """The outbox marker of a plan made at ``created_at``
    (:func:`~hpsteer.services.plans_store.write_plan`)."""
    return {
        "device_id": device_id,
        "plan_id": plan_id,
        "created_at": created_at,
        "due_at": created_at + RELEASE_GRACE,
    }
