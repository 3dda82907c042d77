"""Identification: a bank of candidate plants finds the house from measured air temperatures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.optimizer.identify import (
    GAIN_OFFSETS_W,
    LOSS_SCALES,
    ROOM_GAIN_SCALES,
    MeasuredSlot,
    PlantIdentifier,
    identify,
    scaled_plant,
)
from hpsteer.thermal import ARCHETYPES, NEW_FLOOR_HEATING, OLD_RADIATORS, Plant, SlotConditions

MODES = (Mode.MID, Mode.MIN, Mode.MAX, Mode.MID)


def _conditions(hour: int) -> SlotConditions:
    daylight = max(0.0, math.sin(math.pi * ((hour % 24) - 8) / 8)) if 8 <= hour % 24 <= 16 else 0
    return SlotConditions(
        duration_h=1.0,
        outdoor_temp_c=-4.0 + 5.0 * math.sin(2 * math.pi * hour / 24) - 0.05 * hour,
        setpoint_c=21.0,
        solar_irradiance_w_per_m2=250.0 * daylight,
    )


def _mode_offset(hour: int) -> float:
    return MODES[(hour // 5) % len(MODES)].setpoint_offset_k


def _run(plant: Plant, air: float, mass: float, hours: range) -> tuple[list[MeasuredSlot], float]:
    """``plant`` under modes that change every 5 hours, measured every slot; and its end mass."""
    a, m = np.array([air]), np.array([mass])
    slots = []
    for hour in hours:
        offset, conditions = _mode_offset(hour), _conditions(hour)
        step = plant.step(a, m, offset, conditions)
        slots.append(MeasuredSlot(float(a[0]), offset, conditions, float(step.air_temp_c[0])))
        a, m = step.air_temp_c, step.mass_temp_c
    return slots, float(m[0])


def _history(truth: Plant, hours: int = 96) -> tuple[list[MeasuredSlot], float]:
    """Four days of the true house from its steady state: the slots and the true end mass."""
    air, mass = truth.steady_state(_conditions(0), 0.0)
    return _run(truth, air, mass, range(hours))


def _worst_error_next_two_days(truth: Plant, model: Plant, air: float, masses: tuple[float, float]):
    """Largest gap (K) between the house's air and ``model``'s over the next 48 h, same modes."""
    actual, _ = _run(truth, air, masses[0], range(96, 144))
    predicted, _ = _run(model, air, masses[1], range(96, 144))
    return max(abs(a.air_end_c - p.air_end_c) for a, p in zip(actual, predicted, strict=True))


@pytest.mark.parametrize("archetype", ARCHETYPES.values(), ids=list(ARCHETYPES))
def test_the_bank_steps_every_candidate_exactly_as_the_plant_steps_it(archetype):
    nominal = archetype.plant
    bank = PlantIdentifier(nominal, 20.0)
    assert bank.candidates == len(LOSS_SCALES) * len(ROOM_GAIN_SCALES) * len(GAIN_OFFSETS_W)
    mass = np.linspace(18.0, 23.0, bank.candidates)
    candidates = [
        (loss, gain, offset)
        for loss in LOSS_SCALES
        for gain in ROOM_GAIN_SCALES
        for offset in GAIN_OFFSETS_W
    ]
    for mode in Mode.MIN, Mode.MID, Mode.MAX:
        conditions = _conditions(11)
        air, masses = bank.step(20.6, mass, mode.setpoint_offset_k, conditions)
        for k in range(0, bank.candidates, 17):
            plant = scaled_plant(nominal, *candidates[k])
            step = plant.step(np.array([20.6]), mass[k : k + 1], mode.setpoint_offset_k, conditions)
            assert air[k] == pytest.approx(step.air_temp_c[0], abs=1e-9)
            assert masses[k] == pytest.approx(step.mass_temp_c[0], abs=1e-9)


@pytest.mark.parametrize(
    "plant", [OLD_RADIATORS.plant, NEW_FLOOR_HEATING.plant], ids=["old", "new"]
)
def test_a_house_that_is_a_candidate_is_found_with_its_mass_temperature(plant):
    truth = scaled_plant(plant, 0.8, ROOM_GAIN_SCALES[4], 75.0)
    history, true_mass = _history(truth)
    found = identify(plant, history)
    assert found.loss_scale == pytest.approx(0.8, abs=0.01)
    assert found.room_gain_scale == pytest.approx(ROOM_GAIN_SCALES[4], rel=0.03)
    assert found.gain_offset_w == pytest.approx(75.0, abs=10.0)
    assert found.mass_temp_c == pytest.approx(true_mass, abs=0.02)


@pytest.mark.parametrize(
    "plant", [OLD_RADIATORS.plant, NEW_FLOOR_HEATING.plant], ids=["old", "new"]
)
@pytest.mark.parametrize("factors", [(0.86, 0.9, -40.0), (1.17, 1.4, 30.0)])
def test_a_house_between_the_candidates_is_predicted_far_better_than_by_the_nominal_plant(
    plant, factors
):
    truth = scaled_plant(plant, *factors)
    history, true_mass = _history(truth)
    found = identify(plant, history)
    air = history[-1].air_end_c
    assert air is not None
    found_error = _worst_error_next_two_days(
        truth, found.plant, air, (true_mass, found.mass_temp_c)
    )
    # Production today: the nominal plant, its mass taken equal to the measured air.
    nominal_error = _worst_error_next_two_days(truth, plant, air, (true_mass, air))
    assert found_error < 0.3
    assert found_error < nominal_error / 5


def test_before_any_measured_slot_the_plant_is_the_nominal_one():
    nominal = OLD_RADIATORS.plant
    bank = PlantIdentifier(nominal, 19.5)
    found = bank.best()
    assert found.plant == nominal
    assert (found.loss_scale, found.room_gain_scale, found.gain_offset_w) == (1.0, 1.0, 0.0)
    assert found.mass_temp_c == 19.5


def test_a_slot_without_a_measurement_scores_nothing_and_the_candidates_carry_on():
    nominal = OLD_RADIATORS.plant
    history, _ = _history(scaled_plant(nominal, 0.9, 1.0, 0.0), hours=30)
    bank = PlantIdentifier(nominal, 20.0)
    for slot in history[:20]:
        bank.update(slot.air_start_c, slot.offset_k, slot.conditions, slot.air_end_c)
    scores = bank.score.copy()
    predicted, _ = bank.step(bank.air, bank.mass, history[20].offset_k, history[20].conditions)
    bank.update(None, history[20].offset_k, history[20].conditions, history[20].air_end_c)
    assert np.array_equal(bank.score, scores)
    assert bank.scored_slots == 20
    np.testing.assert_allclose(bank.air, predicted)


def test_the_candidates_must_include_the_nominal_plant_and_a_history_must_not_be_empty():
    with pytest.raises(ValueError, match="nominal"):
        PlantIdentifier(OLD_RADIATORS.plant, 20.0, loss_scales=(0.8, 0.9))
    with pytest.raises(ValueError, match="at least one slot"):
        identify(OLD_RADIATORS.plant, [])
