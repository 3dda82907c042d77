"""Where things live in the document store (see DESIGN.md, "Firestore layout").

A module of its own, with no imports, so that a function that only needs a path (dispatch)
does not import the planning modules that also use it.
"""

from __future__ import annotations

__all__ = ["device_path", "plan_path"]


def device_path(device_id: str) -> str:
    return f"devices/{device_id}"


def plan_path(device_id: str, plan_id: str) -> str:
    return f"devices/{device_id}/plans/{plan_id}"
