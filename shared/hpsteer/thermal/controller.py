"""What the heat pump's own controller does with a mode.

A cloud cannot set compressor power. The generic modes shift the room setpoint the controller
regulates to (:attr:`hpsteer.domain.actions.Mode.setpoint_offset_k`: -2 / 0 / +2 K), and the
controller, a weather-compensated heating curve with room-temperature feedback, decides the heat::

    target = setpoint + offset
    Q      = min(Q_max(T_o, T_curve(T_o, target)),
                 max(0, Q_emitter(T_curve(T_o, target), target) + g * (target - T_air)))

The first term in the inner max is the curve's feedforward (what the curve's flow temperature
gives a room that is at the target), the second the room sensor's correction. ``g``
(``room_gain_kw_per_k``) is how strongly the room sensor reacts: unknown per product and per
installation (a "room influence" of a few K of flow per K of room error), so it is a parameter to
identify per home. Default :data:`DEFAULT_ROOM_GAIN_PER_HEAT_LOSS` * the building's heat loss
(4 kW/K per kW/K: 1.1 kW/K for a 280 W/K house), plausible range
:data:`ROOM_GAIN_PER_HEAT_LOSS_RANGE` (1-10 * heat loss); unconfirmed, an engineering estimate
from room-influence factors of 1-10 K flow per K room (e.g. the "room temp gain factor" of
Siemens/BSB controllers).

Hot water (``boost_dhw``) is out of scope for this space-heating model: a boost adds a fixed
electric energy (:data:`DHW_BOOST_ELECTRICITY_KWH`) to the bill and no space heat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpsteer.thermal._checks import require_non_negative
from hpsteer.thermal.building import FloatArray
from hpsteer.thermal.heat_pump import HeatingCurve, HeatPump

__all__ = [
    "DEFAULT_ROOM_GAIN_PER_HEAT_LOSS",
    "DHW_BOOST_ELECTRICITY_KWH",
    "ROOM_GAIN_PER_HEAT_LOSS_RANGE",
    "Controller",
]

DEFAULT_ROOM_GAIN_PER_HEAT_LOSS = 4.0
ROOM_GAIN_PER_HEAT_LOSS_RANGE = (1.0, 10.0)
DHW_BOOST_ELECTRICITY_KWH = 1.5
"""One tank charge (~200 l by ~15 K = 3.5 kWh heat at COP ~2.5); an assumption, not measured."""


@dataclass(frozen=True, slots=True)
class Controller:
    """Heating curve + proportional room feedback, capped at the heat pump's capacity."""

    curve: HeatingCurve
    room_gain_kw_per_k: float

    def __post_init__(self) -> None:
        require_non_negative("room_gain_kw_per_k", self.room_gain_kw_per_k)

    def feedforward_kw(self, outdoor_temp_c: float, target_c: float) -> float:
        """What the curve's flow temperature gives a room at the target."""
        return self.curve.emitter_heat_kw(
            self.curve.flow_temp_c(outdoor_temp_c, target_c), target_c
        )

    def capacity_kw(self, heat_pump: HeatPump, outdoor_temp_c: float, target_c: float) -> float:
        """Q_max at the curve's flow temperature for this target."""
        return heat_pump.max_heat_kw(
            outdoor_temp_c, self.curve.flow_temp_c(outdoor_temp_c, target_c)
        )

    def heat_kw(
        self,
        air_temp_c: FloatArray,
        *,
        target_c: float,
        feedforward_kw: float,
        capacity_kw: float,
    ) -> FloatArray:
        """Q for each state (feedforward and capacity precomputed once per sub-step)."""
        demand = feedforward_kw + self.room_gain_kw_per_k * (target_c - air_temp_c)
        heat: FloatArray = np.clip(demand, 0.0, capacity_kw)
        return heat
