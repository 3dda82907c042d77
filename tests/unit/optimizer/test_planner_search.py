"""The planner's search components: block responses, window re-solves, the condensed LP."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.optimizer.linear_model import MODES, linear_model
from hpsteer.optimizer.planner import (
    OrToolsPlanner,
    _BlockRules,
    _condense,
    _Milp,
    _Responses,
    _window_search,
    block_starts,
    model_objective_eur,
    rule_violations,
    window_patterns,
)
from hpsteer.optimizer.problem import PlanningProblem
from hpsteer.thermal import NEW_FLOOR_HEATING, OLD_RADIATORS, RENOVATED_RADIATORS
from tests.unit.optimizer.test_planner import problem_for

PLANTS = (OLD_RADIATORS, RENOVATED_RADIATORS, NEW_FLOOR_HEATING)


def random_problem(seed: int) -> PlanningProblem:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(24, 100))
    return problem_for(
        PLANTS[seed % 3].plant,
        rng.uniform(-20, 400, n),
        outdoor_c=float(rng.uniform(-10, 8)),
        min_dwell_slots=int(rng.integers(1, 9)),
        max_changes_per_day=int(rng.integers(1, 5)),
        current_mode=MODES[int(rng.integers(0, 3))],
    )


def search_parts(
    problem: PlanningProblem, block_slots: int = 4, tail_block_slots: int = 8
) -> tuple[list[int], _Responses, _BlockRules]:
    starts = block_starts(problem, block_slots, tail_block_slots)
    model = linear_model(problem)
    responses = _Responses(problem, model, starts, _condense(model, starts))
    return starts, responses, _BlockRules(problem, starts)


def expand(starts: list[int], n: int, block_modes: list[int]) -> tuple[Mode, ...]:
    lengths = np.diff([*starts, n])
    return tuple(
        MODES[m] for m, length in zip(block_modes, lengths, strict=True) for _ in range(length)
    )


@pytest.mark.parametrize("seed", range(4))
def test_block_responses_add_up_to_the_models_own_simulation(seed: int) -> None:
    problem = random_problem(seed)
    starts, responses, _ = search_parts(problem)
    block_modes = np.random.default_rng(seed).integers(0, 3, len(starts))
    air = responses.air_mid + responses.air[np.arange(len(starts)), block_modes].sum(0)
    energy = responses.energy_mid + responses.energy[np.arange(len(starts)), block_modes].sum()
    modes = expand(starts, problem.slots, block_modes.tolist())
    model = linear_model(problem)
    index = np.array([MODES.index(m) for m in modes])
    model_air, model_elec = model.simulate(index)
    np.testing.assert_allclose(air, model_air, atol=1e-9)
    terminal = model.terminal_eur(model.end_state(index))
    assert energy == pytest.approx(
        problem.prices_eur_per_mwh @ model_elec / 1000.0 + terminal, abs=1e-9
    )


def test_the_terminal_value_charges_a_cold_end_and_credits_a_warm_one() -> None:
    prices = np.random.default_rng(1).uniform(20, 300, 48)
    problem = problem_for(RENOVATED_RADIATORS.plant, prices)
    model = linear_model(problem)
    values = [model.terminal_eur(model.end_state(np.full(48, m))) for m in range(3)]
    assert values[1] == pytest.approx(0.0, abs=1e-12)
    assert values[0] > 0.0 > values[2]
    assert not linear_model(problem, terminal_value=False).terminal.any()


def test_heat_left_at_the_end_is_worth_nothing_when_the_last_day_has_free_power() -> None:
    prices = np.r_[np.full(24, 200.0), np.full(24, -5.0)]
    model = linear_model(problem_for(RENOVATED_RADIATORS.plant, prices))
    assert not model.terminal.any()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("window", "pieces"), [(4, None), (6, 2)])
def test_a_window_re_solve_never_worsens_the_incumbent_and_keeps_the_rules(
    seed: int, window: int, pieces: int | None
) -> None:
    problem = random_problem(seed)
    starts, responses, rules = search_parts(problem, block_slots=int(seed % 3) + 1)
    rng = np.random.default_rng(seed)
    initial = rules.repair(rng.integers(0, 3, len(starts)).tolist())
    assert rules.keeps(initial)
    before = model_objective_eur(
        problem, linear_model(problem), expand(starts, problem.slots, initial)
    )
    found, value = _window_search(
        responses, rules, [0, 1, 2], initial, window, max_pieces=pieces, stride=1
    )
    modes = expand(starts, problem.slots, found)
    assert value <= before + 1e-9
    assert value == pytest.approx(model_objective_eur(problem, linear_model(problem), modes))
    assert rule_violations(problem, modes) == []


@pytest.mark.parametrize("seed", range(3))
def test_one_window_over_every_block_finds_the_enumerated_optimum(seed: int) -> None:
    # Six one-hour blocks: the window holds them all, so it must match the brute force over the
    # 3^6 schedules that keep the rules.
    rng = np.random.default_rng(seed)
    problem = problem_for(
        PLANTS[seed].plant,
        rng.uniform(0, 300, 24),
        min_dwell_slots=8,
        max_changes_per_day=2,
        switch_penalty_eur=0.01,
    )
    starts, responses, rules = search_parts(problem, block_slots=4)
    assert len(starts) == 6
    model = linear_model(problem)
    best = min(
        model_objective_eur(problem, model, expand(starts, problem.slots, list(blocks)))
        for blocks in itertools.product(range(3), repeat=6)
        if rules.keeps(list(blocks))
    )
    _, value = _window_search(responses, rules, [0, 1, 2], [1] * 6, 6)
    assert value == pytest.approx(best, abs=1e-9)


def test_window_patterns_are_every_schedule_or_those_of_few_pieces() -> None:
    assert window_patterns((0, 1, 2), 4).shape == (81, 4)
    few = window_patterns((0, 1, 2), 12, 3)
    pieces = 1 + (few[:, 1:] != few[:, :-1]).sum(1)
    assert few.shape == (729, 12)
    assert pieces.max() == 3
    assert len({tuple(row) for row in few}) == len(few)
    assert window_patterns((0, 2), 3).tolist() == [
        list(p) for p in itertools.product((0, 2), repeat=3)
    ]


@pytest.mark.parametrize("seed", range(3))
def test_leaving_out_comfort_rows_no_schedule_can_reach_keeps_the_lp_bound(seed: int) -> None:
    problem = random_problem(seed)
    starts, responses, _ = search_parts(problem)
    model = linear_model(problem)
    bounds = []
    for air_range in (None, responses.air_range([0, 1, 2])):
        lp = _Milp(problem, model, starts, MODES, integer=False, air_range=air_range)
        lp.solve(5.0, 0.0, None)
        bounds.append(lp.solver.Objective().Value())
    assert bounds[1] == pytest.approx(bounds[0], rel=1e-7, abs=1e-9)


def test_the_planner_returns_no_worse_than_its_seeds_on_a_real_shaped_day() -> None:
    prices = 60 + 50 * np.sin(np.linspace(0, 4 * np.pi, 192)) ** 2
    problem = problem_for(NEW_FLOOR_HEATING.plant, prices, min_dwell_slots=4)
    result = OrToolsPlanner().solve(problem)
    model = linear_model(problem)
    mid = model_objective_eur(problem, model, [Mode.MID] * problem.slots)
    assert result.objective_eur <= mid + 1e-9
    assert result.bound_eur <= result.objective_eur + 1e-9
    assert rule_violations(problem, result.modes) == []
