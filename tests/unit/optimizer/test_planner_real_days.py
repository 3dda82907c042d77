"""On real 2023 days the plan is never worse than "mid throughout" on the plant itself."""

from __future__ import annotations

from datetime import date

import pytest

from benchmarks.planner import problems
from hpsteer.domain.actions import Mode
from hpsteer.optimizer.planner import OrToolsPlanner, rule_violations
from hpsteer.optimizer.problem import evaluate

CASES = problems(1)


@pytest.mark.parametrize(("label", "problem"), CASES, ids=[label for label, _ in CASES])
def test_the_plan_costs_no_more_than_mid_throughout_on_the_plant(
    label: str, problem: object
) -> None:
    assert date(2023, 1, 10).isoformat() in label
    modes = OrToolsPlanner().plan(problem)  # type: ignore[arg-type]  # parametrized problem
    plan = evaluate(problem, modes)  # type: ignore[arg-type]  # parametrized problem
    mid = evaluate(problem, [Mode.MID] * problem.slots)  # type: ignore[attr-defined,arg-type]  # parametrized
    assert plan.objective_eur <= mid.objective_eur
    assert rule_violations(problem, modes) == []  # type: ignore[arg-type]  # parametrized problem
