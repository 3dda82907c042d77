"""The OR-Tools planner: its optimum on a hand-solved case, its rules, its failures, real days."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.errors import InfeasiblePlan
from hpsteer.optimizer.planner import (
    OrToolsPlanner,
    PlanResult,
    rule_violations,
    solve_exact,
)
from hpsteer.optimizer.problem import Planner, PlanningProblem, count_changes, evaluate
from hpsteer.thermal import OLD_RADIATORS, RENOVATED_RADIATORS, Plant, SlotConditions

START = datetime(2023, 1, 10, 23, tzinfo=UTC)


def problem_for(
    plant: Plant,
    prices: list[float] | np.ndarray,
    *,
    outdoor_c: float = 0.0,
    slot_hours: float = 0.25,
    **rules: object,
) -> PlanningProblem:
    n = len(prices)
    air, mass = plant.steady_state(SlotConditions(slot_hours, outdoor_c, 21.0), 0.0)
    fields: dict[str, object] = {
        "setpoint_c": 21.0,
        "comfort_min_c": 20.0,
        "comfort_max_c": 23.0,
        "initial_air_temp_c": air,
        "initial_mass_temp_c": mass,
    }
    fields.update(rules)
    return PlanningProblem(
        plant=plant,
        start_at=START,
        slot_hours=slot_hours,
        prices_eur_per_mwh=np.asarray(prices, dtype=np.float64),
        outdoor_temp_c=np.full(n, outdoor_c),
        solar_irradiance_w_per_m2=np.zeros(n),
        **fields,  # type: ignore[arg-type]  # the rule fields are PlanningProblem's own
    )


def test_the_planner_keeps_the_planner_protocol() -> None:
    assert isinstance(OrToolsPlanner(), Planner)
    assert OrToolsPlanner().name == "ortools"


def test_a_price_spike_is_met_by_preheating_in_max_and_setting_back_during_it() -> None:
    # Four 1-hour slots, blocks of one slot, no wear penalty, no comfort cost inside the band:
    # prices 10, 10, 500, 500 EUR/MWh. Hand-solved optimum (the 2^... enumeration of the
    # 81 schedules on the planner's model, checked by solve_exact below): store heat while it is
    # cheap, MAX in slot 1, and run MIN through the expensive hours: (mid, max, min, min). Slot 0
    # stays mid because heating from slot 0 on loses more to the outdoors than it saves.
    problem = problem_for(
        OLD_RADIATORS.plant,
        [10.0, 10.0, 500.0, 500.0],
        slot_hours=1.0,
        switch_penalty_eur=0.0,
        comfort_min_c=19.0,
    )
    planner = OrToolsPlanner(block_slots=1, tail_block_slots=1)
    result = planner.solve(problem)
    exact = solve_exact(problem, planner)
    assert exact.termination == "optimal"
    assert result.modes[2:] == (Mode.MIN, Mode.MIN)
    assert Mode.MAX in result.modes[:2]
    assert result.objective_eur == pytest.approx(exact.objective_eur, rel=1e-6)
    assert (
        evaluate(problem, result.modes).objective_eur
        < evaluate(problem, [Mode.MID] * 4).objective_eur
    )


def test_solve_reports_bound_gap_time_solver_and_termination() -> None:
    problem = problem_for(RENOVATED_RADIATORS.plant, np.linspace(40, 120, 96))
    result = OrToolsPlanner().solve(problem)
    assert isinstance(result, PlanResult)
    assert result.bound_eur <= result.objective_eur + 1e-9
    assert 0.0 <= result.gap < 0.2
    assert result.solve_ms > 0
    assert result.solver.startswith("highs")
    assert result.termination == "lp_guided_local_search"


def test_the_optional_mip_phase_reports_its_termination_and_keeps_the_rules() -> None:
    problem = problem_for(RENOVATED_RADIATORS.plant, np.linspace(120, 40, 48), min_dwell_slots=3)
    result = OrToolsPlanner(improve_time_limit_s=0.2, time_limit_s=1.0).solve(problem)
    assert result.termination.startswith("mip_")
    assert rule_violations(problem, result.modes) == []


@pytest.mark.parametrize("seed", range(6))
def test_dwell_and_daily_change_rules_hold_for_random_prices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(24, 120))
    prices = rng.uniform(-20, 400, n) * (rng.random(n) < 0.7)
    dwell = int(rng.integers(1, 9))
    changes = int(rng.integers(0, 5))
    current = Mode(rng.choice([m.value for m in Mode]))
    problem = problem_for(
        OLD_RADIATORS.plant,
        prices,
        outdoor_c=float(rng.uniform(-10, 8)),
        min_dwell_slots=dwell,
        max_changes_per_day=changes,
        current_mode=current,
        switch_penalty_eur=0.0,
    )
    planner = OrToolsPlanner(block_slots=int(rng.integers(1, 5)), tail_block_slots=8)
    modes = planner.plan(problem)
    assert len(modes) == n
    assert rule_violations(problem, modes) == []


def test_rule_violations_names_short_dwells_and_too_many_changes() -> None:
    problem = problem_for(OLD_RADIATORS.plant, [50.0] * 8, min_dwell_slots=3, max_changes_per_day=1)
    modes = (Mode.MAX, Mode.MAX, Mode.MID, Mode.MID, Mode.MID, Mode.MIN, Mode.MIN, Mode.MIN)
    found = rule_violations(problem, modes)
    assert any("held 2 slots < dwell 3" in f for f in found)
    assert any("3 changes in the day from slot 0 > 1" in f for f in found)
    assert count_changes(modes, Mode.MID) == 3


def test_flat_prices_keep_the_home_in_the_comfort_band() -> None:
    problem = problem_for(OLD_RADIATORS.plant, [80.0] * 96)
    modes = OrToolsPlanner().plan(problem)
    result = evaluate(problem, modes)
    # Without a terminal value the last hour may coast a tenth of a kelvin below the band when
    # that is cheaper than the penalty (1 EUR/K·h); nothing else leaves it.
    assert result.mean_air_temp_c.min() >= problem.comfort_min_c - 0.1
    assert result.mean_air_temp_c[:-4].min() >= problem.comfort_min_c - 0.01
    assert result.mean_air_temp_c.max() <= problem.comfort_max_c + 0.01
    assert result.comfort_penalty_eur < 0.05


def test_no_offered_mode_reachable_raises_infeasible_plan_with_the_reason() -> None:
    problem = problem_for(
        OLD_RADIATORS.plant, [50.0] * 8, current_mode=Mode.MID, max_changes_per_day=0
    )
    with pytest.raises(InfeasiblePlan, match=r"does not offer .* max_changes_per_day is 0"):
        OrToolsPlanner(modes=(Mode.MIN, Mode.MAX)).solve(problem)


def test_absurd_planner_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="time_limit_s"):
        OrToolsPlanner(time_limit_s=0)


def test_an_lp_that_does_not_finish_still_gives_a_rule_keeping_plan_with_an_unknown_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy machine can run the LP into its time limit; the device must still get a plan.
    from ortools.linear_solver import pywraplp

    from hpsteer.optimizer import planner as planner_module

    def unfinished(self: object, time_limit_s: float, relative_gap: float, cutoff: object) -> int:
        return int(pywraplp.Solver.NOT_SOLVED)  # the default planner solves only the LP

    monkeypatch.setattr(planner_module._Milp, "solve", unfinished)
    prices = np.r_[np.full(16, 40.0), np.full(16, 400.0), np.full(16, 40.0)]
    problem = problem_for(RENOVATED_RADIATORS.plant, prices, min_dwell_slots=4)
    result = OrToolsPlanner().solve(problem)
    assert np.isnan(result.gap)
    assert result.termination.startswith("local_search_without_lp_bound")
    assert not rule_violations(problem, result.modes)
    assert (
        evaluate(problem, result.modes).objective_eur
        <= evaluate(problem, [Mode.MID] * problem.slots).objective_eur
    )
