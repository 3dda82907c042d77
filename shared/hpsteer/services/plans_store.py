"""Plan documents, the device's current plan, and the analytics rows of every plan.

- :func:`write_plan` creates ``devices/{id}/plans/{plan_id}`` with ``create()``: the plan's
  fields (:class:`~hpsteer.domain.plans.Plan`), ``start_at``/``end_at`` as timestamps, the
  solver's gap and time, the inputs' versions, flags (``weather_held_after_at``,
  ``horizon_truncated``) and the **outbox**: one ``{at, action, slot_index, status: "pending"}``
  per mode change, for the command layer, with its **release fields** (``release_due_at``: when
  the sweep takes its release over; :mod:`hpsteer.services.outbox_markers`) when it has any. An
  existing document is the same plan written before (the id names its inputs): it is left as it
  is (its outbox may have moved on) and returned.
- :func:`make_current` sets ``current_plan_id`` on ``devices/{id}`` in a transaction, **only
  moving forward**: the plan wins when its ``(start_at, created_at)`` is later than the current
  plan's (``current_plan_start_at``, ``current_plan_created_at`` kept beside the id). So a late
  redelivery of an older trigger never replaces a newer plan, and a re-plan of the same slot
  (a price correction, a changed comfort band) does.
- A plan of a device with a tariff also carries ``tariff_id``, ``expected_bill_eur`` and
  ``baseline_bill_eur`` (what the household pays, at the effective price) and, per slot,
  ``bill_price_eur_per_kwh`` beside the spot ``price_eur_per_mwh`` (see
  :mod:`hpsteer.services.optimize`); :func:`plan_from_document` reads past these.
- :func:`record_plan` appends one row to ``plans`` (the architecture document's optimization
  runs) and one row per local delivery day to ``cost_savings``, with insert ids
  ``{device_id}/{plan_id}[/{market_date}]``: appending again adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import mode_run_since
from hpsteer.domain.instants import instant_or_none
from hpsteer.domain.market import market_date_of
from hpsteer.domain.plan_track import IndoorTrack
from hpsteer.domain.plans import Plan, PlanSlot
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
)
from hpsteer.ports.analytics import Analytics, Column, TableSchema
from hpsteer.ports.store import Document, DocumentStore, update_as_decided
from hpsteer.services.outbox_markers import RELEASE_DUE_AT, RELEASE_GRACE, new_release
from hpsteer.services.paths import device_path, plan_path

__all__ = [
    "COST_SAVINGS",
    "PLANS",
    "RELEASE_GRACE",
    "cost_by_day",
    "first_run_commanded",
    "make_current",
    "plan_document",
    "plan_from_document",
    "plan_path",
    "record_plan",
    "write_plan",
]

PLANS = TableSchema(
    name="plans",
    columns=(
        Column("device_id", "STRING", required=True),
        Column("plan_id", "STRING", required=True),
        Column("price_area", "STRING", required=True),
        Column("created_at", "TIMESTAMP", required=True),
        Column("start_at", "TIMESTAMP", required=True),
        Column("end_at", "TIMESTAMP", required=True),
        Column("slots", "INT64", required=True),
        Column("resolution_minutes", "INT64", required=True),
        Column("expected_cost_eur", "FLOAT64", required=True),
        Column("baseline_cost_eur", "FLOAT64", required=True),
        Column("solver", "STRING", required=True),
        Column("gap", "FLOAT64"),
        Column("solve_ms", "FLOAT64"),
        Column("trigger", "STRING"),
        Column("tariff_id", "STRING", description="the household's tariff; null: planned on spot"),
        Column(
            "expected_bill_eur",
            "FLOAT64",
            description="the plan's energy at the tariff's effective price (incl. VAT)",
        ),
        Column(
            "baseline_bill_eur",
            "FLOAT64",
            description="own control's energy at the tariff's effective price (incl. VAT)",
        ),
    ),
    partition_by="start_at",
    cluster_by=("device_id",),
    description="One row per plan written (optimization runs).",
)

COST_SAVINGS = TableSchema(
    name="cost_savings",
    columns=(
        Column("device_id", "STRING", required=True),
        Column("plan_id", "STRING", required=True),
        Column("market_date", "DATE", required=True, description="local delivery day"),
        Column("planned_cost_eur", "FLOAT64", required=True),
        Column("baseline_cost_eur", "FLOAT64", required=True),
    ),
    partition_by="market_date",
    cluster_by=("device_id",),
    description="Planned vs own-control energy cost per plan and local day, on the same forecast.",
)


def mode_to_start_from(
    observed: Mode | None, device: Mapping[str, Any] | None, start_at: datetime
) -> Mode | None:
    """The mode a new plan's outbox may take the device to be in when the plan starts, so that
    it sends no command for a first slot in that mode; None: it sets its first mode explicitly.

    The observed mode (the device's stored telemetry) counts only when the current plan holds the
    device in that same mode at ``start_at`` (or no plan holds it at all). When the two disagree,
    one of them is out of date: the telemetry predates a command we sent since (a remediation, a
    plan's change), or the device drifted and reconciliation has not corrected it yet. Either way
    the device's mode is unknown, and a plan that trusted a stale sighting left the device where
    our last command put it, off the new plan, until reconciliation next read it (campaign seed 3:
    a reboot's sighting outlived the remediation that corrected it, and the next plan sent nothing).
    """
    if observed is None:
        return None
    data = device or {}
    end_at = data.get("current_plan_end_at")
    if isinstance(end_at, datetime) and end_at <= start_at:
        return observed  # the current plan no longer holds the device
    held = _mode_at(data.get("current_plan_modes"), start_at)
    if held is None or held == observed.value:
        return observed
    return None


def plan_document(plan: Plan, current_mode: Mode | None, extra: dict[str, Any]) -> dict[str, Any]:
    outbox = [
        {**change.model_dump(mode="json"), "status": "pending"}
        for change in plan.mode_changes(current_mode)
    ]
    return {
        **plan.to_document(),
        "start_at": plan.start_at,
        "end_at": plan.end_at,
        "created_at": plan.created_at,
        "outbox": outbox,
        **extra,
    }


def write_plan(
    store: DocumentStore, plan: Plan, document: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Create the plan document; return (the stored document, whether this call created it).

    A plan with mode changes is created with its release fields
    (:func:`~hpsteer.services.outbox_markers.new_release`), so the sweep finds a plan whose release
    a crash interrupted: its ``release_due_at`` is when the sweep takes the release over
    (:data:`RELEASE_GRACE` after the plan was made; a release moves it to when the outbox's next
    change comes within reach, and the conclusion clears it).
    """
    path = plan_path(plan.device_id, plan.plan_id)
    if document.get("outbox") and RELEASE_DUE_AT not in document:
        document = {**document, **new_release(plan.created_at)}
    try:
        store.create(path, document)
    except DocumentAlreadyExists:
        existing = store.get(path)
        if existing is None:  # deleted between create and get: let a redelivery decide
            raise ConcurrencyConflict(f"{path} vanished while being written") from None
        return existing.data, False
    return document, True


def make_current(
    store: DocumentStore,
    device_id: str,
    plan_id: str,
    start_at: datetime,
    created_at: datetime,
    schedule: Sequence[tuple[datetime, Mode]] = (),
    end_at: datetime | None = None,
    track: IndoorTrack | None = None,
    *,
    read: Document | None = None,
    first_run_commanded: bool = True,
) -> bool:
    """Point the device at this plan if it is newer than the current one; True if it moved.

    ``schedule`` (the plan's mode runs) and ``end_at`` are kept beside the id
    (``current_plan_modes``, ``current_plan_end_at``), so reconciliation knows the intended mode
    from the device document alone; so is the mode the outgoing plan held the device in when
    this one starts (``previous_plan_mode``): a device still in it after the new plan's first
    command failed is ours to correct, not the household's choice. ``track`` (the plan's
    predicted indoor temperatures, ``current_plan_track``) lets telemetry ingestion ask for a
    re-plan when the home leaves it (:mod:`hpsteer.domain.plan_track`); without one, none is
    asked for this plan.

    ``first_run_commanded``: whether the plan sends a command for its first run (False: its
    outbox starts later, :func:`mode_to_start_from`). A first run that sends none and continues
    the mode the outgoing plan holds the device in at ``start_at`` is the same mode run: its
    stored run carries ``since``, when that run began (under the outgoing plan, or earlier), and
    reconciliation reckons the command path's window from there (:func:`~hpsteer.services.
    reconcile.intended_now`). Without it, every re-plan that kept the mode restarted that window,
    and reconciliation looked at the device for none of its 25 minutes although no command was
    in flight (a reboot's drift at 11:50, a re-plan at 12:00 keeping min: not judged until 12:30).

    ``read``: the device document as the caller read it (optimize, before planning). The decision
    is then made on it and the move is one update conditional on its ``update_time``, with no
    read; only when the document was written since (telemetry, reconciliation) does a
    transaction read it again and decide anew (:func:`~hpsteer.ports.store.update_as_decided`).
    A plan that ``read`` shows not newer than the
    current one does not move: plans only move forward, so a later read would not show it
    newer either."""
    path = device_path(device_id)

    def decide(data: Mapping[str, Any]) -> tuple[dict[str, Any], bool] | None:
        """The move to this plan (changes, True); None: the device stays where it is."""
        if data.get("current_plan_id") == plan_id:
            return None
        current_start = data.get("current_plan_start_at")
        current_created = data.get("current_plan_created_at")
        if (
            isinstance(current_start, datetime)
            and isinstance(current_created, datetime)
            and (start_at, created_at) <= (current_start, current_created)
        ):
            return None
        modes: list[dict[str, Any]] = [{"at": at, "mode": mode.value} for at, mode in schedule]
        held, held_since = _run_at(data.get("current_plan_modes"), start_at)
        if (
            not first_run_commanded
            and modes
            and held == modes[0]["mode"]
            and held_since is not None
            and held_since < modes[0]["at"]
        ):
            modes[0]["since"] = held_since  # the same run, begun under the outgoing plan
        move = {
            "current_plan_id": plan_id,
            "current_plan_start_at": start_at,
            "current_plan_created_at": created_at,
            "current_plan_end_at": end_at,
            "current_plan_modes": modes,
            "previous_plan_mode": held,
            "current_plan_track": None if track is None else track.to_document(),
        }
        return move, True

    snapshot = None if read is None else (read.data, read.update_time)
    try:
        return update_as_decided(store, path, decide, read=snapshot) is not None
    except DocumentNotFound:
        return False


def _mode_at(runs: Any, at: datetime) -> str | None:
    """The mode of the last run starting at or before ``at`` in stored ``current_plan_modes``."""
    return _run_at(runs, at)[0]


def _run_at(runs: Any, at: datetime) -> tuple[str | None, datetime | None]:
    """The mode of the last run starting at or before ``at`` in stored ``current_plan_modes``, and
    since when it has run (its ``since`` when an earlier plan began it, else its start)."""
    mode: str | None = None
    since: datetime | None = None
    for run in runs if isinstance(runs, list) else []:
        start = run.get("at") if isinstance(run, dict) else None
        if isinstance(start, datetime) and start <= at:
            mode = str(run.get("mode")) if run.get("mode") is not None else None
            since = mode_run_since(run, start)
    return mode, since


def first_run_commanded(
    document: Mapping[str, Any], schedule: Sequence[tuple[datetime, Mode]]
) -> bool:
    """Whether a plan document's outbox has a change at its first mode run's start."""
    if not schedule:
        return False
    first = schedule[0][0]
    return any(
        instant_or_none(entry.get("at")) == first
        for entry in document.get("outbox") or []
        if isinstance(entry, Mapping)
    )


def cost_by_day(
    plan: Plan, planned_kwh: Sequence[float], baseline_kwh: Sequence[float]
) -> list[dict[str, Any]]:
    """Planned and baseline energy cost per local delivery day of the plan's slots."""
    days: dict[date, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for slot, planned, baseline in zip(plan.slots, planned_kwh, baseline_kwh, strict=True):
        day = market_date_of(plan.price_area, slot.start_at)
        days[day][0] += slot.price_eur_per_mwh * planned / 1000.0
        days[day][1] += slot.price_eur_per_mwh * baseline / 1000.0
    return [
        {"market_date": day.isoformat(), "planned_cost_eur": c[0], "baseline_cost_eur": c[1]}
        for day, c in sorted(days.items())
    ]


def plan_from_document(data: Mapping[str, Any]) -> Plan:
    """The :class:`Plan` inside a stored plan document (which carries more fields, also in its
    slots)."""
    fields = {k: v for k, v in data.items() if k in Plan.model_fields}
    slots = fields.get("slots")
    if isinstance(slots, list):
        fields["slots"] = [
            {k: v for k, v in slot.items() if k in PlanSlot.model_fields}
            if isinstance(slot, Mapping)
            else slot
            for slot in slots
        ]
    return Plan.parse(fields)


def record_plan(
    analytics: Analytics, plan: Plan, document: Mapping[str, Any], trigger: str
) -> None:
    """Append the plan's row to ``plans`` and its days to ``cost_savings`` (idempotent)."""
    row = {
        "device_id": plan.device_id,
        "plan_id": plan.plan_id,
        "price_area": plan.price_area.value,
        "created_at": plan.created_at,
        "start_at": plan.start_at,
        "end_at": plan.end_at,
        "slots": len(plan.slots),
        "resolution_minutes": int(plan.resolution),
        "expected_cost_eur": plan.expected_cost_eur,
        "baseline_cost_eur": plan.baseline_cost_eur,
        "solver": plan.solver,
        "gap": plan.solver_gap,
        "solve_ms": document.get("solve_ms"),
        "trigger": document.get("trigger", trigger),
        "tariff_id": document.get("tariff_id"),
        "expected_bill_eur": document.get("expected_bill_eur"),
        "baseline_bill_eur": document.get("baseline_bill_eur"),
    }
    analytics.append(PLANS.name, [row], [f"{plan.device_id}/{plan.plan_id}"])
    rows = [
        {
            "device_id": plan.device_id,
            "plan_id": plan.plan_id,
            "market_date": date.fromisoformat(day["market_date"]),
            "planned_cost_eur": day["planned_cost_eur"],
            "baseline_cost_eur": day["baseline_cost_eur"],
        }
        for day in document.get("cost_by_day", [])
    ]
    ids = [f"{plan.device_id}/{plan.plan_id}/{row['market_date']}" for row in rows]
    if rows:
        analytics.append(COST_SAVINGS.name, rows, ids)
