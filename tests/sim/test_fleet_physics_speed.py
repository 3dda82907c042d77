"""The fleet's float-only physics (:class:`hpsteer.sim.fleet.ScalarPlant`) is ``Plant.step``:
same sub-steps, same controller, same exact transition, equal to rounding (1e-9) for every
archetype, 2R2C and 1R1C, idle, regulating and capacity-bound homes, and step lengths from one
minute to an hour; and the fleet steps its homes with it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from hpsteer.ports.clock import SimulatedClock
from hpsteer.sim.fleet import Fleet, ScalarPlant, outdoor_temp_c
from hpsteer.thermal import ARCHETYPES, Plant, RCModel, SlotConditions, perturbed

T0 = datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
TOLERANCE = 1e-9

# (air °C, mass °C, outdoor °C, target °C): regulating near the target, a cold house far below
# it in a frost (the capacity cap binds), a warm house above it (the controller gives nothing).
SITUATIONS = (
    (20.6, 20.1, 3.0, 21.0),
    (12.0, 11.0, -22.0, 22.0),
    (25.0, 24.0, 12.0, 19.0),
    (21.0, 21.0, -7.0, 21.0),
)
DURATIONS_MIN = (1.0, 2.5, 5.0, 7.0, 15.0, 60.0)


def _plants() -> list[Plant]:
    rng = np.random.default_rng(3)
    plants = [a.plant for a in ARCHETYPES.values()]
    plants += [perturbed(a.plant, rng, 0.1) for a in ARCHETYPES.values()]
    first = plants[0]
    one_node = RCModel(
        air_capacity_kwh_per_k=first.building.total_capacity_kwh_per_k,
        air_outdoor_conductance_w_per_k=first.building.heat_loss_w_per_k,
    )
    return [*plants, replace(first, building=one_node)]


def _reference(
    plant: Plant, air: float, mass: float, outdoor: float, target: float, duration_h: float
) -> tuple[float, float, float, float]:
    result = plant.step(
        np.array([air]),
        np.array([mass]),
        0.0,
        SlotConditions(duration_h=duration_h, outdoor_temp_c=outdoor, setpoint_c=target),
    )
    return (
        float(result.air_temp_c[0]),
        float(result.mass_temp_c[0]),
        float(result.heat_kwh[0]),
        float(result.electricity_kwh[0]),
    )


@pytest.mark.parametrize("plant", _plants())
@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("minutes", DURATIONS_MIN)
def test_a_scalar_step_equals_plant_step(
    plant: Plant, situation: tuple[float, float, float, float], minutes: float
) -> None:
    air, mass, outdoor, target = situation
    duration_h = minutes / 60.0
    fast = ScalarPlant(plant).step(
        air, mass, outdoor_temp_c=outdoor, target_c=target, duration_h=duration_h
    )
    expected = _reference(plant, air, mass, outdoor, target, duration_h)
    got = (fast.air_temp_c, fast.mass_temp_c, fast.heat_kwh, fast.electricity_kwh)
    assert got == pytest.approx(expected, rel=TOLERANCE, abs=TOLERANCE)


def test_the_situations_cover_idle_regulating_and_capacity_bound_homes() -> None:
    plant = _plants()[0]
    scalar = ScalarPlant(plant)
    heats = []
    for air, mass, outdoor, target in SITUATIONS:
        step = scalar.step(air, mass, outdoor_temp_c=outdoor, target_c=target, duration_h=0.25)
        capacity = plant.controller.capacity_kw(plant.heat_pump, outdoor, target)
        heats.append((step.heat_kwh / 0.25, capacity))
    assert any(heat == 0.0 for heat, _ in heats)
    assert any(heat == pytest.approx(capacity) for heat, capacity in heats)
    assert any(0.0 < heat < capacity - 1e-6 for heat, capacity in heats)


@pytest.mark.parametrize("plant", _plants()[:2])
def test_flow_for_heat_equals_the_heating_curve(plant: Plant) -> None:
    scalar = ScalarPlant(plant)
    for heat_kw, room_c in ((0.0, 20.0), (1.7, 20.5), (6.3, 18.0)):
        expected = plant.controller.curve.flow_for_heat_c(np.array([heat_kw]), np.array([room_c]))
        assert scalar.flow_for_heat_c(heat_kw, room_c) == pytest.approx(
            float(expected[0]), rel=TOLERANCE, abs=TOLERANCE
        )


def test_many_short_steps_track_plant_step_over_a_day() -> None:
    plant = _plants()[3]
    scalar = ScalarPlant(plant)
    fast = slow = (19.0, 18.5)
    for minute in range(24 * 60):
        outdoor = 2.0 + 5.0 * np.sin(minute / 229.0)
        target = 21.0 if minute % 300 < 200 else 19.0
        step = scalar.step(*fast, outdoor_temp_c=outdoor, target_c=target, duration_h=1 / 60)
        fast = (step.air_temp_c, step.mass_temp_c)
        slow = _reference(plant, *slow, outdoor, target, 1 / 60)[:2]
    assert fast == pytest.approx(slow, rel=TOLERANCE, abs=TOLERANCE)


@pytest.mark.parametrize("minutes", [1, 5, 40])
def test_the_fleet_steps_every_home_as_plant_step_would(minutes: int) -> None:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=6, seed=4)
    before = {h.home_id: (h.air_temp_c, h.mass_temp_c, h.stepped_at, h.target_c) for h in fleet}
    fleet.advance(T0 + timedelta(minutes=minutes))
    for home in fleet:
        air, mass, at, target = before[home.home_id]
        expected_air, expected_mass = air, mass
        while at < clock.now():  # the fleet holds the outdoor temperature per chunk of <= 15 min
            end = min(clock.now(), at + timedelta(minutes=15))
            hours = (end - at) / timedelta(hours=1)
            outdoor = outdoor_temp_c(home.outdoor_base_c, at)
            expected_air, expected_mass, heat_kwh, elec_kwh = _reference(
                home.plant, expected_air, expected_mass, outdoor, target, hours
            )
            at = end
        assert (home.air_temp_c, home.mass_temp_c) == pytest.approx(
            (expected_air, expected_mass), rel=TOLERANCE, abs=TOLERANCE
        )
        assert home.power_kw == pytest.approx(elec_kwh / hours, rel=TOLERANCE, abs=TOLERANCE)
        expected_flow = home.plant.controller.curve.flow_for_heat_c(
            np.array([heat_kwh / hours]), np.array([expected_air])
        )
        assert home.supply_temp_c == pytest.approx(float(expected_flow[0]), abs=TOLERANCE)


def test_a_replaced_plant_is_what_the_home_steps_next() -> None:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=1, seed=0)
    home = next(iter(fleet))
    first = home.scalar_plant()
    assert home.scalar_plant() is first
    home.plant = replace(home.plant, internal_gains_w=home.plant.internal_gains_w + 500.0)
    assert home.scalar_plant() is not first
    assert home.scalar_plant().plant is home.plant
