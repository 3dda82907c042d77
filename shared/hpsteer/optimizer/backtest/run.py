"""``run_backtest``: a scenario in, per-house figures out.

For each house: the true plant is the archetype's plant perturbed (seeded by the scenario's seed
and the archetype's name, so a house is the same alone or among ``all``); the planner believes
the nominal plant. Three runs share the true plant, the real weather and the start state:
the planner with forecasts (:func:`~.simulate.run_mpc`), the same planner with the true plant and
the real weather (the bound), and the baseline (own control, ``mid`` throughout), judged with
:func:`~hpsteer.optimizer.problem.evaluate`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from functools import lru_cache, partial

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.optimizer.backtest.inputs import ForecastErrors, MarketInputs, load_inputs
from hpsteer.optimizer.backtest.planners import make_planner
from hpsteer.optimizer.backtest.report import BacktestResult, HouseResult
from hpsteer.optimizer.backtest.scenario import BacktestScenario
from hpsteer.optimizer.backtest.simulate import initial_state, period_problem, run_mpc
from hpsteer.optimizer.problem import Evaluation, Planner, count_changes, evaluate
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.thermal import ARCHETYPES, perturbed

__all__ = ["run_backtest"]

_PLANT_STREAM = 0


@lru_cache(maxsize=1)
def _bundled_prices() -> ReplayPriceSource:
    return ReplayPriceSource()


def _changes_per_day(modes: tuple[Mode, ...], inputs: MarketInputs, days: int) -> list[int]:
    counts: Counter[int] = Counter()
    previous = Mode.MID
    for index, mode in enumerate(modes):
        if mode != previous:
            counts[sum(end <= index for end in inputs.day_ends)] += 1
        previous = mode
    return [counts[day] for day in range(days)]


def _below_per_day(evaluation: Evaluation, days: int) -> float:
    return evaluation.comfort_kh_below / days


def _house(
    name: str,
    scenario: BacktestScenario,
    inputs: MarketInputs,
    planner: Planner,
) -> HouseResult:
    nominal = ARCHETYPES[name].plant
    rng = np.random.default_rng([scenario.seed, _PLANT_STREAM, zlib.crc32(name.encode())])
    true_plant = perturbed(nominal, rng, scenario.plant_spread)
    start = initial_state(true_plant, scenario, inputs)
    forecast = ForecastErrors(
        scenario.seed, scenario.forecast_sigma_k, scenario.solar_forecast_sigma
    )
    mpc = partial(
        run_mpc,
        scenario=scenario,
        inputs=inputs,
        planner=planner,
        true_plant=true_plant,
        start=start,
        timezone=scenario.area.timezone,
    )
    run = mpc(planner_plant=nominal, forecasts=forecast)
    bound = mpc(
        planner_plant=true_plant, forecasts=ForecastErrors(scenario.seed, 0.0, 0.0), perfect=True
    )
    baseline = evaluate(
        period_problem(scenario, inputs, true_plant, start), (Mode.MID,) * inputs.period_slots
    )
    days = scenario.days
    per_day = _changes_per_day(run.modes, inputs, days)
    assert sum(per_day) == count_changes(run.modes, Mode.MID)
    return HouseResult(
        archetype=name,
        cost_eur=run.evaluation.energy_cost_eur,
        baseline_cost_eur=baseline.energy_cost_eur,
        perfect_model_cost_eur=bound.evaluation.energy_cost_eur,
        heat_pump_kwh=float(run.evaluation.electricity_kwh.sum()),
        baseline_kwh=float(baseline.electricity_kwh.sum()),
        perfect_model_kwh=float(bound.evaluation.electricity_kwh.sum()),
        comfort_kh_below_per_day=_below_per_day(run.evaluation, days),
        baseline_comfort_kh_below_per_day=_below_per_day(baseline, days),
        perfect_model_comfort_kh_below_per_day=_below_per_day(bound.evaluation, days),
        mode_changes_per_day=sum(per_day) / days,
        max_mode_changes_in_a_day=max(per_day),
        mean_indoor_temp_c=float(run.evaluation.mean_air_temp_c.mean()),
        baseline_mean_indoor_temp_c=float(baseline.mean_air_temp_c.mean()),
        perfect_model_mean_indoor_temp_c=float(bound.evaluation.mean_air_temp_c.mean()),
        replans=run.replans,
    )


def run_backtest(
    scenario: BacktestScenario, *, prices: ReplayPriceSource | None = None
) -> BacktestResult:
    """Simulate ``scenario`` on the bundled prices (or ``prices``) and weather."""
    inputs = load_inputs(scenario, prices or _bundled_prices())
    planner = make_planner(scenario.planner, timezone=scenario.area.timezone)
    houses = tuple(_house(name, scenario, inputs, planner) for name in scenario.archetypes)
    site = scenario.weather_site
    return BacktestResult(
        area=scenario.area,
        start=scenario.start,
        days=scenario.days,
        planner=scenario.planner,
        seed=scenario.seed,
        archetype=scenario.archetype if scenario.archetype == "all" else houses[0].archetype,
        slot_minutes=round(inputs.slot_hours * 60),
        setpoint_c=scenario.setpoint_c,
        comfort_band_c=(scenario.comfort_min_c, scenario.comfort_max_c),
        weather_site=site.location.location_id,
        weather_note=site.note,
        houses=houses,
    )
