"""A plan's release fields: its outbox is not yet concluded (:mod:`hpsteer.services.outbox`).

They are top-level fields of the plan document (``devices/{id}/plans/{plan_id}``), not a document
of their own:

- ``release_due_at`` (timestamp): when the sweep takes the plan's release over. A plan with mode
  changes is created with it (:data:`RELEASE_GRACE` after the plan was made); a release that
  supersedes older commands sets it that long after it ran, one that leaves changes for later
  moves it to when the next of them comes within reach; the conclusion clears it (``None``). The
  sweep's query (``release_due_at <= now`` over the collection group ``plans``) never matches a
  cleared one: a range filter matches values of its own type only, ``None`` included.
- ``release_superseded_command_ids``: the older commands an unconcluded release superseded (a
  later release of the plan derives their rows again); cleared with ``release_due_at``.

Apart from both their writers (:mod:`hpsteer.services.plans_store` creates a plan with them; the
outbox's releases move or clear them) so that the dispatch function, which sweeps the plans whose
release is due, does not import the plans' storage with it (cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "PLANS",
    "RELEASE_DUE_AT",
    "RELEASE_GRACE",
    "RELEASE_SUPERSEDED",
    "concluded_release",
    "new_release",
    "release_unconcluded",
    "superseded_by_release",
]

PLANS = "plans"
"""The collection id of every device's plans (the sweep's collection-group query)."""
RELEASE_DUE_AT = "release_due_at"
RELEASE_SUPERSEDED = "release_superseded_command_ids"
RELEASE_GRACE = timedelta(minutes=2)
"""A release that has not concluded this long after it began is taken over by the sweep: the
``release_due_at`` a plan with mode changes is written with (and every release that supersedes
rewrites, until it concludes)."""


def new_release(created_at: datetime) -> dict[str, Any]:
    """The release fields of a plan with mode changes made at ``created_at``
    (:func:`~hpsteer.services.plans_store.write_plan`)."""
    return {RELEASE_DUE_AT: created_at + RELEASE_GRACE}


def concluded_release() -> dict[str, Any]:
    """The changes that clear a plan's release fields (its outbox concluded, or dropped)."""
    return {RELEASE_DUE_AT: None, RELEASE_SUPERSEDED: None}


def release_unconcluded(plan: Mapping[str, Any]) -> bool:
    """Whether the plan document (as read) has a release not yet concluded."""
    return plan.get(RELEASE_DUE_AT) is not None


def superseded_by_release(plan: Mapping[str, Any]) -> list[str]:
    """The older commands an unconcluded release of the plan superseded (as read)."""
    ids = plan.get(RELEASE_SUPERSEDED)
    return [str(i) for i in ids] if isinstance(ids, list) else []
