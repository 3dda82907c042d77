"""Building and heat-pump physics shared by the planner and the backtest simulator.

Numpy and plain floats, no I/O. :class:`Plant` (building + heat pump + the heat pump's own
controller) steps many candidate states over one price slot in one vectorised call
(:meth:`Plant.step`), or one state over a whole horizon on floats (:meth:`Plant.simulate`, the same
sub-steps); :mod:`.archetypes` turns published building types and registered
:class:`~hpsteer.domain.devices.ThermalParameters` into plants.
"""

from hpsteer.thermal.archetypes import (
    ARCHETYPES,
    NEW_FLOOR_HEATING,
    OLD_RADIATORS,
    RENOVATED_RADIATORS,
    Archetype,
    PlantDetails,
    perturbed,
    plant_from_parameters,
)
from hpsteer.thermal.building import RCModel
from hpsteer.thermal.controller import DHW_BOOST_ELECTRICITY_KWH, Controller
from hpsteer.thermal.heat_pump import HeatingCurve, HeatPump
from hpsteer.thermal.keymark import CarnotFit, KeymarkPoint, fit_carnot_fraction, keymark_points
from hpsteer.thermal.plant import Plant, SlotConditions, StepResult
from hpsteer.thermal.trajectory import Trajectory

__all__ = [
    "ARCHETYPES",
    "DHW_BOOST_ELECTRICITY_KWH",
    "NEW_FLOOR_HEATING",
    "OLD_RADIATORS",
    "RENOVATED_RADIATORS",
    "Archetype",
    "CarnotFit",
    "Controller",
    "HeatPump",
    "HeatingCurve",
    "KeymarkPoint",
    "Plant",
    "PlantDetails",
    "RCModel",
    "SlotConditions",
    "StepResult",
    "Trajectory",
    "fit_carnot_fraction",
    "keymark_points",
    "perturbed",
    "plant_from_parameters",
]
