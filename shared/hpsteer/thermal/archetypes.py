"""Published building types as plants, the plant a registered device's parameters give, and noise.

Sources (checked with the search tool where marked *confirmed*; the rest are the usual textbook
values, *unconfirmed* here):

- Heat-loss coefficients per type: TABULA/EPISCOPE German building typology (IWU Darmstadt,
  episcope.eu webtool: age classes * size classes, existing state / usual / advanced
  refurbishment; *confirmed* that the typology and its refurbishment levels exist). The W/K figures
  below are round values typical of those types for ~140-150 m², *unconfirmed* against the
  individual type sheets.
- Effective heat capacity per m² floor: ISO 13790:2008 Table 12 classes very light 80, light 110,
  medium 165, heavy 260, very heavy 370 kJ/(m²·K) (the same classes appear in ISO 52016-1);
  *partly confirmed* (a Building Simulation 2007 paper quotes the classes, 380 for very heavy).
- Air↔mass coupling: ISO 13790 h_ms = 9.1 W/(m²·K) * A_m, with A_m = 2.5 A_f (medium) or
  3.0 A_f (heavy) (*unconfirmed*).
- Internal gains: DIN V 18599-10, single-family houses 45 Wh/(m²·d) ≈ 1.9 W/m² (*unconfirmed*).
- Design flow temperatures: floor heating ~35 °C and radiators ~55 °C at -7 °C (the EN 14825 "low"
  and "medium" temperature applications); 50 °C for renovated radiators is an assumption (the same
  radiators serve a smaller load).

The split of the loss into an air path (windows, ventilation) and a path through the mass node,
the air-node capacity (air + furniture), and the solar apertures are engineering assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hpsteer.domain.devices import ThermalParameters
from hpsteer.thermal.building import RCModel
from hpsteer.thermal.controller import DEFAULT_ROOM_GAIN_PER_HEAT_LOSS, Controller
from hpsteer.thermal.heat_pump import HeatingCurve, HeatPump
from hpsteer.thermal.plant import Plant

__all__ = [
    "ARCHETYPES",
    "NEW_FLOOR_HEATING",
    "OLD_RADIATORS",
    "RENOVATED_RADIATORS",
    "Archetype",
    "PlantDetails",
    "perturbed",
    "plant_from_parameters",
]

_KJ_PER_KWH = 3600.0
_H_MS_W_PER_M2K = 9.1
DESIGN_OUTDOOR_TEMP_C = -7.0
DESIGN_ROOM_TEMP_C = 20.0
HP_SIZING_MARGIN = 1.1
"""Heat-pump output at the design point over the design load."""


@dataclass(frozen=True, slots=True)
class PlantDetails:
    """What a plant needs beyond :class:`ThermalParameters` (defaults for unknown houses)."""

    air_side_loss_fraction: float = 0.4
    internal_gains_w: float = 280.0
    solar_aperture_m2: float = 4.0
    solar_to_air_fraction: float = 0.5
    design_flow_temp_c: float | None = None
    """None: 35 °C with floor heating, 55 °C with radiators."""
    room_gain_per_heat_loss: float = DEFAULT_ROOM_GAIN_PER_HEAT_LOSS


@dataclass(frozen=True, slots=True)
class Archetype:
    name: str
    source: str
    parameters: ThermalParameters
    details: PlantDetails

    @property
    def plant(self) -> Plant:
        return build_plant(self.parameters, self.details)


def _capacity_kwh_per_k(floor_area_m2: float, kj_per_m2k: float) -> float:
    return floor_area_m2 * kj_per_m2k / _KJ_PER_KWH


def _archetype(
    *,
    name: str,
    source: str,
    floor_area_m2: float,
    heat_loss_w_per_k: float,
    capacity_kj_per_m2k: float,
    mass_area_factor: float,
    air_capacity_kwh_per_k: float,
    floor_heating: bool,
    details: PlantDetails,
) -> Archetype:
    total = _capacity_kwh_per_k(floor_area_m2, capacity_kj_per_m2k)
    design_flow = details.design_flow_temp_c or (35.0 if floor_heating else 55.0)
    gains_k = details.internal_gains_w / heat_loss_w_per_k
    design_load_kw = (
        heat_loss_w_per_k / 1000.0 * (DESIGN_ROOM_TEMP_C - gains_k - DESIGN_OUTDOOR_TEMP_C)
    )
    probe = HeatPump(rated_heat_kw=1.0)
    rated = (
        HP_SIZING_MARGIN * design_load_kw / probe.max_heat_kw(DESIGN_OUTDOOR_TEMP_C, design_flow)
    )
    params = ThermalParameters(
        archetype=name,
        heat_loss_w_per_k=heat_loss_w_per_k,
        air_capacity_kwh_per_k=air_capacity_kwh_per_k,
        envelope_capacity_kwh_per_k=total - air_capacity_kwh_per_k,
        air_envelope_conductance_w_per_k=_H_MS_W_PER_M2K * mass_area_factor * floor_area_m2,
        hp_max_heat_kw=round(rated, 1),
        carnot_fraction=probe.carnot_fraction,
        floor_heating=floor_heating,
    )
    return Archetype(name=name, source=source, parameters=params, details=details)


OLD_RADIATORS = _archetype(
    name="old_radiators",
    source="TABULA DE single-family house 1969-1978, existing state; ISO 13790 medium class",
    floor_area_m2=140.0,
    heat_loss_w_per_k=280.0,
    capacity_kj_per_m2k=165.0,
    mass_area_factor=2.5,
    air_capacity_kwh_per_k=1.0,
    floor_heating=False,
    details=PlantDetails(internal_gains_w=1.9 * 140.0, solar_aperture_m2=4.0),
)
RENOVATED_RADIATORS = _archetype(
    name="renovated_radiators",
    source="TABULA DE single-family house 1969-1978, usual refurbishment; ISO 13790 medium class",
    floor_area_m2=140.0,
    heat_loss_w_per_k=170.0,
    capacity_kj_per_m2k=165.0,
    mass_area_factor=2.5,
    air_capacity_kwh_per_k=1.0,
    floor_heating=False,
    details=PlantDetails(
        internal_gains_w=1.9 * 140.0, solar_aperture_m2=4.0, design_flow_temp_c=50.0
    ),
)
NEW_FLOOR_HEATING = _archetype(
    name="new_floor_heating",
    source="TABULA DE single-family house 2010-2015 (EnEV level); ISO 13790 heavy class, slab",
    floor_area_m2=150.0,
    heat_loss_w_per_k=110.0,
    capacity_kj_per_m2k=260.0,
    mass_area_factor=3.0,
    air_capacity_kwh_per_k=0.8,
    floor_heating=True,
    details=PlantDetails(internal_gains_w=1.9 * 150.0, solar_aperture_m2=7.0),
)
ARCHETYPES: dict[str, Archetype] = {
    a.name: a for a in (OLD_RADIATORS, RENOVATED_RADIATORS, NEW_FLOOR_HEATING)
}


def build_plant(params: ThermalParameters, details: PlantDetails) -> Plant:
    """Plant from the planner's parameters plus the details they do not carry."""
    loss = params.heat_loss_w_per_k
    if (
        params.envelope_capacity_kwh_per_k is None
        or params.air_envelope_conductance_w_per_k is None
    ):
        building = RCModel(
            air_capacity_kwh_per_k=params.air_capacity_kwh_per_k,
            air_outdoor_conductance_w_per_k=loss,
            solar_aperture_m2=details.solar_aperture_m2,
        )
    else:
        h_am = params.air_envelope_conductance_w_per_k
        # The series path air -> mass -> outdoors carries the rest of the loss; it cannot carry
        # more than h_am, so very weak coupling moves loss to the air path.
        series = min((1.0 - details.air_side_loss_fraction) * loss, 0.9 * h_am)
        building = RCModel(
            air_capacity_kwh_per_k=params.air_capacity_kwh_per_k,
            air_outdoor_conductance_w_per_k=loss - series,
            mass_capacity_kwh_per_k=params.envelope_capacity_kwh_per_k,
            air_mass_conductance_w_per_k=h_am,
            mass_outdoor_conductance_w_per_k=series * h_am / (h_am - series),
            heat_to_air_fraction=0.1 if params.floor_heating else 0.8,
            solar_aperture_m2=details.solar_aperture_m2,
            solar_to_air_fraction=details.solar_to_air_fraction,
        )
    design_flow = details.design_flow_temp_c or (35.0 if params.floor_heating else 55.0)
    # The installer tunes the curve to this house: the heat that holds the air at the target.
    # Air at equilibrium is affine: T_air = T_o + Q / H_eff + L (L: the rise the gains give).
    # H_eff differs from the heat loss when part of the heat enters the mass node.
    no_heat, _ = building.equilibrium(
        heat_kw=0.0,
        outdoor_temp_c=0.0,
        solar_irradiance_w_per_m2=0.0,
        internal_gains_w=details.internal_gains_w,
    )
    one_kw, _ = building.equilibrium(
        heat_kw=1.0, outdoor_temp_c=0.0, solar_irradiance_w_per_m2=0.0, internal_gains_w=0.0
    )
    gains_k = no_heat
    curve = HeatingCurve(
        design_flow_temp_c=design_flow,
        design_heat_kw=(DESIGN_ROOM_TEMP_C - gains_k - DESIGN_OUTDOOR_TEMP_C) / one_kw,
        emitter_exponent=1.1 if params.floor_heating else 1.3,
        design_outdoor_temp_c=DESIGN_OUTDOOR_TEMP_C,
        design_room_temp_c=DESIGN_ROOM_TEMP_C,
        heating_limit_offset_k=gains_k,
    )
    return Plant(
        building=building,
        heat_pump=HeatPump(
            rated_heat_kw=params.hp_max_heat_kw, carnot_fraction=params.carnot_fraction
        ),
        controller=Controller(
            curve=curve, room_gain_kw_per_k=details.room_gain_per_heat_loss * loss / 1000.0
        ),
        internal_gains_w=details.internal_gains_w,
    )


def plant_from_parameters(params: ThermalParameters) -> Plant:
    """The plant a device's parameters give (with its archetype's details when it names one)."""
    archetype = ARCHETYPES.get(params.archetype or "")
    return build_plant(params, archetype.details if archetype else PlantDetails())


def perturbed(plant: Plant, rng: np.random.Generator, spread: float = 0.15) -> Plant:
    """A house the planner does not know exactly.

    Capacities, conductances, solar aperture, internal gains and rated output are each scaled by
    an independent factor uniform in [1 - spread, 1 + spread]; the room gain by one in
    [1 - 2 spread, 1 + 2 spread]. The controller's heating curve stays as the installer set it
    for the nominal house, so the room feedback must absorb the mismatch, as in a real home.
    """
    if not 0.0 <= spread < 0.5:
        raise ValueError(f"spread must lie in [0, 0.5), got {spread!r}")

    def f(scale: float = 1.0) -> float:
        return float(rng.uniform(1.0 - scale * spread, 1.0 + scale * spread))

    b = plant.building
    building = replace(
        b,
        air_capacity_kwh_per_k=b.air_capacity_kwh_per_k * f(),
        air_outdoor_conductance_w_per_k=b.air_outdoor_conductance_w_per_k * f(),
        mass_capacity_kwh_per_k=(
            None if b.mass_capacity_kwh_per_k is None else b.mass_capacity_kwh_per_k * f()
        ),
        air_mass_conductance_w_per_k=(
            None if b.air_mass_conductance_w_per_k is None else b.air_mass_conductance_w_per_k * f()
        ),
        mass_outdoor_conductance_w_per_k=b.mass_outdoor_conductance_w_per_k * f(),
        solar_aperture_m2=b.solar_aperture_m2 * f(),
    )
    return replace(
        plant,
        building=building,
        heat_pump=replace(plant.heat_pump, rated_heat_kw=plant.heat_pump.rated_heat_kw * f()),
        controller=replace(
            plant.controller, room_gain_kw_per_k=plant.controller.room_gain_kw_per_k * f(2.0)
        ),
        internal_gains_w=plant.internal_gains_w * f(),
    )
