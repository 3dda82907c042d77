"""A planning problem, a schedule of modes, and the one way a schedule is judged.

A :class:`PlanningProblem` holds everything a planner may use for one device over its horizon:
the plant it believes in, prices, weather, comfort band, the state now, and the wear rules. A
planner returns modes, one per slot; :func:`evaluate` then simulates those modes on a plant with
:meth:`hpsteer.thermal.Plant.simulate` (:meth:`~hpsteer.thermal.Plant.step`'s sub-steps for one
state, on Python floats: the same result to rounding, at a twentieth of the cost) and prices the
result. Every planner, baseline and the backtest use :func:`evaluate`, so costs are comparable by
construction: a planner's own internal estimate never reaches a report.

Objective (EUR) = energy cost + comfort penalty + wear penalty, where
- energy cost = Σ price_t * electricity_t (price EUR/MWh → EUR/kWh),
- comfort penalty = comfort_penalty_eur_per_kh * Σ (K below the band + K above the band) * h,
  on the slot's mean air temperature,
- wear penalty = switch_penalty_eur * number of mode changes (the first slot counts a change
  when it differs from ``current_mode``).
Hard rules a schedule must keep: ``min_dwell_slots`` (a mode, once set, stays that many slots,
except the very first mode which continues ``current_mode``'s dwell) and
``max_changes_per_day`` per 24 h window starting at ``start_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from hpsteer.domain.actions import Mode
from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import InvalidInput
from hpsteer.thermal import Plant, SlotConditions

__all__ = ["Evaluation", "Planner", "PlanningProblem", "count_changes", "evaluate"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PlanningProblem:
    plant: Plant
    start_at: datetime
    slot_hours: float
    prices_eur_per_mwh: FloatArray
    outdoor_temp_c: FloatArray
    solar_irradiance_w_per_m2: FloatArray
    setpoint_c: float
    comfort_min_c: float
    comfort_max_c: float
    initial_air_temp_c: float
    initial_mass_temp_c: float
    current_mode: Mode = Mode.MID
    comfort_penalty_eur_per_kh: float = 1.0
    switch_penalty_eur: float = 0.02
    min_dwell_slots: int = 1
    max_changes_per_day: int = 6
    internal_gains_w: FloatArray | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_at", ensure_utc(self.start_at, field="start_at"))
        n = len(self.prices_eur_per_mwh)
        if n == 0:
            raise InvalidInput("a planning problem needs at least one slot")
        for name in ("outdoor_temp_c", "solar_irradiance_w_per_m2"):
            if len(getattr(self, name)) != n:
                raise InvalidInput(f"{name} has {len(getattr(self, name))} values for {n} slots")
        if self.internal_gains_w is not None and len(self.internal_gains_w) != n:
            raise InvalidInput(f"internal_gains_w has {len(self.internal_gains_w)} values")
        for name in ("prices_eur_per_mwh", "outdoor_temp_c", "solar_irradiance_w_per_m2"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise InvalidInput(f"{name} has values that are not finite numbers")
        if not self.comfort_min_c <= self.setpoint_c <= self.comfort_max_c:
            raise InvalidInput(
                f"infeasible comfort band: need min {self.comfort_min_c} <= setpoint "
                f"{self.setpoint_c} <= max {self.comfort_max_c} °C"
            )
        if self.slot_hours <= 0 or self.min_dwell_slots < 1 or self.max_changes_per_day < 0:
            raise InvalidInput("slot_hours > 0, min_dwell_slots >= 1, max_changes_per_day >= 0")

    @property
    def slots(self) -> int:
        return len(self.prices_eur_per_mwh)

    def slot_start(self, index: int) -> datetime:
        return self.start_at + timedelta(hours=self.slot_hours * index)

    def conditions(self, index: int) -> SlotConditions:
        gains = None if self.internal_gains_w is None else float(self.internal_gains_w[index])
        return SlotConditions(
            duration_h=self.slot_hours,
            outdoor_temp_c=float(self.outdoor_temp_c[index]),
            setpoint_c=self.setpoint_c,
            solar_irradiance_w_per_m2=float(self.solar_irradiance_w_per_m2[index]),
            internal_gains_w=gains,
        )

    def slots_per_day(self) -> int:
        return max(1, round(24 / self.slot_hours))


@dataclass(frozen=True)
class Evaluation:
    """What a schedule did on a plant, per slot and in total."""

    modes: tuple[Mode, ...]
    mean_air_temp_c: FloatArray
    end_air_temp_c: float
    end_mass_temp_c: float
    electricity_kwh: FloatArray
    heat_kwh: FloatArray
    energy_cost_eur: float
    comfort_kh_below: float
    comfort_kh_above: float
    comfort_penalty_eur: float
    changes: int
    wear_penalty_eur: float

    @property
    def objective_eur(self) -> float:
        return self.energy_cost_eur + self.comfort_penalty_eur + self.wear_penalty_eur


def count_changes(modes: Sequence[Mode], current: Mode) -> int:
    previous, changes = current, 0
    for mode in modes:
        changes += mode != previous
        previous = mode
    return changes


def evaluate(
    problem: PlanningProblem, modes: Sequence[Mode], plant: Plant | None = None
) -> Evaluation:
    """Simulate ``modes`` on ``plant`` (the problem's by default) from the problem's state."""
    if len(modes) != problem.slots:
        raise InvalidInput(f"{len(modes)} modes for {problem.slots} slots")
    plant = plant or problem.plant
    run = plant.simulate(
        problem.initial_air_temp_c,
        problem.initial_mass_temp_c,
        [mode.setpoint_offset_k for mode in modes],
        duration_h=problem.slot_hours,
        outdoor_temp_c=problem.outdoor_temp_c,
        setpoint_c=problem.setpoint_c,
        solar_irradiance_w_per_m2=problem.solar_irradiance_w_per_m2,
        internal_gains_w=problem.internal_gains_w,
    )
    mean_air, elec = run.mean_air_temp_c, run.electricity_kwh
    below = np.maximum(0.0, problem.comfort_min_c - mean_air) * problem.slot_hours
    above = np.maximum(0.0, mean_air - problem.comfort_max_c) * problem.slot_hours
    changes = count_changes(modes, problem.current_mode)
    return Evaluation(
        modes=tuple(modes),
        mean_air_temp_c=mean_air,
        end_air_temp_c=run.end_air_temp_c,
        end_mass_temp_c=run.end_mass_temp_c,
        electricity_kwh=elec,
        heat_kwh=run.heat_kwh,
        energy_cost_eur=float(np.dot(problem.prices_eur_per_mwh, elec) / 1000.0),
        comfort_kh_below=float(below.sum()),
        comfort_kh_above=float(above.sum()),
        comfort_penalty_eur=float((below.sum() + above.sum()) * problem.comfort_penalty_eur_per_kh),
        changes=changes,
        wear_penalty_eur=changes * problem.switch_penalty_eur,
    )


@runtime_checkable
class Planner(Protocol):
    @property
    def name(self) -> str: ...

    def plan(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        """One mode per slot, keeping the dwell and daily-change rules."""
        ...
