"""What a simulation run leaves behind for its report: ``run.json`` in the output folder.

The engine fills a :class:`RunRecord` while it runs; :mod:`.report` draws ``report.html`` from it
alone, so a report can be drawn again from a saved ``run.json``. Every instant is an ISO 8601
string in UTC; every figure is a plain JSON number.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = [
    "FUNNEL_STAGES",
    "ActivityPoint",
    "CommandTimeline",
    "HomeRecord",
    "HomeSample",
    "LoadPoint",
    "PricePoint",
    "RunOptions",
    "RunRecord",
    "TimelineSpan",
]

FUNNEL_STAGES = (
    "created",
    "sent",
    "acknowledged",
    "verified",
    "completed",
    "failed",
    "superseded",
)
"""The command lifecycle's stages, in the order the funnel shows them: a command counts at a
stage when its event history holds an event of that type."""


class RunOptions(TypedDict):
    area: str
    start: str
    """The first simulated market day (``YYYY-MM-DD``, the area's local calendar)."""
    days: int
    devices: int
    seed: int
    faults: str
    """``none``, ``realistic`` or ``heavy``."""
    backend: str
    """``local`` or ``emulators``."""


class PricePoint(TypedDict):
    at: str
    """The price slot's start."""
    eur_per_mwh: float


class LoadPoint(TypedDict):
    at: str
    """The start of the sample interval (the samples are evenly spaced)."""
    kw: float
    """The steered fleet's mean electric power over the interval."""
    baseline_kw: float
    """The same homes under their heat pumps' own control (the twin of each home)."""


class HomeSample(TypedDict):
    at: str
    indoor_c: float
    baseline_indoor_c: float
    outdoor_c: float
    planned_mode: str | None
    """``min``/``mid``/``max`` from the device's current plan, None without one."""
    actual_mode: str | None
    """The mode the heat pump truly runs in (the simulator's truth), None when it is in a
    setting no mode stands for (a household's own change)."""


class HomeRecord(TypedDict):
    device_id: str
    manufacturer: str
    archetype: str
    comfort_min_c: float
    comfort_max_c: float
    setpoint_c: float
    cost_eur: float
    baseline_cost_eur: float
    savings_pct: float | None
    """None when the baseline cost is not positive (nothing to save relative to)."""
    comfort_kh_below: float
    baseline_comfort_kh_below: float
    bill_eur: NotRequired[float]
    """What the household paid on its tariff (incl. VAT); absent when the run had no tariff."""
    baseline_bill_eur: NotRequired[float]
    bill_savings_pct: NotRequired[float | None]
    samples: list[HomeSample]
    """Only for the sample homes the report draws (a few); empty for the others."""


class ActivityPoint(TypedDict):
    at: str
    """The hour's start."""
    drifts: int
    """Drift episodes first seen in the hour (out of the plan's mode, not the household's doing)."""
    overrides: int
    """Household changes recognised as overrides in the hour."""
    remediations: int
    """Remediation commands created in the hour."""
    alerts: int
    """Alerts published in the hour."""


class TimelineSpan(TypedDict):
    """One span of a command's timeline, as ``traces.jsonl`` holds it (simulated time)."""

    name: str
    start_at: str
    end_at: str
    status: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    depth: int
    """How many of the timeline's spans lie above this one (0: the timeline's root)."""
    attributes: dict[str, object]


class CommandTimeline(TypedDict):
    """One command's path through the run's traces: the event that caused it, its planning,
    every dispatch attempt and verification, in start order."""

    device_id: str
    command_id: str
    manufacturer: str
    final_state: str
    why: str
    """Why the command was picked: ``failed``, ``most dispatch attempts (n)``, …"""
    spans: list[TimelineSpan]


class RunRecord(TypedDict):
    options: RunOptions
    summary: dict[str, object]
    """The headline figures: exactly what ``summary.json`` holds."""
    prices: list[PricePoint]
    fleet_load: list[LoadPoint]
    homes: list[HomeRecord]
    funnel: dict[str, dict[str, int]]
    """Per manufacturer, commands per stage of :data:`FUNNEL_STAGES`."""
    activity: list[ActivityPoint]
    timelines: NotRequired[list[CommandTimeline]]
    """A few commands' timelines (:mod:`.timelines`); absent from records written before."""
