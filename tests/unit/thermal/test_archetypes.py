"""Archetypes as data, the plant a device's parameters give, and the house the planner misjudges."""

from __future__ import annotations

import numpy as np
import pytest

from hpsteer.domain.devices import ThermalParameters
from hpsteer.thermal import (
    ARCHETYPES,
    NEW_FLOOR_HEATING,
    OLD_RADIATORS,
    RENOVATED_RADIATORS,
    Archetype,
    SlotConditions,
    perturbed,
    plant_from_parameters,
)


def test_the_archetypes_span_old_renovated_and_new_houses_with_published_loss_ranges() -> None:
    assert 250 <= OLD_RADIATORS.parameters.heat_loss_w_per_k <= 300
    assert 150 <= RENOVATED_RADIATORS.parameters.heat_loss_w_per_k <= 180
    assert 100 <= NEW_FLOOR_HEATING.parameters.heat_loss_w_per_k <= 120
    assert NEW_FLOOR_HEATING.parameters.floor_heating
    assert not OLD_RADIATORS.parameters.floor_heating
    assert NEW_FLOOR_HEATING.plant.controller.curve.design_flow_temp_c == 35.0
    assert OLD_RADIATORS.plant.controller.curve.design_flow_temp_c == 55.0
    assert NEW_FLOOR_HEATING.plant.building.heat_to_air_fraction < 0.5
    for archetype in ARCHETYPES.values():
        assert archetype.source
        assert archetype.plant.building.heat_loss_w_per_k == pytest.approx(
            archetype.parameters.heat_loss_w_per_k
        )


@pytest.mark.parametrize("archetype", ARCHETYPES.values(), ids=list(ARCHETYPES))
def test_each_heat_pump_covers_the_design_load_at_minus_seven(
    archetype: Archetype,
) -> None:
    plant = archetype.plant
    cond = SlotConditions(duration_h=0.25, outdoor_temp_c=-7.0, setpoint_c=20.0)
    needed = plant.controller.feedforward_kw(-7.0, 20.0)
    assert plant.controller.capacity_kw(plant.heat_pump, -7.0, 20.0) >= needed
    assert plant.steady_state(cond, 0.0)[0] == pytest.approx(20.0, abs=1e-6)


@pytest.mark.parametrize("archetype", ARCHETYPES.values(), ids=list(ARCHETYPES))
def test_a_registered_device_with_an_archetypes_parameters_gets_that_archetypes_plant(
    archetype: Archetype,
) -> None:
    assert plant_from_parameters(archetype.parameters) == archetype.plant


def test_parameters_of_an_unknown_house_give_a_working_plant_with_one_or_two_masses() -> None:
    one_mass = ThermalParameters(heat_loss_w_per_k=200, air_capacity_kwh_per_k=8, hp_max_heat_kw=8)
    two_mass = one_mass.model_copy(
        update={"envelope_capacity_kwh_per_k": 6.0, "air_envelope_conductance_w_per_k": 150.0}
    )
    cond = SlotConditions(duration_h=0.25, outdoor_temp_c=-5.0, setpoint_c=21.0)
    for params in (one_mass, two_mass):
        plant = plant_from_parameters(params)
        assert plant.building.heat_loss_w_per_k == pytest.approx(200.0)
        air, mass = plant.steady_state(cond, 0.0)
        assert air == pytest.approx(21.0, abs=1e-6)
        r = plant.step(np.array([air]), np.array([mass]), 0.0, cond)
        assert r.air_temp_c[0] == pytest.approx(air, abs=1e-6)


def test_a_perturbed_plant_differs_within_the_spread_and_is_reproducible_from_its_seed() -> None:
    plant = OLD_RADIATORS.plant
    a = perturbed(plant, np.random.default_rng(7), spread=0.15)
    b = perturbed(plant, np.random.default_rng(7), spread=0.15)
    assert a == b
    assert a != plant
    ratio = a.building.air_capacity_kwh_per_k / plant.building.air_capacity_kwh_per_k
    assert 0.85 <= ratio <= 1.15
    gain_ratio = a.controller.room_gain_kw_per_k / plant.controller.room_gain_kw_per_k
    assert 0.7 <= gain_ratio <= 1.3
    assert a.controller.curve == plant.controller.curve
    cond = SlotConditions(duration_h=0.25, outdoor_temp_c=-5.0, setpoint_c=20.0)
    assert a.steady_state(cond, 0.0)[0] == pytest.approx(20.0, abs=1.5)
    with pytest.raises(ValueError, match="spread"):
        perturbed(plant, np.random.default_rng(1), spread=0.7)
