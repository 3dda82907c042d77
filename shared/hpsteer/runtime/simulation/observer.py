"""The simulation's truth: what really happened in the homes, sampled at every reconcile tick.

Nothing here trusts the system under test: the mode a heat pump truly runs in comes from the
simulated device (its applied lever against the household's own setting), household changes
from the household's own setting changing, cost and comfort from the physics of each home and
its never-steered twin (:class:`hpsteer.sim.fleet.Twin`). What the system *intends* is read as
reconciliation reads it (the device document's current plan).

**Drift** (as ``benchmarks/reconcile.py`` defines it): an episode of a device sampled out of its
plan's mode while no household change pauses it (the pause runs from the change to the end of
that market day). It **could first be seen** at the first sample at or after both its first
sighting and ``window`` after its mode run began (the time dispatch and verification have to
bring the device there themselves), and not during an outage of its manufacturer's cloud (nothing
can correct it then: its clock starts when the cloud is back). It is **corrected within one
interval** if it ends corrected
by the sample one interval after that. Episodes the plan moved on from, that a household change
interrupted, or that the run's end cut off are excluded from the share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.domain.actions import Mode
from hpsteer.domain.market import PriceArea, delivery_day_bounds, market_date_of
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.simulation.record import HomeSample, LoadPoint
from hpsteer.services.paths import device_path
from hpsteer.services.reconcile import intended_now
from hpsteer.sim.fleet import ROOM_K_PER_OFFSET_STEP, Fleet, Home

__all__ = ["Drift", "HouseholdChange", "Observer"]


@dataclass
class Drift:
    device_id: str
    manufacturer: str
    cause: str
    """``reverted`` (a reboot), ``not_applied`` (the device got a command and kept its mode) or
    ``not_sent`` (nothing reached it)."""
    intended: Mode
    run_since: datetime
    first_seen_at: datetime
    visible_at: datetime | None = None
    ended: str | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HouseholdChange:
    device_id: str
    at: datetime
    pause_until: datetime


@dataclass
class _Truth:
    household: float
    reboots: int
    received: int
    energy_kwh: float
    twin_energy_kwh: float


def true_mode(home: Home) -> Mode | None:
    """The mode the heat pump runs in: its applied lever against the household's own setting
    (None: a setting no mode stands for)."""
    unit_k = ROOM_K_PER_OFFSET_STEP if home.lever.kind == "offset_steps" else 1.0
    offset_k = (home.applied_lever - home.household_lever) * unit_k
    return next((m for m in Mode if abs(offset_k - m.setpoint_offset_k) < 1e-6), None)


@dataclass
class Observer:
    fleet: Fleet
    store: DocumentStore
    area: PriceArea
    window: timedelta
    interval: timedelta
    sampled_homes: frozenset[str]
    started_at: datetime
    truth: dict[str, _Truth] = field(default_factory=dict)
    open: dict[str, Drift] = field(default_factory=dict)
    closed: list[Drift] = field(default_factory=list)
    changes: list[HouseholdChange] = field(default_factory=list)
    _changes_of: dict[str, list[HouseholdChange]] = field(
        default_factory=dict, init=False, repr=False
    )
    """:attr:`changes` by device (:meth:`paused` looks at one home's, at every sample)."""
    load: list[LoadPoint] = field(default_factory=list)
    samples: dict[str, list[HomeSample]] = field(default_factory=dict)
    last_sample_at: datetime | None = None
    blackout: Callable[[str, datetime], bool] = lambda manufacturer, at: False
    """Whether a manufacturer's cloud answers nothing at an instant (an outage of the fault
    profile): nothing can correct a drift then, so it can be seen only once the cloud is back."""

    def __post_init__(self) -> None:
        for home in self.fleet:
            self.truth[home.home_id] = self._now_of(home)
            if home.home_id in self.sampled_homes:
                self.samples[home.home_id] = []
        for change in self.changes:
            self._changes_of.setdefault(change.device_id, []).append(change)
        self.last_sample_at = self.started_at

    @staticmethod
    def _now_of(home: Home) -> _Truth:
        twin = home.twin
        return _Truth(
            home.household_lever,
            home.reboots,
            home.commands_received,
            home.electricity_kwh,
            twin.electricity_kwh if twin else 0.0,
        )

    def sample(self, at: datetime) -> None:
        """Look at every home at ``at`` (the fleet has been stepped to it)."""
        previous = self.last_sample_at or at
        hours = (at - previous) / timedelta(hours=1)
        kw = baseline_kw = 0.0
        for home in self.fleet:
            before = self.truth[home.home_id]
            now = self._now_of(home)
            kw += now.energy_kwh - before.energy_kwh
            baseline_kw += now.twin_energy_kwh - before.twin_energy_kwh
            document = self.store.get(device_path(home.home_id))
            self._sample_home(home, at, before, now, document.data if document else {})
            self.truth[home.home_id] = now
        if hours > 0:
            self.load.append(
                LoadPoint(
                    at=previous.isoformat(),
                    kw=round(kw / hours, 3),
                    baseline_kw=round(baseline_kw / hours, 3),
                )
            )
        self.last_sample_at = at

    def _pause_until(self, at: datetime) -> datetime:
        return delivery_day_bounds(self.area, market_date_of(self.area, at))[1]

    def paused(self, device_id: str, at: datetime) -> bool:
        return any(c.at <= at < c.pause_until for c in self._changes_of.get(device_id, ()))

    def _sample_home(
        self, home: Home, at: datetime, before: _Truth, now: _Truth, device: Mapping[str, Any]
    ) -> None:
        if now.household != before.household:
            exact = home.changed_by == "user" and home.changed_at is not None
            when = home.changed_at if exact and home.changed_at else self.last_sample_at or at
            change = HouseholdChange(home.home_id, when, self._pause_until(when))
            self.changes.append(change)
            self._changes_of.setdefault(home.home_id, []).append(change)
        intended_state, _ = intended_now(device, at)
        intended = intended_state.mode
        actual = true_mode(home)
        paused = self.paused(home.home_id, at)
        if home.home_id in self.samples:
            twin = home.twin
            self.samples[home.home_id].append(
                HomeSample(
                    at=at.isoformat(),
                    indoor_c=round(home.air_temp_c, 2),
                    baseline_indoor_c=round(twin.air_temp_c if twin else home.air_temp_c, 2),
                    outdoor_c=round(self.fleet.outdoor_at(home, at), 1),
                    planned_mode=intended.value if intended else None,
                    actual_mode=actual.value if actual else None,
                )
            )
        drift = self.open.get(home.home_id)
        if drift is not None:
            ended = _ending(drift, intended, actual, paused)
            if ended is not None:
                self._close(drift, ended, at)
                drift = None
        if drift is None and not paused and intended is not None and actual is not intended:
            rebooted = now.reboots > before.reboots
            received = now.received > before.received
            cause = "reverted" if rebooted else "not_applied" if received else "not_sent"
            since = intended_state.since or at
            drift = Drift(home.home_id, home.manufacturer, cause, intended, since, at)
            self.open[home.home_id] = drift
        if (
            drift is not None
            and drift.visible_at is None
            and at >= drift.run_since + self.window
            and not self.blackout(home.manufacturer, at)
        ):
            drift.visible_at = at

    def _close(self, drift: Drift, ended: str, at: datetime) -> None:
        drift.ended, drift.ended_at = ended, at
        self.closed.append(drift)
        del self.open[drift.device_id]

    def finish(self) -> list[Drift]:
        """Every episode, the open ones closed as cut off by the run's end."""
        for drift in list(self.open.values()):
            self._close(drift, "run_end", self.last_sample_at or drift.first_seen_at)
        return self.closed


def _ending(drift: Drift, intended: Mode | None, actual: Mode | None, paused: bool) -> str | None:
    if paused:
        return "household_change"
    if intended is not drift.intended:
        return "plan_moved_on"
    if actual is intended:
        return "corrected"
    return None


def drift_verdict(drift: Drift, interval: timedelta) -> str:
    """``within``, ``late`` or why the episode is excluded (``not_visible`` among them)."""
    if drift.visible_at is None:
        return "not_visible"
    deadline = drift.visible_at + interval
    if drift.ended == "corrected" and drift.ended_at is not None:
        return "within" if drift.ended_at <= deadline else "late"
    if drift.ended_at is not None and drift.ended_at <= deadline:
        return str(drift.ended)
    return "late"


def drift_figures(drifts: Iterable[Drift], interval: timedelta) -> dict[str, Any]:
    every = list(drifts)
    verdicts = Counter(drift_verdict(d, interval) for d in every)
    judged = verdicts["within"] + verdicts["late"]
    return {
        "episodes": len(every),
        "judged": judged,
        "corrected_within_interval": verdicts["within"],
        "pct": round(100.0 * verdicts["within"] / judged, 2) if judged else None,
        "verdicts": dict(sorted(verdicts.items())),
        "by_cause": dict(sorted(Counter(d.cause for d in every).items())),
        "by_manufacturer": {
            manufacturer: dict(
                sorted(
                    Counter(
                        drift_verdict(d, interval) for d in every if d.manufacturer == manufacturer
                    ).items()
                )
            )
            for manufacturer in sorted({d.manufacturer for d in every})
        },
        "intervals_to_correct": dict(
            sorted(Counter(_intervals_to_correct(d, interval) for d in every).items())
        ),
    }


def _intervals_to_correct(drift: Drift, interval: timedelta) -> str:
    """How many intervals after it could be seen a drift was corrected (``never``: it was not,
    ``-``: it never could be seen)."""
    if drift.visible_at is None:
        return "-"
    if drift.ended != "corrected" or drift.ended_at is None:
        return "never"
    return str(max(1, math.ceil((drift.ended_at - drift.visible_at) / interval)))
