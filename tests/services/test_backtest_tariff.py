"""A backtest with a household tariff plans on the effective price, bills the planned run, the
baseline and the same period planned on spot alone, and refuses a tariff that cannot price it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from hpsteer.domain.market import PriceArea
from hpsteer.errors import InvalidInput
from hpsteer.optimizer.backtest import BacktestScenario, format_table, run_backtest
from hpsteer.optimizer.backtest import planners as backtest_planners
from hpsteer.optimizer.backtest.inputs import load_inputs
from hpsteer.optimizer.baselines import CheapestHours
from hpsteer.optimizer.problem import PlanningProblem
from hpsteer.tariffs import ENV_DIRECTORY, load_tariff

REPO = Path(__file__).resolve().parents[2]
TARIFF = "se3-vattenfall-t4"
SE3_2_DAYS = BacktestScenario(
    area=PriceArea.SE3,
    start=date(2023, 1, 9),
    days=2,
    archetype="renovated",
    planner="ortools",
    seed=3,
    tariff=TARIFF,
)
BILL_KEYS = {
    "bill_eur",
    "baseline_bill_eur",
    "bill_savings_pct",
    "bill_savings_if_planned_on_spot_pct",
}


@pytest.fixture(scope="module")
def report():
    return run_backtest(SE3_2_DAYS).to_dict()


def tariff_ending(tmp_path: Path, valid_until: str) -> Path:
    folder = tmp_path / "tariffs"
    shutil.copytree(REPO / "data" / "tariffs", folder)
    path = folder / f"{TARIFF}.toml"
    path.write_text(
        path.read_text().replace("valid_until = 2025-01-01", f"valid_until = {valid_until}")
    )
    return folder


def test_the_report_adds_the_four_bill_figures_per_house_and_in_the_summary(report):
    assert report["tariff"] == TARIFF
    assert report.keys() >= BILL_KEYS
    assert report["archetypes"]["renovated_radiators"].keys() >= BILL_KEYS
    baseline = report["baseline_bill_eur"]
    assert report["bill_savings_pct"] == pytest.approx(
        100 * (baseline - report["bill_eur"]) / baseline, abs=0.01
    )
    assert report["bill_savings_if_planned_on_spot_pct"] == pytest.approx(
        100 * (baseline - report["spot_planned_bill_eur"]) / baseline, abs=0.01
    )
    # Grid, taxes and VAT: the bill is well above the energy's spot cost.
    assert report["bill_eur"] > 1.5 * report["cost_eur"]
    assert report["baseline_bill_eur"] > 1.5 * report["baseline_cost_eur"]


def test_without_a_tariff_the_report_is_as_before(report):
    plain = run_backtest(replace(SE3_2_DAYS, tariff=None)).to_dict()
    assert "tariff" not in plain
    assert not BILL_KEYS & plain.keys()
    assert not BILL_KEYS & plain["archetypes"]["renovated_radiators"].keys()
    # The comparison run planned on spot is exactly the run without a tariff.
    assert report["spot_planned_cost_eur"] == pytest.approx(plain["cost_eur"], rel=1e-9)
    assert report["spot_planned_comfort_kh_below_per_day"] == pytest.approx(
        plain["comfort_kh_below_per_day"], abs=1e-9
    )
    assert report["baseline_cost_eur"] == plain["baseline_cost_eur"]


def test_the_planner_sees_the_effective_price_and_the_comparison_run_the_spot_price(
    monkeypatch,
):
    seen: list[PlanningProblem] = []

    class Recording(CheapestHours):
        def plan(self, problem: PlanningProblem):
            seen.append(problem)
            return super().plan(problem)

    monkeypatch.setitem(
        backtest_planners._FACTORIES, "cheapest_hours", lambda tz: Recording(timezone=tz)
    )
    scenario = replace(SE3_2_DAYS, planner="cheapest_hours", days=1)
    run_backtest(scenario)

    tariff = load_tariff(TARIFF)
    inputs = load_inputs(scenario)
    kinds = []
    for problem in seen:
        first = round((problem.start_at - inputs.start_at).total_seconds() / 3600)
        spot = inputs.prices_eur_per_mwh[first : first + problem.slots]
        starts = [problem.slot_start(i) for i in range(problem.slots)]
        bill = np.array(tariff.effective_prices(starts, list(spot))) * 1000.0
        if np.allclose(problem.prices_eur_per_mwh, bill):
            kinds.append("bill")
        else:
            assert problem.prices_eur_per_mwh == pytest.approx(spot)
            kinds.append("spot")
    # The run and the bound plan on the bill, then the comparison run on spot alone.
    assert kinds[0] == "bill"
    assert kinds[-1] == "spot"
    assert kinds == sorted(kinds)


def test_the_table_shows_the_bill_columns_only_with_a_tariff():
    result = run_backtest(replace(SE3_2_DAYS, planner="own_control", days=1))
    table = format_table(result)
    assert f"tariff {TARIFF}" in table
    assert "bill %" in table
    assert "on spot %" in table
    plain = format_table(run_backtest(replace(SE3_2_DAYS, planner="own_control", tariff=None)))
    assert "bill" not in plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tariff": "dk1-n1"}, "tariff dk1-n1 is for price area DK1, not SE3"),
        ({"tariff": "se3-nowhere"}, "no tariff with id 'se3-nowhere'"),
    ],
    ids=["another-area", "unknown"],
)
def test_a_tariff_of_another_area_or_an_unknown_one_is_refused(changes, message):
    with pytest.raises(InvalidInput, match=message):
        run_backtest(replace(SE3_2_DAYS, **changes))


def test_a_tariff_that_does_not_price_the_whole_period_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIRECTORY, str(tariff_ending(tmp_path, "2023-01-10")))
    with pytest.raises(InvalidInput, match=r"does not price the slot at 2023-01-09T23:00:00"):
        run_backtest(SE3_2_DAYS)


def test_a_tariff_that_ends_with_the_period_runs_without_the_next_days_prices(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(ENV_DIRECTORY, str(tariff_ending(tmp_path, "2023-01-11")))
    report = run_backtest(replace(SE3_2_DAYS, planner="cheapest_hours")).to_dict()
    assert report["bill_eur"] > 0
    assert report["replans"]["prices"] == 1  # the 10th's prices at 13:00 on the 9th, not the 11th
