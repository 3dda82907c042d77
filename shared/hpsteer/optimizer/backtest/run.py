"""``run_backtest``: a scenario in, per-house figures out.

For each house: the true plant is the archetype's plant perturbed (seeded by the scenario's seed
and the archetype's name, so a house is the same alone or among ``all``); the planner believes
the nominal plant. Three runs share the true plant, the real weather and the start state:
the planner with forecasts (:func:`~.simulate.run_mpc`), the same planner with the true plant and
the real weather (the bound), and the baseline (own control, ``mid`` throughout), judged with
:func:`~hpsteer.optimizer.problem.evaluate`.

With a tariff (``scenario.tariff``) the planner (and the bound) plan on the effective price of
each slot (:mod:`hpsteer.optimizer.bill_prices`), and every run is priced twice: at spot
(``cost_eur``, as without a tariff) and on the bill (``bill_eur``: the same kWh at the effective
price). A fourth run plans the same house on spot alone, as a planner that ignores the tariff
would, and is billed on the tariff too (``spot_planned_bill_eur``): the difference between the
two bill savings is what planning on the tariff is worth, measured rather than assumed. The
tariff must be meant for the area and price every slot of the period, else
:class:`~hpsteer.errors.InvalidInput` says why in one line; when it does not price the day after
the period, the planner does not see that day (as when its prices are not bundled).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.errors import InvalidInput
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


@dataclass(frozen=True)
class _Prices:
    """The period's inputs at spot and, with a tariff, at the effective price (EUR/MWh)."""

    spot: MarketInputs
    bill: MarketInputs | None = None

    @property
    def planned(self) -> MarketInputs:
        """What the planner plans on."""
        return self.spot if self.bill is None else self.bill

    def cost(self, evaluation: Evaluation, on_bill: bool = False) -> float:
        inputs = self.bill if on_bill and self.bill is not None else self.spot
        prices = inputs.prices_eur_per_mwh[: len(evaluation.electricity_kwh)]
        return float(prices @ evaluation.electricity_kwh) / 1000.0


def _billed(scenario: BacktestScenario, inputs: MarketInputs) -> _Prices:
    """The inputs on the scenario's tariff (module docstring); at spot alone without one."""
    if scenario.tariff is None:
        return _Prices(inputs)
    from hpsteer.optimizer.bill_prices import bill_prices_eur_per_mwh, why_unusable
    from hpsteer.tariffs import load_tariff

    tariff = load_tariff(scenario.tariff)
    starts = [inputs.slot_start(i) for i in range(inputs.slots)]
    reason = why_unusable(tariff, scenario.area, starts[: inputs.period_slots])
    if reason is not None:
        raise InvalidInput(f"{reason}; choose a tariff and period that match")
    if why_unusable(tariff, scenario.area, starts) is not None:  # the day after: not seen
        inputs = replace(
            inputs,
            day_ends=inputs.day_ends[: scenario.days],
            prices_eur_per_mwh=inputs.prices_eur_per_mwh[: inputs.period_slots],
            outdoor_temp_c=inputs.outdoor_temp_c[: inputs.period_slots],
            solar_irradiance_w_per_m2=inputs.solar_irradiance_w_per_m2[: inputs.period_slots],
        )
        starts = starts[: inputs.period_slots]
    bill = bill_prices_eur_per_mwh(tariff, starts, list(inputs.prices_eur_per_mwh))
    return _Prices(inputs, replace(inputs, prices_eur_per_mwh=bill))


def _house(
    name: str,
    scenario: BacktestScenario,
    prices: _Prices,
    planner: Planner,
) -> HouseResult:
    inputs = prices.spot
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
        planner=planner,
        true_plant=true_plant,
        start=start,
        timezone=scenario.area.timezone,
    )
    run = mpc(inputs=prices.planned, planner_plant=nominal, forecasts=forecast)
    bound = mpc(
        inputs=prices.planned,
        planner_plant=true_plant,
        forecasts=ForecastErrors(scenario.seed, 0.0, 0.0),
        perfect=True,
    )
    baseline = evaluate(
        period_problem(scenario, inputs, true_plant, start), (Mode.MID,) * inputs.period_slots
    )
    days = scenario.days
    per_day = _changes_per_day(run.modes, inputs, days)
    assert sum(per_day) == count_changes(run.modes, Mode.MID)
    result = HouseResult(
        archetype=name,
        cost_eur=prices.cost(run.evaluation),
        baseline_cost_eur=prices.cost(baseline),
        perfect_model_cost_eur=prices.cost(bound.evaluation),
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
    if prices.bill is None:
        return result
    on_spot = mpc(inputs=inputs, planner_plant=nominal, forecasts=forecast).evaluation
    return replace(
        result,
        bill_eur=prices.cost(run.evaluation, on_bill=True),
        baseline_bill_eur=prices.cost(baseline, on_bill=True),
        perfect_model_bill_eur=prices.cost(bound.evaluation, on_bill=True),
        spot_planned_bill_eur=prices.cost(on_spot, on_bill=True),
        spot_planned_cost_eur=prices.cost(on_spot),
        spot_planned_comfort_kh_below_per_day=_below_per_day(on_spot, days),
        spot_planned_mean_indoor_temp_c=float(on_spot.mean_air_temp_c.mean()),
    )


def run_backtest(
    scenario: BacktestScenario, *, prices: ReplayPriceSource | None = None
) -> BacktestResult:
    """Simulate ``scenario`` on the bundled prices (or ``prices``) and weather."""
    inputs = load_inputs(scenario, prices or _bundled_prices())
    billed = _billed(scenario, inputs)
    planner = make_planner(scenario.planner, timezone=scenario.area.timezone)
    houses = tuple(_house(name, scenario, billed, planner) for name in scenario.archetypes)
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
        tariff=scenario.tariff,
    )
