"""A backtest simulates a perturbed house on real days and reports figures that add up."""

from dataclasses import replace
from datetime import date

import pytest

from hpsteer.domain.market import PriceArea
from hpsteer.errors import InvalidInput, NotFound
from hpsteer.optimizer.backtest import BacktestScenario, run_backtest

FIELDS = {
    "cost_eur",
    "baseline_cost_eur",
    "savings_pct",
    "comfort_kh_below_per_day",
    "mode_changes_per_day",
    "heat_pump_kwh",
    "baseline_kwh",
    "mean_indoor_temp_c",
    "baseline_mean_indoor_temp_c",
    "perfect_model_savings_pct",
}
SE3_3_DAYS = BacktestScenario(
    area=PriceArea.SE3,
    start=date(2023, 1, 9),
    days=3,
    archetype="renovated",
    planner="cheapest_hours",
    seed=7,
)


@pytest.fixture(scope="module")
def report():
    return run_backtest(SE3_3_DAYS).to_dict()


def test_the_report_holds_every_figure_the_issue_asks_for(report):
    assert report.keys() >= FIELDS
    assert report["archetype"] == "renovated_radiators"
    assert report["weather"] == "stockholm"
    assert report["slot_minutes"] == 60
    assert report["comfort_band_c"] == [20.0, 23.0]
    assert set(report["archetypes"]) == {"renovated_radiators"}


def test_the_figures_are_consistent(report):
    baseline, cost = report["baseline_cost_eur"], report["cost_eur"]
    assert report["savings_pct"] == pytest.approx(100 * (baseline - cost) / baseline, abs=0.01)
    perfect = report["perfect_model_cost_eur"]
    assert report["perfect_model_savings_pct"] == pytest.approx(
        100 * (baseline - perfect) / baseline, abs=0.01
    )
    assert report["heat_pump_kwh"] > 0
    assert report["baseline_kwh"] > 0
    assert report["comfort_kh_below_per_day"] >= 0
    assert 15 < report["mean_indoor_temp_c"] < 25
    assert 15 < report["baseline_mean_indoor_temp_c"] < 25
    assert report["mode_changes_per_day"] > 0


def test_the_planner_re_plans_on_prices_weather_and_start(report):
    replans = report["replans"]
    assert replans["start"] == 1
    assert replans["prices"] == 3  # 13:00 each day: the next day's prices, bundled for all three
    assert replans["weather"] == 3 * 8 - 1  # every 3 hours but the first slot, counted as start


def test_the_changes_that_happen_keep_the_daily_budget_per_local_day(report):
    assert report["max_mode_changes_in_a_day"] <= 6


def test_a_seeded_run_is_reproducible_and_another_seed_gives_another_house(report):
    assert run_backtest(SE3_3_DAYS).to_dict() == report
    other = run_backtest(replace(SE3_3_DAYS, seed=8)).to_dict()
    assert other["baseline_cost_eur"] != report["baseline_cost_eur"]


def test_own_control_as_the_planner_saves_nothing_on_the_same_perturbed_house(report):
    own = run_backtest(replace(SE3_3_DAYS, planner="own_control")).to_dict()
    assert own["baseline_cost_eur"] == report["baseline_cost_eur"]  # same house, same weather
    assert own["savings_pct"] == pytest.approx(0.0, abs=1e-9)
    assert own["perfect_model_savings_pct"] == pytest.approx(0.0, abs=1e-9)
    assert own["mode_changes_per_day"] == 0
    assert own["mean_indoor_temp_c"] == own["baseline_mean_indoor_temp_c"]


def test_with_an_exact_model_and_no_forecast_error_the_run_is_the_perfect_model_run():
    exact = replace(SE3_3_DAYS, plant_spread=0.0, forecast_sigma_k=0.0, solar_forecast_sigma=0.0)
    report = run_backtest(exact).to_dict()
    assert report["cost_eur"] == report["perfect_model_cost_eur"]
    assert report["replans"].get("band", 0) == 0


def test_a_house_alone_is_the_same_house_among_all():
    alone = run_backtest(replace(SE3_3_DAYS, days=1)).to_dict()
    every = run_backtest(replace(SE3_3_DAYS, days=1, archetype="all")).to_dict()
    assert set(every["archetypes"]) == {
        "old_radiators",
        "renovated_radiators",
        "new_floor_heating",
    }
    assert every["archetypes"]["renovated_radiators"] == alone["archetypes"]["renovated_radiators"]
    costs = [house["cost_eur"] for house in every["archetypes"].values()]
    assert every["cost_eur"] == pytest.approx(sum(costs) / 3, abs=1e-3)
    baseline, cost = every["baseline_cost_eur"], every["cost_eur"]
    assert every["savings_pct"] == pytest.approx(100 * (baseline - cost) / baseline, abs=0.01)


def test_dk2_is_served_malmo_weather_and_says_so():
    report = run_backtest(
        replace(SE3_3_DAYS, area=PriceArea.DK2, start=date(2024, 1, 15), days=1)
    ).to_dict()
    assert report["weather"] == "malmo"
    assert "Malmö" in report["weather_note"]


def test_the_last_bundled_day_runs_without_the_next_days_prices():
    report = run_backtest(
        replace(SE3_3_DAYS, area=PriceArea.DK1, start=date(2024, 12, 31), days=1)
    ).to_dict()
    assert "prices" not in report["replans"]
    assert report["heat_pump_kwh"] > 0


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"days": 0}, InvalidInput, r"days must be >= 1"),
        ({"archetype": "castle"}, InvalidInput, r"unknown archetype 'castle'"),
        ({"area": PriceArea.AT}, InvalidInput, r"no bundled weather for AT"),
        ({"start": date(2022, 6, 1)}, NotFound, r"no bundled prices for SE3 on 2022-06-01"),
        ({"planner": "oracle"}, InvalidInput, r"unknown planner 'oracle'"),
    ],
    ids=["no-days", "unknown-archetype", "no-weather", "no-prices", "unknown-planner"],
)
def test_a_scenario_that_cannot_run_is_refused_with_a_reason(changes, error, message):
    with pytest.raises(error, match=message):
        run_backtest(replace(SE3_3_DAYS, **changes))


def test_the_ortools_planner_runs_in_the_backtest_once_it_exists():
    pytest.importorskip("hpsteer.optimizer.planner")
    report = run_backtest(replace(SE3_3_DAYS, planner="ortools", days=1)).to_dict()
    assert report["planner"] == "ortools"
    assert report["heat_pump_kwh"] > 0
    assert report["max_mode_changes_in_a_day"] <= 6
    assert report["comfort_kh_below_per_day"] >= 0


def test_a_planner_that_fails_falls_back_to_the_heat_pumps_own_control(monkeypatch):
    from hpsteer.errors import InfeasiblePlan
    from hpsteer.optimizer.backtest import planners

    class Failing:
        name = "cheapest_hours"

        def plan(self, problem):
            raise InfeasiblePlan("the LP relaxation ended not_solved")

    monkeypatch.setitem(planners._FACTORIES, "cheapest_hours", lambda timezone: Failing())
    result = run_backtest(replace(SE3_3_DAYS, days=1)).to_dict()
    assert result["replans"]["fallback"] >= 1
    assert result["savings_pct"] == pytest.approx(0.0, abs=1e-9)
    assert result["mode_changes_per_day"] == 0


def test_the_planner_plans_on_the_house_identified_from_measured_temperatures(monkeypatch):
    from hpsteer.optimizer.backtest import planners
    from hpsteer.optimizer.baselines import OwnControl
    from hpsteer.thermal import ARCHETYPES

    plants = []

    class Recording(OwnControl):
        def plan(self, problem):
            plants.append((problem.start_at, problem.plant))
            return super().plan(problem)

    monkeypatch.setitem(planners._FACTORIES, "cheapest_hours", lambda timezone: Recording())
    run_backtest(replace(SE3_3_DAYS, days=2))
    nominal = ARCHETYPES["renovated_radiators"].plant
    # The model run re-plans from the nominal house, then on what the measurements showed; the
    # perfect-model run, recorded after it, plans on the true house throughout.
    second_start = [at for at, _ in plants].index(plants[0][0], 1)
    model_run = [plant for _, plant in plants[:second_start]]
    perfect_run = [plant for _, plant in plants[second_start:]]
    assert model_run[0] == nominal
    assert all(plant != nominal for plant in model_run[1:])
    assert len(set(perfect_run)) == 1
    assert perfect_run[0] != nominal
