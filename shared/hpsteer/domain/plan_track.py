"""The indoor temperature the current plan expects, and when a measurement is far enough off it to
re-plan: MPC's measured-state trigger.

A plan predicts each slot's mean indoor air temperature (``PlanSlot.predicted_indoor_temp_c``).
:class:`IndoorTrack` keeps those figures on the device document (``current_plan_track``, written
by :func:`~hpsteer.services.plans_store.make_current` with the plan's mode runs) so a telemetry
sample can be compared with the plan without reading the plan. A slot's mean is taken as the
temperature at the slot's middle; between two middles the expectation is interpolated linearly,
and before the first middle or after the last it is the nearest slot's mean. Outside the plan's
period there is no expectation.

:func:`drift_replan_due` decides, from the device document and a sample, whether the measured
temperature has left the predicted band (``|measured - predicted| > band_k``) on a steered device
that is not paused by the household: then the plan was made for a home that is not the one
measured (a door left open, a colder night than forecast, a model that is off), and a re-plan
from the measured state is due. At most one such re-plan is asked for per plan
(``devices/{id}.drift_replan`` names the plan it was asked for), and again only after
``cooldown`` if the plan is still current by then (the request was lost, or the re-plan kept the
plan): the trigger heals itself without a second marker or a write on every sample.

The band is the backtest's (:class:`~hpsteer.optimizer.backtest.scenario.Scenario`
``replan_band_k``, 0.5 K), where the same rule re-plans the simulated house.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["IndoorTrack", "PlanDrift", "drift_replan_due"]


@dataclass(frozen=True, slots=True)
class IndoorTrack:
    """A plan's predicted mean indoor temperature per slot, slots of ``step`` from ``start_at``."""

    start_at: datetime
    step: timedelta
    indoor_c: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.step <= timedelta(0):
            raise ValueError(f"a track's step must be positive, not {self.step}")
        if not self.indoor_c:
            raise ValueError("a track needs at least one slot")

    @classmethod
    def of_slots(
        cls, start_at: datetime, step: timedelta, predicted_c: Sequence[float]
    ) -> IndoorTrack:
        return cls(start_at, step, tuple(round(float(value), 2) for value in predicted_c))

    @property
    def end_at(self) -> datetime:
        return self.start_at + self.step * len(self.indoor_c)

    def expected_at(self, instant: datetime) -> float | None:
        """The expected indoor temperature at ``instant`` (module docstring); None outside."""
        if not self.start_at <= instant < self.end_at:
            return None
        slots = (instant - self.start_at) / self.step - 0.5  # in slot middles
        if slots <= 0:
            return self.indoor_c[0]
        below = int(slots)
        if below >= len(self.indoor_c) - 1:
            return self.indoor_c[-1]
        weight = slots - below
        return self.indoor_c[below] * (1 - weight) + self.indoor_c[below + 1] * weight

    def to_document(self) -> dict[str, Any]:
        return {
            "start_at": self.start_at,
            "step_minutes": self.step.total_seconds() / 60,
            "indoor_c": list(self.indoor_c),
        }

    @classmethod
    def from_document(cls, data: Any) -> IndoorTrack | None:
        """The track stored on a device document; None when absent or not a track (a broken
        document is no reason to re-plan, nor to fail a sample)."""
        if not isinstance(data, Mapping):
            return None
        start, minutes, values = (
            data.get("start_at"),
            data.get("step_minutes"),
            data.get("indoor_c"),
        )
        if not isinstance(start, datetime) or not isinstance(minutes, int | float):
            return None
        if not isinstance(values, list) or not values:
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        if minutes <= 0:
            return None
        return cls(start, timedelta(minutes=minutes), tuple(float(v) for v in values))


@dataclass(frozen=True, slots=True)
class PlanDrift:
    """A measurement off the current plan's track by more than the band."""

    plan_id: str
    observed_at: datetime
    measured_c: float
    predicted_c: float

    @property
    def deviation_k(self) -> float:
        return self.measured_c - self.predicted_c

    def to_document(self) -> dict[str, Any]:
        """``devices/{id}.drift_replan``: the plan a re-plan was asked for, and why."""
        return {
            "plan_id": self.plan_id,
            "observed_at": self.observed_at,
            "measured_c": round(self.measured_c, 2),
            "predicted_c": round(self.predicted_c, 2),
        }

    def reason(self) -> str:
        return (
            f"measured indoor {self.measured_c:.1f} °C is {self.deviation_k:+.1f} K off plan "
            f"{self.plan_id}'s {self.predicted_c:.1f} °C at {self.observed_at.isoformat()}"
        )


def drift_replan_due(
    device: Mapping[str, Any],
    measured_c: float | None,
    observed_at: datetime,
    *,
    band_k: float,
    cooldown: timedelta,
) -> PlanDrift | None:
    """The drift to re-plan for, when a sample measuring ``measured_c`` at ``observed_at`` is off
    the device's current plan by more than ``band_k`` and no re-plan for that plan was asked for
    within ``cooldown`` (module docstring); else None."""
    if measured_c is None or device.get("steering_enabled") is not True:
        return None
    paused_until = device.get("override_until")
    if isinstance(paused_until, datetime) and paused_until > observed_at:
        return None  # the household's own setting: not the plan's to predict
    plan_id = device.get("current_plan_id")
    track = IndoorTrack.from_document(device.get("current_plan_track"))
    if not isinstance(plan_id, str) or track is None:
        return None
    predicted = track.expected_at(observed_at)
    if predicted is None or abs(measured_c - predicted) <= band_k:
        return None
    asked = device.get("drift_replan")
    if isinstance(asked, Mapping) and asked.get("plan_id") == plan_id:
        asked_at = asked.get("observed_at")
        if not isinstance(asked_at, datetime) or observed_at - asked_at < cooldown:
            return None
    return PlanDrift(plan_id, observed_at, float(measured_c), predicted)
