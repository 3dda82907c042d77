"""Plant.simulate: one state over many slots on floats, equal to Plant.step slot by slot."""

from __future__ import annotations

import numpy as np
import pytest

from hpsteer.domain.actions import Mode
from hpsteer.thermal import (
    ARCHETYPES,
    Controller,
    HeatingCurve,
    HeatPump,
    Plant,
    RCModel,
    SlotConditions,
    perturbed,
)
from hpsteer.thermal.trajectory import Trajectory

ONE_NODE = Plant(
    building=RCModel(air_capacity_kwh_per_k=6.0, air_outdoor_conductance_w_per_k=250.0),
    heat_pump=HeatPump(rated_heat_kw=7.0),
    controller=Controller(
        curve=HeatingCurve(design_flow_temp_c=50.0, design_heat_kw=6.75), room_gain_kw_per_k=1.0
    ),
    internal_gains_w=200.0,
)
"""A 1R1C plant (no mass node) with a curve that does not match the house exactly."""


def _plants() -> dict[str, Plant]:
    rng = np.random.default_rng(7)
    plants = {name: archetype.plant for name, archetype in ARCHETYPES.items()}
    for name, archetype in ARCHETYPES.items():
        plants[f"{name}-perturbed"] = perturbed(archetype.plant, rng, spread=0.3)
    plants["one-node"] = ONE_NODE
    plants["7-minute-substeps"] = Plant(
        building=ARCHETYPES["old_radiators"].plant.building,
        heat_pump=ARCHETYPES["old_radiators"].plant.heat_pump,
        controller=ARCHETYPES["old_radiators"].plant.controller,
        internal_gains_w=150.0,
        substep_minutes=7.0,
    )
    return plants


PLANTS = _plants()
HORIZONS = [
    (0.25, 92),  # a 23 h day (spring DST) at 15 min
    (0.25, 100),  # a 25 h day (autumn DST) at 15 min
    (0.25, 192),  # 48 h at 15 min
    (1.0, 23),
    (1.0, 25),
    (1.0, 36),
]


def _inputs(
    slots: int, slot_hours: float, seed: int, *, gains: bool
) -> tuple[list[float], dict[str, object]]:
    """Modes' offsets and weather from deep frost (capacity-capped heat) to mild (no heat)."""
    rng = np.random.default_rng(seed)
    hours = np.arange(slots) * slot_hours
    outdoor = rng.uniform(-25.0, 18.0) + 8.0 * np.sin(2 * np.pi * hours / 24.0)
    outdoor += rng.normal(0.0, 1.5, slots)
    solar = np.maximum(0.0, 600.0 * np.sin(2 * np.pi * (hours - 7.0) / 24.0))
    modes = (Mode.MIN, Mode.MID, Mode.MAX)
    return [modes[i].setpoint_offset_k for i in rng.integers(0, 3, slots)], {
        "duration_h": slot_hours,
        "outdoor_temp_c": outdoor,
        "setpoint_c": float(rng.uniform(19.0, 22.0)),
        "solar_irradiance_w_per_m2": solar,
        "internal_gains_w": rng.uniform(0.0, 600.0, slots) if gains else None,
    }


def _stepped(
    plant: Plant, air: float, mass: float, offsets: list[float], inputs: dict[str, object]
) -> Trajectory:
    """The reference: Plant.step on one-element arrays, one slot at a time."""
    a, m = np.array([air]), np.array([mass])
    outdoor, solar = inputs["outdoor_temp_c"], inputs["solar_irradiance_w_per_m2"]
    gains = inputs["internal_gains_w"]
    assert isinstance(outdoor, np.ndarray)
    assert isinstance(solar, np.ndarray)
    assert gains is None or isinstance(gains, np.ndarray)
    heat, elec, mean = [], [], []
    for index, offset in enumerate(offsets):
        conditions = SlotConditions(
            duration_h=float(inputs["duration_h"]),  # type: ignore[arg-type]  # a float
            outdoor_temp_c=float(outdoor[index]),
            setpoint_c=float(inputs["setpoint_c"]),  # type: ignore[arg-type]  # a float
            solar_irradiance_w_per_m2=float(solar[index]),
            internal_gains_w=None if gains is None else float(gains[index]),
        )
        result = plant.step(a, m, offset, conditions)
        a, m = result.air_temp_c, result.mass_temp_c
        heat.append(float(result.heat_kwh[0]))
        elec.append(float(result.electricity_kwh[0]))
        mean.append(float(result.mean_air_temp_c[0]))
    return Trajectory(np.array(heat), np.array(elec), np.array(mean), float(a[0]), float(m[0]))


@pytest.mark.parametrize("name", list(PLANTS))
@pytest.mark.parametrize(("slot_hours", "slots"), HORIZONS)
def test_simulating_a_schedule_gives_what_stepping_it_slot_by_slot_gives(
    name: str, slot_hours: float, slots: int
) -> None:
    plant = PLANTS[name]
    for seed, gains in ((slots, False), (slots + 1, True)):
        offsets, inputs = _inputs(slots, slot_hours, seed, gains=gains)
        air, mass = 19.0 + seed % 5, 18.0 + seed % 7  # off equilibrium: both nodes move
        ran = plant.simulate(air, mass, offsets, **inputs)  # type: ignore[arg-type]
        stepped = _stepped(plant, air, mass, offsets, inputs)
        np.testing.assert_allclose(ran.mean_air_temp_c, stepped.mean_air_temp_c, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ran.heat_kwh, stepped.heat_kwh, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ran.electricity_kwh, stepped.electricity_kwh, rtol=0, atol=1e-9)
        assert ran.end_air_temp_c == pytest.approx(stepped.end_air_temp_c, abs=1e-9)
        assert ran.end_mass_temp_c == pytest.approx(stepped.end_mass_temp_c, abs=1e-9)


def test_the_reference_cases_reach_both_the_capacity_cap_and_zero_heat() -> None:
    # Without both regimes the comparison above would not cover the controller's clipping.
    plant = PLANTS["old_radiators"]
    capped = zero = False
    for seed in range(12):
        offsets, inputs = _inputs(96, 0.25, seed, gains=False)
        ran = plant.simulate(20.0, 20.0, offsets, **inputs)  # type: ignore[arg-type]
        outdoor = inputs["outdoor_temp_c"]
        assert isinstance(outdoor, np.ndarray)
        capacity = [
            plant.controller.capacity_kw(plant.heat_pump, float(o), 21.0 + k)
            for o, k in zip(outdoor, offsets, strict=True)
        ]
        capped |= bool(np.any(np.isclose(ran.heat_kwh / 0.25, capacity, rtol=1e-9)))
        zero |= bool(np.any(ran.heat_kwh == 0.0))
    assert capped
    assert zero


def test_a_one_node_plant_ends_with_its_mass_at_its_air_temperature() -> None:
    offsets, inputs = _inputs(8, 1.0, 3, gains=False)
    ran = ONE_NODE.simulate(20.0, 5.0, offsets, **inputs)  # type: ignore[arg-type]
    assert ran.end_mass_temp_c == ran.end_air_temp_c


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("solar_irradiance_w_per_m2", -1.0, "solar_irradiance_w_per_m2 must be >= 0"),
        ("internal_gains_w", -5.0, "internal_gains_w must be >= 0"),
        ("outdoor_temp_c", float("nan"), "outdoor_temp_c must be a finite number"),
        ("solar_irradiance_w_per_m2", float("inf"), "solar_irradiance_w_per_m2 must be a finite"),
    ],
)
def test_a_slot_that_slot_conditions_refuse_is_refused_with_its_message(
    field: str, value: float, message: str
) -> None:
    offsets, inputs = _inputs(6, 1.0, 1, gains=True)
    values = inputs[field]
    assert isinstance(values, np.ndarray)
    values[4] = value
    with pytest.raises(ValueError, match=message):
        PLANTS["old_radiators"].simulate(20.0, 20.0, offsets, **inputs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"duration_h": 0.0}, "duration_h must be > 0"),
        ({"setpoint_c": float("inf")}, "setpoint_c must be a finite number"),
        ({"outdoor_temp_c": np.zeros(5)}, "outdoor_temp_c has 5 values for 6 slots"),
    ],
)
def test_inputs_that_do_not_describe_the_slots_are_refused(
    changes: dict[str, object], message: str
) -> None:
    offsets, inputs = _inputs(6, 1.0, 1, gains=False)
    inputs.update(changes)
    with pytest.raises(ValueError, match=message):
        PLANTS["old_radiators"].simulate(20.0, 20.0, offsets, **inputs)  # type: ignore[arg-type]
