"""One house, one planner, slot by slot: the MPC loop of a backtest.

The true house (``true_plant``) is stepped slot by slot on the real weather. The planner
re-plans, always from the measured air temperature and its own estimate of the mass temperature:

- ``start``: at the first slot (today's prices are known: they were published yesterday);
- ``prices``: at the first slot starting at or after ``price_publication_hour`` local time, when
  the next day's prices become known (the horizon then runs to the end of the next day);
- ``weather``: every ``weather_every_h`` hours from the start, with a newly issued forecast;
- ``band``: when the measured air temperature at a slot's end is more than ``replan_band_k`` away
  from what the planner's own model predicted for it (same modes, forecast weather);
- ``horizon``: if a plan runs out (cannot happen with the rules above; kept as a guard).

The horizon is the known prices, at most ``max_horizon_h``. The daily change budget a plan gets
is ``max_changes_per_day`` less the changes already made this local day, so the changes that
actually happen keep the budget per local day whatever the re-plans (the problem counts changes
per 24 h from its own start, which would let every re-plan spend a fresh budget).

The planner cannot measure the mass node, and it does not know the house exactly: it starts from
the nominal plant. A :class:`~hpsteer.optimizer.identify.PlantIdentifier` runs alongside: a bank
of candidate plants (the nominal one with its loss, the controller's room gain and the internal
gains varied), each stepped from the measured air temperature with the applied modes and the
measured weather, and scored by its one-slot error on the measured air temperature (all of it so
far). At every re-plan the planner gets the best candidate and that candidate's mass estimate.
Only what telemetry measures goes in, so production's optimize can do the same from stored history
(:func:`~hpsteer.optimizer.identify.identify`). Why: the wrong plant, not the forecast, is what
loses savings. On SE3 2023, 30 days from 1 January, seed 0 (share of the perfect-model bound):
the nominal plant with the true mass temperature 79 %; the true plant with forecast errors 100 %;
the true plant but for its heat loss 85 %, but for its room gain 94 %; identifying the loss alone
86 %, the loss and the room gain 94 %, and the internal gains too 99 %. Identification is also
what makes the mass estimate usable: the nominal plant's own open-loop mass estimate, with no
identification, reached 62 %. In a perfect-model run the planner's plant is the true one, the
forecast is the real weather, and the mass temperature is the true one (no identification).

What happened is judged by :func:`~hpsteer.optimizer.problem.evaluate` on the true plant over the
period, with the modes actually applied (the loop's own stepping only drives the decisions).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import tzinfo

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.errors import InfeasiblePlan, InvalidInput
from hpsteer.optimizer.backtest.inputs import ForecastErrors, MarketInputs
from hpsteer.optimizer.backtest.scenario import BacktestScenario
from hpsteer.optimizer.identify import PlantIdentifier
from hpsteer.optimizer.problem import Evaluation, Planner, PlanningProblem, evaluate
from hpsteer.thermal import Plant, SlotConditions

__all__ = [
    "RunOutcome",
    "initial_state",
    "period_problem",
    "run_mpc",
]


@dataclass(frozen=True)
class RunOutcome:
    modes: tuple[Mode, ...]
    evaluation: Evaluation
    replans: dict[str, int]


def _conditions(scenario: BacktestScenario, inputs: MarketInputs, index: int) -> SlotConditions:
    return SlotConditions(
        duration_h=inputs.slot_hours,
        outdoor_temp_c=float(inputs.outdoor_temp_c[index]),
        setpoint_c=scenario.setpoint_c,
        solar_irradiance_w_per_m2=float(inputs.solar_irradiance_w_per_m2[index]),
    )


def initial_state(
    plant: Plant, scenario: BacktestScenario, inputs: MarketInputs
) -> tuple[float, float]:
    """(air, mass) °C: the plant's steady state at ``mid`` in the first day's mean weather."""
    first_day = slice(0, inputs.day_ends[0])
    conditions = SlotConditions(
        duration_h=inputs.slot_hours,
        outdoor_temp_c=float(np.mean(inputs.outdoor_temp_c[first_day])),
        setpoint_c=scenario.setpoint_c,
        solar_irradiance_w_per_m2=float(np.mean(inputs.solar_irradiance_w_per_m2[first_day])),
    )
    return plant.steady_state(conditions, Mode.MID.setpoint_offset_k)


def _problem(
    scenario: BacktestScenario,
    inputs: MarketInputs,
    plant: Plant,
    *,
    first: int,
    end: int,
    outdoor_temp_c: np.typing.NDArray[np.float64],
    solar_irradiance_w_per_m2: np.typing.NDArray[np.float64],
    air_temp_c: float,
    mass_temp_c: float,
    current_mode: Mode,
    max_changes: int | None = None,
) -> PlanningProblem:
    return PlanningProblem(
        plant=plant,
        start_at=inputs.slot_start(first),
        slot_hours=inputs.slot_hours,
        prices_eur_per_mwh=inputs.prices_eur_per_mwh[first:end],
        outdoor_temp_c=outdoor_temp_c,
        solar_irradiance_w_per_m2=solar_irradiance_w_per_m2,
        setpoint_c=scenario.setpoint_c,
        comfort_min_c=scenario.comfort_min_c,
        comfort_max_c=scenario.comfort_max_c,
        initial_air_temp_c=air_temp_c,
        initial_mass_temp_c=mass_temp_c,
        current_mode=current_mode,
        min_dwell_slots=max(1, round(scenario.min_dwell_h / inputs.slot_hours)),
        max_changes_per_day=scenario.max_changes_per_day if max_changes is None else max_changes,
    )


def period_problem(
    scenario: BacktestScenario, inputs: MarketInputs, plant: Plant, start: tuple[float, float]
) -> PlanningProblem:
    """The whole simulated period on the real weather: what schedules are judged on."""
    n = inputs.period_slots
    return _problem(
        scenario,
        inputs,
        plant,
        first=0,
        end=n,
        outdoor_temp_c=inputs.outdoor_temp_c[:n],
        solar_irradiance_w_per_m2=inputs.solar_irradiance_w_per_m2[:n],
        air_temp_c=start[0],
        mass_temp_c=start[1],
        current_mode=Mode.MID,
    )


def _price_release_slots(
    scenario: BacktestScenario, inputs: MarketInputs, timezone: tzinfo
) -> dict[int, int]:
    """Slot index at which each later price day becomes known → that day's end index."""
    releases: dict[int, int] = {}
    for day in range(1, len(inputs.day_ends)):
        first = inputs.day_ends[day - 2] if day > 1 else 0
        for index in range(first, inputs.day_ends[day - 1]):
            if (
                inputs.slot_start(index).astimezone(timezone).hour
                >= scenario.price_publication_hour
            ):
                releases[index] = inputs.day_ends[day]
                break
    return releases


def run_mpc(
    *,
    scenario: BacktestScenario,
    inputs: MarketInputs,
    planner: Planner,
    true_plant: Plant,
    planner_plant: Plant,
    forecasts: ForecastErrors,
    start: tuple[float, float],
    timezone: tzinfo,
    perfect: bool = False,
) -> RunOutcome:
    """Simulate the period (module docstring); ``perfect`` gives the planner the truth."""
    n = inputs.period_slots
    slot_h = inputs.slot_hours
    weather_every = max(1, round(scenario.weather_every_h / slot_h))
    max_horizon = max(1, round(scenario.max_horizon_h / slot_h))
    releases = _price_release_slots(scenario, inputs, timezone)

    air, mass = np.array([start[0]]), np.array([start[1]])
    estimate = (
        mass.copy() if perfect else np.array([initial_state(planner_plant, scenario, inputs)[1]])
    )
    observer = None if perfect else PlantIdentifier(planner_plant, float(estimate[0]))
    plan_plant = planner_plant
    predicted_air, predicted_mass = air.copy(), estimate.copy()
    known_end = inputs.day_ends[0]
    issued_at = inputs.slot_start(0)
    plan: tuple[Mode, ...] = ()
    plan_first = 0
    current = Mode.MID
    applied: list[Mode] = []
    reasons: Counter[str] = Counter()
    band_breached = False
    predicted_conditions: list[SlotConditions] = []
    changes_today: Counter[int] = Counter()
    for index in range(n):
        day = bisect.bisect_right(inputs.day_ends, index)
        why = []
        if index == 0:
            why.append("start")
        if index in releases:
            known_end = releases[index]
            why.append("prices")
        if index % weather_every == 0:
            issued_at = inputs.slot_start(index)
            if index:
                why.append("weather")
        if band_breached:
            why.append("band")
        if plan and index - plan_first >= len(plan):
            why.append("horizon")
        if why:
            reasons.update(why)
            if observer is not None:
                found = observer.best()
                plan_plant, estimate = found.plant, np.array([found.mass_temp_c])
            end = min(known_end, index + max_horizon)
            outdoor, solar = forecasts.forecast(inputs, issued_at, index, end)
            problem = _problem(
                scenario,
                inputs,
                plan_plant,
                first=index,
                end=end,
                outdoor_temp_c=outdoor,
                solar_irradiance_w_per_m2=solar,
                air_temp_c=float(air[0]),
                mass_temp_c=float(estimate[0]),
                current_mode=current,
                max_changes=max(0, scenario.max_changes_per_day - changes_today[day]),
            )
            try:
                plan = tuple(planner.plan(problem))
            except InfeasiblePlan:
                # The documented fallback: the heat pump's own control until the next re-plan.
                reasons.update(["fallback"])
                plan = (Mode.MID,) * problem.slots
            if len(plan) != problem.slots:
                raise InvalidInput(
                    f"planner {planner.name} returned {len(plan)} modes for {problem.slots} slots"
                )
            plan_first = index
            predicted_air, predicted_mass = air.copy(), estimate.copy()
            predicted_conditions = [problem.conditions(k) for k in range(problem.slots)]
        mode = plan[index - plan_first]
        offset = mode.setpoint_offset_k
        actual = _conditions(scenario, inputs, index)
        truth = true_plant.step(air, mass, offset, actual)
        guess = plan_plant.step(
            predicted_air, predicted_mass, offset, predicted_conditions[index - plan_first]
        )
        predicted_air, predicted_mass = guess.air_temp_c, guess.mass_temp_c
        if observer is None:
            estimate = truth.mass_temp_c
        else:
            observer.update(float(air[0]), offset, actual, float(truth.air_temp_c[0]))
            estimate = plan_plant.step(air, estimate, offset, actual).mass_temp_c
        air, mass = truth.air_temp_c, truth.mass_temp_c
        band_breached = abs(float(air[0] - predicted_air[0])) > scenario.replan_band_k
        changes_today[day] += mode != current
        applied.append(mode)
        current = mode
    modes = tuple(applied)
    judged = evaluate(period_problem(scenario, inputs, true_plant, start), modes)
    return RunOutcome(modes=modes, evaluation=judged, replans=dict(reasons))
