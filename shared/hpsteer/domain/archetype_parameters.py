"""The thermal archetypes' parameters, for code that may not load the physics.

:data:`hpsteer.thermal.archetypes.ARCHETYPES` computes each published building type's
:class:`~hpsteer.domain.devices.ThermalParameters` with the heat pump model (numpy). The operator
API registers devices by archetype name but must stay free of numpy and the planner (its cold
start, its staged folder), so it reads this copy of the computed values instead.

This is not a second source: ``tests/unit/test_api_models.py`` holds it equal to
``ARCHETYPES[name].parameters`` field by field, and prints the literal to paste here when the
physics changes.
"""

from __future__ import annotations

from typing import Final

from hpsteer.domain.devices import ThermalParameters

__all__ = ["ARCHETYPE_PARAMETERS", "archetype_names"]

ARCHETYPE_PARAMETERS: Final[dict[str, ThermalParameters]] = {
    "old_radiators": ThermalParameters(
        archetype="old_radiators",
        heat_loss_w_per_k=280.0,
        air_capacity_kwh_per_k=1.0,
        envelope_capacity_kwh_per_k=5.416666666666667,
        air_envelope_conductance_w_per_k=3185.0,
        hp_max_heat_kw=10.0,
        carnot_fraction=0.41,
        floor_heating=False,
    ),
    "renovated_radiators": ThermalParameters(
        archetype="renovated_radiators",
        heat_loss_w_per_k=170.0,
        air_capacity_kwh_per_k=1.0,
        envelope_capacity_kwh_per_k=5.416666666666667,
        air_envelope_conductance_w_per_k=3185.0,
        hp_max_heat_kw=5.6,
        carnot_fraction=0.41,
        floor_heating=False,
    ),
    "new_floor_heating": ThermalParameters(
        archetype="new_floor_heating",
        heat_loss_w_per_k=110.0,
        air_capacity_kwh_per_k=0.8,
        envelope_capacity_kwh_per_k=10.033333333333333,
        air_envelope_conductance_w_per_k=4094.9999999999995,
        hp_max_heat_kw=3.0,
        carnot_fraction=0.41,
        floor_heating=True,
    ),
}
"""Archetype name -> the parameters :mod:`hpsteer.thermal.archetypes` gives it."""


def archetype_names() -> tuple[str, ...]:
    return tuple(ARCHETYPE_PARAMETERS)
