"""evaluate: the schedule simulated on floats judges it exactly as stepping Plant.step did."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.errors import InvalidInput
from hpsteer.optimizer.problem import Evaluation, PlanningProblem, count_changes, evaluate
from hpsteer.thermal import ARCHETYPES, Plant, perturbed

START = datetime(2026, 3, 29, tzinfo=UTC)
MODES = (Mode.MIN, Mode.MID, Mode.MAX)


def _stepped(problem: PlanningProblem, modes: list[Mode], plant: Plant) -> Evaluation:
    """The reference: evaluate as it was, Plant.step on one-element arrays slot by slot."""
    air = np.array([problem.initial_air_temp_c])
    mass = np.array([problem.initial_mass_temp_c])
    n = problem.slots
    mean_air, elec, heat = np.empty(n), np.empty(n), np.empty(n)
    for index, mode in enumerate(modes):
        result = plant.step(air, mass, mode.setpoint_offset_k, problem.conditions(index))
        air, mass = result.air_temp_c, result.mass_temp_c
        mean_air[index] = result.mean_air_temp_c[0]
        elec[index] = result.electricity_kwh[0]
        heat[index] = result.heat_kwh[0]
    below = np.maximum(0.0, problem.comfort_min_c - mean_air) * problem.slot_hours
    above = np.maximum(0.0, mean_air - problem.comfort_max_c) * problem.slot_hours
    changes = count_changes(modes, problem.current_mode)
    return Evaluation(
        modes=tuple(modes),
        mean_air_temp_c=mean_air,
        end_air_temp_c=float(air[0]),
        end_mass_temp_c=float(mass[0]),
        electricity_kwh=elec,
        heat_kwh=heat,
        energy_cost_eur=float(np.dot(problem.prices_eur_per_mwh, elec) / 1000.0),
        comfort_kh_below=float(below.sum()),
        comfort_kh_above=float(above.sum()),
        comfort_penalty_eur=float((below.sum() + above.sum()) * problem.comfort_penalty_eur_per_kh),
        changes=changes,
        wear_penalty_eur=changes * problem.switch_penalty_eur,
    )


def _problem(
    plant: Plant, slot_hours: float, slots: int, seed: int
) -> tuple[PlanningProblem, list[Mode]]:
    """Prices with negative hours, weather from frost to mild, a band the schedule leaves."""
    rng = np.random.default_rng(seed)
    hours = np.arange(slots) * slot_hours
    outdoor = rng.uniform(-15.0, 12.0) + 7.0 * np.sin(2 * np.pi * hours / 24.0)
    prices = rng.normal(60.0, 90.0, slots)
    assert np.any(prices < 0)
    problem = PlanningProblem(
        plant=plant,
        start_at=START,
        slot_hours=slot_hours,
        prices_eur_per_mwh=prices,
        outdoor_temp_c=outdoor,
        solar_irradiance_w_per_m2=np.maximum(0.0, 500.0 * np.sin(2 * np.pi * (hours - 7) / 24)),
        setpoint_c=21.0,
        comfort_min_c=20.5,
        comfort_max_c=21.5,
        initial_air_temp_c=float(rng.uniform(18.0, 23.0)),
        initial_mass_temp_c=float(rng.uniform(17.0, 23.0)),
        current_mode=Mode.MID,
        internal_gains_w=rng.uniform(0.0, 500.0, slots) if seed % 2 else None,
    )
    return problem, [MODES[i] for i in np.repeat(rng.integers(0, 3, slots), 4)[:slots]]


def _assert_same(new: Evaluation, old: Evaluation) -> None:
    assert new.modes == old.modes
    assert new.changes == old.changes
    for name in ("mean_air_temp_c", "electricity_kwh", "heat_kwh"):
        np.testing.assert_allclose(getattr(new, name), getattr(old, name), rtol=0, atol=1e-9)
    for name in (
        "end_air_temp_c",
        "end_mass_temp_c",
        "energy_cost_eur",
        "comfort_kh_below",
        "comfort_kh_above",
        "comfort_penalty_eur",
        "wear_penalty_eur",
        "objective_eur",
    ):
        assert getattr(new, name) == pytest.approx(getattr(old, name), abs=1e-9), name


@pytest.mark.parametrize("name", list(ARCHETYPES))
@pytest.mark.parametrize(
    ("slot_hours", "slots"),
    [(0.25, 92), (0.25, 100), (0.25, 192), (1.0, 23), (1.0, 25), (1.0, 48)],
    ids=["15min-23h", "15min-25h", "15min-48h", "60min-23h", "60min-25h", "60min-48h"],
)
def test_evaluate_judges_a_schedule_as_stepping_the_plant_slot_by_slot_did(
    name: str, slot_hours: float, slots: int
) -> None:
    plant = ARCHETYPES[name].plant
    for seed in (slots, slots + 1):
        problem, modes = _problem(plant, slot_hours, slots, seed)
        judged = evaluate(problem, modes)
        _assert_same(judged, _stepped(problem, modes, plant))
        assert judged.comfort_kh_below > 0 or judged.comfort_kh_above > 0  # the band is left


@pytest.mark.parametrize("name", list(ARCHETYPES))
def test_evaluate_on_another_plant_judges_as_stepping_that_plant_did(name: str) -> None:
    truth = perturbed(ARCHETYPES[name].plant, np.random.default_rng(11), spread=0.3)
    problem, modes = _problem(ARCHETYPES[name].plant, 0.25, 96, 5)
    judged = evaluate(problem, modes, truth)
    _assert_same(judged, _stepped(problem, modes, truth))
    assert judged.end_air_temp_c != evaluate(problem, modes).end_air_temp_c


def test_evaluate_refuses_a_schedule_of_the_wrong_length() -> None:
    problem, modes = _problem(ARCHETYPES["old_radiators"].plant, 1.0, 24, 2)
    with pytest.raises(InvalidInput, match="23 modes for 24 slots"):
        evaluate(problem, modes[:-1])


def test_evaluate_refuses_negative_irradiance_as_stepping_did() -> None:
    problem, modes = _problem(ARCHETYPES["old_radiators"].plant, 1.0, 24, 2)
    problem.solar_irradiance_w_per_m2[3] = -1.0
    with pytest.raises(ValueError, match="solar_irradiance_w_per_m2 must be >= 0"):
        evaluate(problem, modes)
