"""Building + heat pump + controller + gains: the one step the planner and the simulator share.

:meth:`Plant.step` integrates one price slot in sub-steps (``substep_minutes``, 5 by default). In
each sub-step the controller is evaluated on the states at its start (it is nonlinear: a max(0, ·)
and the capacity cap), its heat is held constant, and the building is stepped exactly
(:mod:`hpsteer.thermal.building`). Electricity per sub-step is ``Q h / COP(T_o, T_flow)`` with
``T_flow`` the flow temperature the emitters need for that heat
(:meth:`HeatingCurve.flow_for_heat_c`: at the target this is the curve's flow). Everything is
vectorised over the n states; there is no Python loop over states, only over the few sub-steps.

:meth:`Plant.simulate` steps *one* state over many slots with the same sub-steps in plain floats
(:mod:`hpsteer.thermal.trajectory`): what judging a schedule needs, without numpy's per-call cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpsteer.thermal._checks import require_finite, require_non_negative, require_positive
from hpsteer.thermal.building import FloatArray, RCModel
from hpsteer.thermal.controller import Controller
from hpsteer.thermal.heat_pump import HeatPump
from hpsteer.thermal.trajectory import Trajectory, simulate

__all__ = ["Plant", "SlotConditions", "StepResult"]


@dataclass(frozen=True, slots=True)
class SlotConditions:
    """What holds over one slot. ``internal_gains_w`` None means the plant's own default."""

    duration_h: float
    outdoor_temp_c: float
    setpoint_c: float
    solar_irradiance_w_per_m2: float = 0.0
    internal_gains_w: float | None = None

    def __post_init__(self) -> None:
        require_positive("duration_h", self.duration_h)
        require_finite("outdoor_temp_c", self.outdoor_temp_c)
        require_finite("setpoint_c", self.setpoint_c)
        require_non_negative("solar_irradiance_w_per_m2", self.solar_irradiance_w_per_m2)
        if self.internal_gains_w is not None:
            require_non_negative("internal_gains_w", self.internal_gains_w)


@dataclass(frozen=True, slots=True)
class StepResult:
    """Per state, shape (n,): the state after the slot and what the slot cost."""

    air_temp_c: FloatArray
    mass_temp_c: FloatArray
    heat_kwh: FloatArray
    electricity_kwh: FloatArray
    mean_air_temp_c: FloatArray


@dataclass(frozen=True, slots=True)
class Plant:
    building: RCModel
    heat_pump: HeatPump
    controller: Controller
    internal_gains_w: float = 0.0
    substep_minutes: float = 5.0

    def __post_init__(self) -> None:
        require_non_negative("internal_gains_w", self.internal_gains_w)
        require_positive("substep_minutes", self.substep_minutes)

    def _gains_w(self, conditions: SlotConditions) -> float:
        if conditions.internal_gains_w is None:
            return self.internal_gains_w
        return conditions.internal_gains_w

    def step(
        self,
        air_temp_c: FloatArray,
        mass_temp_c: FloatArray,
        offset_k: float,
        conditions: SlotConditions,
    ) -> StepResult:
        """Advance every state (arrays of shape (n,)) over one slot at setpoint + offset_k."""
        air = np.asarray(air_temp_c, dtype=np.float64)
        mass = np.asarray(mass_temp_c, dtype=np.float64)
        n_sub = max(1, math.ceil(conditions.duration_h * 60.0 / self.substep_minutes - 1e-9))
        dt_h = conditions.duration_h / n_sub
        target = conditions.setpoint_c + offset_k
        outdoor = conditions.outdoor_temp_c
        feedforward = self.controller.feedforward_kw(outdoor, target)
        capacity = self.controller.capacity_kw(self.heat_pump, outdoor, target)
        gains = self._gains_w(conditions)
        heat_kwh = np.zeros_like(air)
        elec_kwh = np.zeros_like(air)
        mean_sum = np.zeros_like(air)
        curve = self.controller.curve
        for _ in range(n_sub):
            heat = self.controller.heat_kw(
                air, target_c=target, feedforward_kw=feedforward, capacity_kw=capacity
            )
            cop = self.heat_pump.cop(outdoor, curve.flow_for_heat_c(heat, air))
            heat_kwh += heat * dt_h
            elec_kwh += heat * dt_h / cop
            air, mass, mean = self.building.step(
                air,
                mass,
                heat_kw=heat,
                outdoor_temp_c=outdoor,
                solar_irradiance_w_per_m2=conditions.solar_irradiance_w_per_m2,
                internal_gains_w=gains,
                duration_h=dt_h,
            )
            mean_sum += mean
        return StepResult(
            air_temp_c=air,
            mass_temp_c=mass,
            heat_kwh=heat_kwh,
            electricity_kwh=elec_kwh,
            mean_air_temp_c=mean_sum / n_sub,
        )

    def simulate(
        self,
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
        """One state over ``len(offsets_k)`` consecutive slots: slot ``i`` is :meth:`step` under
        ``SlotConditions(duration_h, outdoor_temp_c[i], setpoint_c, solar_irradiance_w_per_m2[i],
        internal_gains_w[i])`` at offset ``offsets_k[i]``, computed on floats (same result to
        rounding, same errors; see :mod:`hpsteer.thermal.trajectory`)."""
        return simulate(
            self,
            air_temp_c,
            mass_temp_c,
            offsets_k,
            duration_h=duration_h,
            outdoor_temp_c=outdoor_temp_c,
            setpoint_c=setpoint_c,
            solar_irradiance_w_per_m2=solar_irradiance_w_per_m2,
            internal_gains_w=internal_gains_w,
        )

    def steady_state(self, conditions: SlotConditions, offset_k: float) -> tuple[float, float]:
        """(air, mass) in °C at equilibrium under constant conditions and a constant offset.

        The building's equilibrium is affine in the heat: ``T_air = T0 + k Q``. The controller's
        demand ``ff + g (target - T_air)`` is decreasing in T_air, so the fixed point is the
        unconstrained solution ``Q = (ff + g (target - T0)) / (1 + g k)`` clipped to [0, Q_max].
        """
        target = conditions.setpoint_c + offset_k
        outdoor = conditions.outdoor_temp_c
        kwargs = {
            "outdoor_temp_c": outdoor,
            "solar_irradiance_w_per_m2": conditions.solar_irradiance_w_per_m2,
            "internal_gains_w": self._gains_w(conditions),
        }
        air0, _ = self.building.equilibrium(heat_kw=0.0, **kwargs)
        air1, _ = self.building.equilibrium(heat_kw=1.0, **kwargs)
        k = air1 - air0
        gain = self.controller.room_gain_kw_per_k
        feedforward = self.controller.feedforward_kw(outdoor, target)
        capacity = self.controller.capacity_kw(self.heat_pump, outdoor, target)
        heat = (feedforward + gain * (target - air0)) / (1.0 + gain * k)
        heat = min(max(heat, 0.0), capacity)
        return self.building.equilibrium(heat_kw=heat, **kwargs)
