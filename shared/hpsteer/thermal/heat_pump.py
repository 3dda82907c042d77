"""An air-source heat pump and the heating curve its own controller follows.

**COP** (Carnot fraction with a floor on the lift)::

    COP = η * (T_flow + 273.15) / max(T_flow - T_outdoor, min_lift_k)

η (``carnot_fraction``) fitted to Heat Pump Keymark points (see :mod:`hpsteer.thermal.keymark`):
about 0.41 with ``min_lift_k`` = 15 K for outdoor-air/water units. The floor keeps the COP finite
(and realistic: at small lifts cycling and auxiliaries dominate) when outdoor air nears the flow.

**Capacity** (maximum heat output, kW), a documented assumption rather than a fit::

    Q_max = rated * clip(1 + a (T_outdoor + 7), 0.3, 1.6) * clip(1 - b (T_flow - 35), 0.5, 1.2)

``rated`` at A-7/W35, a = 0.025 /K (output falls ~2.5 % per K colder), b = 0.01 /K (~1 % per K of
flow). Keymark's ``p_th_*`` are part-load points (the load the test prescribes), not maximum output,
so they cannot pin ``a`` and ``b``; the values are typical of inverter units' data sheets
(unconfirmed: no public data-sheet set was at hand to fit them).

**Heating curve and emitters.** The installer's curve gives the flow temperature for an outdoor
temperature and a room setpoint; it is built from the emitters' design point (``design_flow_temp_c``
at ``design_outdoor_temp_c`` with the room at ``design_room_temp_c``, delivering
``design_heat_kw``) and the emitter exponent n (radiators ≈ 1.3, floor heating ≈ 1.1)::

    E_design  = T_flow,d - T_room,d
    Q_emitter = Q_design * ((T_flow - T_room) / E_design)^n
    T_curve   = T_set + shift + E_design * (max(0, T_set - L - T_o) / (T_room,d - L - T_o,d))^(1/n)

``L`` (``heating_limit_offset_k``) is how far below the setpoint the heating limit lies (the
installer's allowance for internal gains). ``slope_k_per_k`` is the linear-equivalent slope
E_design / (T_room,d - L - T_o,d). Floor heating: ~35 °C at -7 °C; radiators: ~55 °C at -7 °C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpsteer.thermal._checks import require_finite, require_positive
from hpsteer.thermal.building import FloatArray

__all__ = ["KELVIN_OFFSET", "HeatPump", "HeatingCurve"]

KELVIN_OFFSET = 273.15
DEFAULT_CARNOT_FRACTION = 0.41
"""Median fit to Keymark outdoor-air/water points at EN 14825 flow temperatures, lift floor 15 K."""


@dataclass(frozen=True, slots=True)
class HeatPump:
    """Air-source heat pump: capacity and COP as functions of outdoor and flow temperature."""

    rated_heat_kw: float
    carnot_fraction: float = DEFAULT_CARNOT_FRACTION
    min_lift_k: float = 15.0
    capacity_outdoor_slope_per_k: float = 0.025
    capacity_flow_slope_per_k: float = 0.01

    def __post_init__(self) -> None:
        require_positive("rated_heat_kw", self.rated_heat_kw)
        require_positive("carnot_fraction", self.carnot_fraction)
        if self.carnot_fraction >= 1.0:
            raise ValueError(f"carnot_fraction must be < 1, got {self.carnot_fraction!r}")
        require_positive("min_lift_k", self.min_lift_k)
        require_finite("capacity_outdoor_slope_per_k", self.capacity_outdoor_slope_per_k)
        require_finite("capacity_flow_slope_per_k", self.capacity_flow_slope_per_k)

    def cop(self, outdoor_temp_c: float, flow_temp_c: FloatArray | float) -> FloatArray:
        """η * T_flow,K / max(T_flow - T_outdoor, min_lift_k)."""
        flow = np.asarray(flow_temp_c, dtype=np.float64)
        lift = np.maximum(flow - outdoor_temp_c, self.min_lift_k)
        result: FloatArray = self.carnot_fraction * (flow + KELVIN_OFFSET) / lift
        return result

    def max_heat_kw(self, outdoor_temp_c: float, flow_temp_c: float) -> float:
        """Maximum heat output at this outdoor and flow temperature (see module docstring)."""
        outdoor_factor = np.clip(
            1.0 + self.capacity_outdoor_slope_per_k * (outdoor_temp_c + 7.0), 0.3, 1.6
        )
        flow_factor = np.clip(1.0 - self.capacity_flow_slope_per_k * (flow_temp_c - 35.0), 0.5, 1.2)
        return float(self.rated_heat_kw * outdoor_factor * flow_factor)


@dataclass(frozen=True, slots=True)
class HeatingCurve:
    """Weather-compensated flow temperature, built on the emitters' design point."""

    design_flow_temp_c: float
    design_heat_kw: float
    emitter_exponent: float = 1.3
    design_outdoor_temp_c: float = -7.0
    design_room_temp_c: float = 20.0
    heating_limit_offset_k: float = 0.0
    parallel_shift_k: float = 0.0
    min_flow_temp_c: float = 20.0
    max_flow_temp_c: float = 65.0

    def __post_init__(self) -> None:
        for name in (
            "design_flow_temp_c",
            "design_outdoor_temp_c",
            "design_room_temp_c",
            "heating_limit_offset_k",
            "parallel_shift_k",
            "min_flow_temp_c",
            "max_flow_temp_c",
        ):
            require_finite(name, getattr(self, name))
        require_positive("design_heat_kw", self.design_heat_kw)
        require_positive("emitter_exponent", self.emitter_exponent)
        if self.design_flow_temp_c <= self.design_room_temp_c:
            raise ValueError("design_flow_temp_c must exceed design_room_temp_c")
        if self.design_room_temp_c - self.heating_limit_offset_k <= self.design_outdoor_temp_c:
            raise ValueError("heating_limit_offset_k puts the heating limit below the design point")
        if self.min_flow_temp_c > self.max_flow_temp_c:
            raise ValueError("min_flow_temp_c must not exceed max_flow_temp_c")

    @property
    def design_excess_k(self) -> float:
        """E_design: flow minus room at the design point."""
        return self.design_flow_temp_c - self.design_room_temp_c

    @property
    def _design_span_k(self) -> float:
        return self.design_room_temp_c - self.heating_limit_offset_k - self.design_outdoor_temp_c

    @property
    def slope_k_per_k(self) -> float:
        """Linear-equivalent slope: K of flow per K the outdoors is colder."""
        return self.design_excess_k / self._design_span_k

    def flow_temp_c(self, outdoor_temp_c: float, setpoint_c: float) -> float:
        """T_curve: the flow temperature for this outdoor temperature and room setpoint."""
        load = max(0.0, setpoint_c - self.heating_limit_offset_k - outdoor_temp_c)
        excess = self.design_excess_k * (load / self._design_span_k) ** (
            1.0 / self.emitter_exponent
        )
        flow = setpoint_c + self.parallel_shift_k + excess
        return float(np.clip(flow, self.min_flow_temp_c, self.max_flow_temp_c))

    def emitter_heat_kw(self, flow_temp_c: float, room_temp_c: float) -> float:
        """Q_emitter: what the emitters give at this flow temperature to a room at room_temp_c."""
        excess = max(0.0, flow_temp_c - room_temp_c)
        return float(self.design_heat_kw * (excess / self.design_excess_k) ** self.emitter_exponent)

    def flow_for_heat_c(self, heat_kw: FloatArray, room_temp_c: FloatArray) -> FloatArray:
        """The flow temperature the emitters need to deliver heat_kw to a room at room_temp_c."""
        ratio = np.maximum(heat_kw, 0.0) / self.design_heat_kw
        flow: FloatArray = room_temp_c + self.design_excess_k * ratio ** (
            1.0 / self.emitter_exponent
        )
        return flow
