"""One state stepped over many slots in plain floats: :meth:`Plant.step`'s sub-steps without numpy.

:meth:`hpsteer.thermal.Plant.step` is vectorised over many states. Judging a schedule
(:func:`hpsteer.optimizer.problem.evaluate`) steps *one* state over every slot of a horizon, a
few hundred sub-steps, where numpy's per-call overhead on one-element arrays was nearly all the
cost. :func:`simulate` runs the same sub-steps with the same formulas, written in the same order of
operations (``HeatingCurve``, ``HeatPump``, ``Controller``, ``RCModel.node_inputs_kw`` and
``RCModel.step``), on Python floats, with the exact transition (Φ, Ψ, Γ of
:func:`hpsteer.thermal.building.transition`) fetched once per sub-step length. The result is, slot
for slot, what ``Plant.step`` gives for one state under ``SlotConditions(duration_h, outdoor[i],
setpoint_c, solar[i], gains[i])`` and offset ``offsets_k[i]``, to rounding
(tests/unit/thermal/test_trajectory.py holds it to that); a slot that ``SlotConditions`` would
refuse raises its ``ValueError``, and weather arrays of the wrong length are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hpsteer.thermal._checks import require_finite, require_positive
from hpsteer.thermal.building import FloatArray, transition
from hpsteer.thermal.heat_pump import KELVIN_OFFSET

if TYPE_CHECKING:
    from hpsteer.thermal.plant import Plant

__all__ = ["Trajectory", "simulate"]

_W_PER_KW = 1000.0
_TRANSITIONS_KEPT = 16
"""Sub-step lengths whose transition one plant's scalar form keeps (a planner uses one or two)."""


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One state over consecutive slots: per slot (shape (slots,)) and the state at the end."""

    heat_kwh: FloatArray
    electricity_kwh: FloatArray
    mean_air_temp_c: FloatArray
    end_air_temp_c: float
    end_mass_temp_c: float


def simulate(
    plant: Plant,
    air_temp_c: float,
    mass_temp_c: float,
    offsets_k: Sequence[float],
    *,
    duration_h: float,
    outdoor_temp_c: FloatArray,
    setpoint_c: float,
    solar_irradiance_w_per_m2: FloatArray,
    internal_gains_w: FloatArray | None = None,
) -> Trajectory:
    """Step one state over ``len(offsets_k)`` slots of ``duration_h`` (see the module docstring).

    Slot ``i`` runs at ``setpoint_c + offsets_k[i]`` with ``outdoor_temp_c[i]``,
    ``solar_irradiance_w_per_m2[i]`` and ``internal_gains_w[i]`` (None: the plant's own gains).
    """
    n = len(offsets_k)
    outdoor = np.asarray(outdoor_temp_c, dtype=np.float64)
    solar = np.asarray(solar_irradiance_w_per_m2, dtype=np.float64)
    gains = None if internal_gains_w is None else np.asarray(internal_gains_w, dtype=np.float64)
    for name, values in (("outdoor_temp_c", outdoor), ("solar_irradiance_w_per_m2", solar)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} values for {n} slots")
    if gains is not None and len(gains) != n:
        raise ValueError(f"internal_gains_w has {len(gains)} values for {n} slots")
    _check_slots(duration_h, outdoor, setpoint_c, solar, gains)
    return _scalar_form(plant).simulate(
        float(air_temp_c),
        float(mass_temp_c),
        [float(offset) for offset in offsets_k],
        duration_h=float(duration_h),
        outdoor=outdoor.tolist(),
        setpoint_c=float(setpoint_c),
        solar=solar.tolist(),
        gains_w=None if gains is None else gains.tolist(),
    )


def _check_slots(
    duration_h: float,
    outdoor: FloatArray,
    setpoint_c: float,
    solar: FloatArray,
    gains: FloatArray | None,
) -> None:
    """Refuse what ``SlotConditions`` refuses, with its message (that of the first bad slot)."""
    require_positive("duration_h", duration_h)
    valid = bool(np.all(np.isfinite(outdoor)))
    valid = valid and math.isfinite(setpoint_c)
    valid = valid and bool(np.all(np.isfinite(solar) & (solar >= 0.0)))
    valid = valid and (gains is None or bool(np.all(np.isfinite(gains) & (gains >= 0.0))))
    if valid:
        return
    from hpsteer.thermal.plant import SlotConditions  # plant imports this module

    for index in range(len(outdoor)):
        SlotConditions(
            duration_h=duration_h,
            outdoor_temp_c=float(outdoor[index]),
            setpoint_c=setpoint_c,
            solar_irradiance_w_per_m2=float(solar[index]),
            internal_gains_w=None if gains is None else float(gains[index]),
        )
    require_finite("setpoint_c", setpoint_c)  # no slots: nothing else can be wrong


@lru_cache(maxsize=64)
def _scalar_form(plant: Plant) -> _ScalarPlant:
    return _ScalarPlant(plant)


class _ScalarPlant:
    """A plant's parameters as floats, and its transitions per sub-step length as float tuples."""

    __slots__ = (
        "_a_ao",
        "_a_mo",
        "_air_capacity",
        "_aperture_m2",
        "_building",
        "_capacity_flow_slope",
        "_capacity_outdoor_slope",
        "_carnot_fraction",
        "_design_excess_k",
        "_design_heat_kw",
        "_design_span_k",
        "_emitter_exponent",
        "_gains_w",
        "_heat_to_air",
        "_inverse_exponent",
        "_limit_offset_k",
        "_mass_capacity",
        "_max_flow_c",
        "_min_flow_c",
        "_min_lift_k",
        "_parallel_shift_k",
        "_rated_heat_kw",
        "_room_gain",
        "_solar_to_air",
        "_substep_minutes",
        "_transitions",
    )

    def __init__(self, plant: Plant) -> None:
        building, curve, pump = plant.building, plant.controller.curve, plant.heat_pump
        self._building = building
        self._a_ao = building.air_outdoor_conductance_w_per_k / _W_PER_KW
        self._a_mo = building.mass_outdoor_conductance_w_per_k / _W_PER_KW
        self._air_capacity = building.air_capacity_kwh_per_k
        self._mass_capacity = building.mass_capacity_kwh_per_k if building.two_node else None
        self._heat_to_air = building.heat_to_air_fraction
        self._solar_to_air = building.solar_to_air_fraction if building.two_node else 1.0
        self._aperture_m2 = building.solar_aperture_m2
        self._gains_w = plant.internal_gains_w
        self._substep_minutes = plant.substep_minutes
        self._room_gain = plant.controller.room_gain_kw_per_k
        self._design_excess_k = curve.design_excess_k
        self._design_span_k = (
            curve.design_room_temp_c - curve.heating_limit_offset_k - curve.design_outdoor_temp_c
        )
        self._design_heat_kw = curve.design_heat_kw
        self._emitter_exponent = curve.emitter_exponent
        self._inverse_exponent = 1.0 / curve.emitter_exponent
        self._limit_offset_k = curve.heating_limit_offset_k
        self._parallel_shift_k = curve.parallel_shift_k
        self._min_flow_c = curve.min_flow_temp_c
        self._max_flow_c = curve.max_flow_temp_c
        self._rated_heat_kw = pump.rated_heat_kw
        self._carnot_fraction = pump.carnot_fraction
        self._min_lift_k = pump.min_lift_k
        self._capacity_outdoor_slope = pump.capacity_outdoor_slope_per_k
        self._capacity_flow_slope = pump.capacity_flow_slope_per_k
        self._transitions: dict[float, tuple[float, ...]] = {}

    def _transition(self, dt_h: float) -> tuple[float, ...]:
        """(Φ, Ψ, Γ) row-major as floats (2x2 each; 1x1 uses the [0, 0] entries)."""
        found = self._transitions.get(dt_h)
        if found is None:
            tr = transition(self._building, dt_h)
            found = tuple(
                float(m[i, j])
                for m in (tr.phi, tr.psi, tr.gamma)
                for i in range(m.shape[0])
                for j in range(m.shape[1])
            )
            if len(self._transitions) >= _TRANSITIONS_KEPT:
                self._transitions.clear()
            self._transitions[dt_h] = found
        return found

    def _curve_flow_c(self, outdoor_temp_c: float, target_c: float) -> float:
        """``HeatingCurve.flow_temp_c``."""
        load = max(0.0, target_c - self._limit_offset_k - outdoor_temp_c)
        excess = self._design_excess_k * math.pow(
            load / self._design_span_k, self._inverse_exponent
        )
        flow = target_c + self._parallel_shift_k + excess
        return min(max(flow, self._min_flow_c), self._max_flow_c)

    def _capacity_kw(self, outdoor_temp_c: float, flow_temp_c: float) -> float:
        """``HeatPump.max_heat_kw``."""
        outdoor_factor = min(
            max(1.0 + self._capacity_outdoor_slope * (outdoor_temp_c + 7.0), 0.3), 1.6
        )
        flow_factor = min(max(1.0 - self._capacity_flow_slope * (flow_temp_c - 35.0), 0.5), 1.2)
        return self._rated_heat_kw * outdoor_factor * flow_factor

    def simulate(
        self,
        air: float,
        mass: float,
        offsets_k: list[float],
        *,
        duration_h: float,
        outdoor: list[float],
        setpoint_c: float,
        solar: list[float],
        gains_w: list[float] | None,
    ) -> Trajectory:
        n = len(offsets_k)
        n_sub = max(1, math.ceil(duration_h * 60.0 / self._substep_minutes - 1e-9))
        dt_h = duration_h / n_sub
        tr = self._transition(dt_h)
        two_node = self._mass_capacity is not None
        mass_capacity = self._mass_capacity or 1.0
        if two_node:
            p_aa, p_am, p_ma, p_mm, s_aa, s_am, s_ma, s_mm, g_aa, g_am, _, _ = tr
        else:
            p_aa, s_aa, g_aa = tr
            p_am = p_ma = p_mm = s_am = s_ma = s_mm = g_am = 0.0
        room_gain, design_heat_kw = self._room_gain, self._design_heat_kw
        design_excess_k, inverse_exponent = self._design_excess_k, self._inverse_exponent
        carnot_fraction, min_lift_k = self._carnot_fraction, self._min_lift_k
        a_ao, a_mo, air_capacity = self._a_ao, self._a_mo, self._air_capacity
        fh, fs, aperture = self._heat_to_air, self._solar_to_air, self._aperture_m2
        pow_ = math.pow
        heat_out = [0.0] * n
        elec_out = [0.0] * n
        mean_out = [0.0] * n
        for index in range(n):
            outdoor_c = outdoor[index]
            target = setpoint_c + offsets_k[index]
            curve_flow = self._curve_flow_c(outdoor_c, target)
            excess = max(0.0, curve_flow - target)
            feedforward = design_heat_kw * pow_(excess / design_excess_k, self._emitter_exponent)
            capacity = self._capacity_kw(outdoor_c, curve_flow)
            gains = self._gains_w if gains_w is None else gains_w[index]
            solar_kw = solar[index] * aperture / _W_PER_KW
            heat_kwh = elec_kwh = mean_sum = 0.0
            for _ in range(n_sub):
                heat = min(max(feedforward + room_gain * (target - air), 0.0), capacity)
                flow = air + design_excess_k * pow_(
                    max(heat, 0.0) / design_heat_kw, inverse_exponent
                )
                cop = carnot_fraction * (flow + KELVIN_OFFSET) / max(flow - outdoor_c, min_lift_k)
                heat_kwh += heat * dt_h
                elec_kwh += heat * dt_h / cop
                u_air = a_ao * outdoor_c + fh * heat + fs * solar_kw + gains / _W_PER_KW
                b_air = u_air / air_capacity
                if two_node:
                    u_mass = a_mo * outdoor_c + (1.0 - fh) * heat + (1.0 - fs) * solar_kw
                    b_mass = u_mass / mass_capacity
                    mean_sum += (s_aa * air + s_am * mass + g_aa * b_air + g_am * b_mass) / dt_h
                    air, mass = (
                        p_aa * air + p_am * mass + s_aa * b_air + s_am * b_mass,
                        p_ma * air + p_mm * mass + s_ma * b_air + s_mm * b_mass,
                    )
                else:
                    mean_sum += (s_aa * air + g_aa * b_air) / dt_h
                    air = p_aa * air + s_aa * b_air
                    mass = air
            heat_out[index] = heat_kwh
            elec_out[index] = elec_kwh
            mean_out[index] = mean_sum / n_sub
        return Trajectory(
            heat_kwh=np.array(heat_out),
            electricity_kwh=np.array(elec_out),
            mean_air_temp_c=np.array(mean_out),
            end_air_temp_c=air,
            end_mass_temp_c=mass,
        )
