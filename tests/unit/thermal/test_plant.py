"""Plant: the heat pump's own controller in a house, stepped slot by slot."""

from __future__ import annotations

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.thermal import (
    ARCHETYPES,
    NEW_FLOOR_HEATING,
    OLD_RADIATORS,
    Archetype,
    Plant,
    SlotConditions,
    StepResult,
)
from hpsteer.thermal.controller import ROOM_GAIN_PER_HEAT_LOSS_RANGE

QUARTER = 0.25


def _winter(outdoor_temp_c: float = -5.0, **kwargs: float) -> SlotConditions:
    return SlotConditions(
        duration_h=QUARTER, outdoor_temp_c=outdoor_temp_c, setpoint_c=20.0, **kwargs
    )


def _run(
    plant: Plant, air: float, mass: float, mode: Mode, slots: int, cond: SlotConditions
) -> list[StepResult]:
    a, m = np.array([air]), np.array([mass])
    results = []
    for _ in range(slots):
        r = plant.step(a, m, mode.setpoint_offset_k, cond)
        a, m = r.air_temp_c, r.mass_temp_c
        results.append(r)
    return results


@pytest.mark.parametrize("archetype", ARCHETYPES.values(), ids=list(ARCHETYPES))
def test_the_controller_holds_the_setpoint_and_each_mode_settles_two_kelvin_apart(
    archetype: Archetype,
) -> None:
    plant, cond = archetype.plant, _winter()
    air, mass = plant.steady_state(cond, 0.0)
    held = _run(plant, air, mass, Mode.MID, 96, cond)[-1]
    assert held.air_temp_c[0] == pytest.approx(20.0, abs=0.2)
    for mode in (Mode.MIN, Mode.MAX):
        settled = _run(plant, air, mass, mode, 96 * 6, cond)[-1]
        assert settled.air_temp_c[0] == pytest.approx(20.0 + mode.setpoint_offset_k, abs=0.2)
        assert plant.steady_state(cond, mode.setpoint_offset_k)[0] == pytest.approx(
            20.0 + mode.setpoint_offset_k, abs=1e-6
        )


def test_a_day_at_steady_state_delivers_exactly_the_heat_the_house_loses() -> None:
    plant = OLD_RADIATORS.plant
    b = plant.building
    cond = _winter(solar_irradiance_w_per_m2=100.0)
    air, mass = plant.steady_state(cond, 0.0)
    day = _run(plant, air, mass, Mode.MID, 96, cond)
    heat_kwh = sum(float(r.heat_kwh[0]) for r in day)
    losses_kw = (
        b.air_outdoor_conductance_w_per_k * (air + 5.0)
        + b.mass_outdoor_conductance_w_per_k * (mass + 5.0)
    ) / 1000
    gains_kw = (plant.internal_gains_w + 100.0 * b.solar_aperture_m2) / 1000
    assert heat_kwh == pytest.approx(24 * (losses_kw - gains_kw), rel=1e-6)
    assert day[-1].air_temp_c[0] == pytest.approx(air, abs=1e-6)
    elec_kwh = sum(float(r.electricity_kwh[0]) for r in day)
    assert 2.0 < heat_kwh / elec_kwh < 2.8  # radiators at about 50 °C flow, -5 °C outside: ~2.3


def test_at_very_cold_outdoor_temperatures_capacity_saturates_and_the_house_cools() -> None:
    """Not an error: a monovalent heat pump sized for -7 °C cannot hold 20 °C at -20 °C."""
    plant = OLD_RADIATORS.plant
    air, mass = plant.steady_state(_winter(), 0.0)
    cold = _winter(-20.0)
    day = _run(plant, air, mass, Mode.MID, 96, cold)
    capacity_kw = plant.controller.capacity_kw(plant.heat_pump, -20.0, 20.0)
    assert day[-1].heat_kwh[0] == pytest.approx(capacity_kw * QUARTER)
    assert day[-1].air_temp_c[0] < 19.0
    assert plant.steady_state(cold, 0.0)[0] < 18.0


def test_three_hours_of_min_cool_an_old_house_about_a_kelvin_and_a_floor_heated_one_far_less() -> (
    None
):
    """0 °C outside, starting at equilibrium at 20 °C: the old radiator house loses 1.1 K in 3 h,
    the heavy floor-heated house 0.3 K (its slab keeps giving heat)."""
    cond = _winter(0.0)
    drops = {}
    for archetype in (OLD_RADIATORS, NEW_FLOOR_HEATING):
        plant = archetype.plant
        air, mass = plant.steady_state(cond, 0.0)
        drops[archetype.name] = air - _run(plant, air, mass, Mode.MIN, 12, cond)[-1].air_temp_c[0]
    assert 0.8 < drops["old_radiators"] < 1.6
    assert 0.1 < drops["new_floor_heating"] < 0.5 * drops["old_radiators"]


def test_stepping_many_states_at_once_gives_the_numbers_of_stepping_each_alone() -> None:
    plant = NEW_FLOOR_HEATING.plant
    air, mass = np.linspace(16.0, 24.0, 9), np.linspace(17.0, 23.0, 9)
    cond = _winter(2.0, solar_irradiance_w_per_m2=300.0)
    together = plant.step(air, mass, 2.0, cond)
    for i in range(9):
        alone = plant.step(air[i : i + 1], mass[i : i + 1], 2.0, cond)
        for name in ("air_temp_c", "mass_temp_c", "heat_kwh", "electricity_kwh", "mean_air_temp_c"):
            assert getattr(together, name)[i] == pytest.approx(getattr(alone, name)[0], abs=1e-12)


def test_a_warm_house_gets_no_heat_and_costs_nothing() -> None:
    plant = OLD_RADIATORS.plant
    r = plant.step(np.array([25.0]), np.array([25.0]), 0.0, _winter(10.0))
    assert r.heat_kwh[0] == 0.0
    assert r.electricity_kwh[0] == 0.0
    assert 24.0 < r.mean_air_temp_c[0] < 25.0


def test_the_default_room_gain_lies_in_its_documented_range() -> None:
    for archetype in ARCHETYPES.values():
        plant = archetype.plant
        ratio = plant.controller.room_gain_kw_per_k / (plant.building.heat_loss_w_per_k / 1000)
        assert ROOM_GAIN_PER_HEAT_LOSS_RANGE[0] <= ratio <= ROOM_GAIN_PER_HEAT_LOSS_RANGE[1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_h": 0.0}, "duration_h"),
        ({"outdoor_temp_c": float("nan")}, "outdoor_temp_c"),
        ({"solar_irradiance_w_per_m2": -5.0}, "solar_irradiance_w_per_m2"),
        ({"internal_gains_w": float("nan")}, "internal_gains_w"),
    ],
    ids=["zero-duration", "nan-outdoor", "negative-sun", "nan-gains"],
)
def test_absurd_slot_conditions_are_refused_with_a_message_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    base = {"duration_h": 0.25, "outdoor_temp_c": 0.0, "setpoint_c": 20.0}
    with pytest.raises(ValueError, match=field):
        SlotConditions(**{**base, **kwargs})
