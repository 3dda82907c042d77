"""RCModel: the exact discrete step, its vectorisation, and what it refuses to build."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpsteer.thermal import OLD_RADIATORS, RCModel

TWO_NODE = OLD_RADIATORS.plant.building
ONE_NODE = RCModel(air_capacity_kwh_per_k=6.0, air_outdoor_conductance_w_per_k=250.0)
INPUTS = {
    "outdoor_temp_c": -3.0,
    "solar_irradiance_w_per_m2": 150.0,
    "internal_gains_w": 300.0,
}


def _euler(
    model: RCModel, air: float, mass: float, heat_kw: float, hours: float
) -> tuple[float, float, float]:
    """Forward Euler with a step of 0.36 s: the reference the exact step must match."""
    dt = 1e-4
    caps = (model.air_capacity_kwh_per_k, model.mass_capacity_kwh_per_k or 1.0)
    mean = 0.0
    for _ in range(round(hours / dt)):
        u_air, u_mass = (float(u) for u in model.node_inputs_kw(heat_kw, **INPUTS))
        d_air = u_air - model.air_outdoor_conductance_w_per_k / 1000 * air
        d_mass = 0.0
        if model.two_node:
            h_am = (model.air_mass_conductance_w_per_k or 0.0) / 1000
            d_air += h_am * (mass - air)
            d_mass = u_mass - model.mass_outdoor_conductance_w_per_k / 1000 * mass
            d_mass += h_am * (air - mass)
        mean += air * dt
        air, mass = air + dt * d_air / caps[0], mass + dt * d_mass / caps[1]
    return air, mass, mean / hours


@pytest.mark.parametrize(
    ("model", "mass0"), [(ONE_NODE, 20.0), (TWO_NODE, 18.0)], ids=["1R1C", "2R2C"]
)
def test_one_exact_step_matches_a_fine_euler_integration(model: RCModel, mass0: float) -> None:
    air, mass, mean = model.step(
        np.array([20.0]), np.array([mass0]), heat_kw=4.0, duration_h=1.0, **INPUTS
    )
    ref_air, ref_mass, ref_mean = _euler(model, 20.0, mass0, 4.0, 1.0)
    assert air[0] == pytest.approx(ref_air, abs=2e-3)
    assert mean[0] == pytest.approx(ref_mean, abs=2e-3)
    if model.two_node:
        assert mass[0] == pytest.approx(ref_mass, abs=2e-3)


def test_the_1r1c_step_is_the_closed_form_exponential() -> None:
    tau_h = ONE_NODE.air_capacity_kwh_per_k / (ONE_NODE.air_outdoor_conductance_w_per_k / 1000)
    u_air, _ = ONE_NODE.node_inputs_kw(2.0, **INPUTS)
    equilibrium = u_air / (ONE_NODE.air_outdoor_conductance_w_per_k / 1000)
    air, _, _ = ONE_NODE.step(
        np.array([21.0]), np.array([0.0]), heat_kw=2.0, duration_h=3.0, **INPUTS
    )
    assert air[0] == pytest.approx(equilibrium + (21.0 - equilibrium) * math.exp(-3.0 / tau_h))


def test_four_quarter_hours_equal_one_hour_because_the_step_is_exact() -> None:
    air, mass = np.array([19.0]), np.array([17.0])
    a1, m1, _ = TWO_NODE.step(air, mass, heat_kw=5.0, duration_h=1.0, **INPUTS)
    for _ in range(4):
        air, mass, _ = TWO_NODE.step(air, mass, heat_kw=5.0, duration_h=0.25, **INPUTS)
    np.testing.assert_allclose([air[0], mass[0]], [a1[0], m1[0]], atol=1e-10)


def test_stepping_many_states_at_once_gives_the_numbers_of_stepping_each_alone() -> None:
    air = np.linspace(15.0, 24.0, 7)
    mass = np.linspace(14.0, 22.0, 7)
    heat = np.linspace(0.0, 9.0, 7)
    together = TWO_NODE.step(air, mass, heat_kw=heat, duration_h=0.25, **INPUTS)
    for i in range(7):
        alone = TWO_NODE.step(
            air[i : i + 1], mass[i : i + 1], heat_kw=heat[i], duration_h=0.25, **INPUTS
        )
        for arr_together, arr_alone in zip(together, alone, strict=True):
            assert arr_together[i] == pytest.approx(arr_alone[0], abs=1e-12)


def test_the_equilibrium_is_a_fixed_point_of_the_step() -> None:
    air, mass = TWO_NODE.equilibrium(heat_kw=3.0, **INPUTS)
    a, m, mean = TWO_NODE.step(
        np.array([air]), np.array([mass]), heat_kw=3.0, duration_h=5.0, **INPUTS
    )
    np.testing.assert_allclose([a[0], m[0], mean[0]], [air, mass, air], atol=1e-9)


def test_the_heat_loss_coefficient_adds_the_air_path_and_the_series_path_through_the_mass() -> None:
    assert TWO_NODE.heat_loss_w_per_k == pytest.approx(280.0)
    assert ONE_NODE.heat_loss_w_per_k == 250.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"air_capacity_kwh_per_k": -1.0}, "air_capacity_kwh_per_k"),
        ({"air_capacity_kwh_per_k": float("nan")}, "air_capacity_kwh_per_k"),
        ({"mass_capacity_kwh_per_k": 0.0}, "mass_capacity_kwh_per_k"),
        ({"air_mass_conductance_w_per_k": 0.0}, "air_mass_conductance_w_per_k"),
        ({"air_outdoor_conductance_w_per_k": float("inf")}, "air_outdoor_conductance_w_per_k"),
        (
            {"air_outdoor_conductance_w_per_k": 0.0, "mass_outdoor_conductance_w_per_k": 0.0},
            "air_outdoor_conductance_w_per_k",
        ),
        ({"heat_to_air_fraction": 1.5}, "heat_to_air_fraction"),
        ({"solar_aperture_m2": -2.0}, "solar_aperture_m2"),
        ({"mass_capacity_kwh_per_k": None}, "mass_capacity_kwh_per_k"),
    ],
    ids=[
        "negative-capacity",
        "nan-capacity",
        "zero-mass-capacity",
        "zero-air-mass-conductance",
        "infinite-conductance",
        "no-loss-at-all",
        "heat-fraction-above-one",
        "negative-aperture",
        "half-a-mass-node",
    ],
)
def test_an_absurd_building_is_refused_with_a_message_naming_the_field(
    changes: dict[str, float | None], field: str
) -> None:
    base = {
        "air_capacity_kwh_per_k": 1.0,
        "air_outdoor_conductance_w_per_k": 100.0,
        "mass_capacity_kwh_per_k": 5.0,
        "air_mass_conductance_w_per_k": 3000.0,
        "mass_outdoor_conductance_w_per_k": 150.0,
    }
    with pytest.raises(ValueError, match=field):
        RCModel(**{**base, **changes})  # type: ignore[arg-type]  # deliberately mixed values
