"""The plant as the planner sees it: closed-loop dynamics that are affine in the mode choices.

Between its clip points the heat pump's own controller is linear in the air temperature
(``Q = ff(T_o, target) + g (target - T_air)``, see :mod:`hpsteer.thermal.controller`), and the
building is linear (:mod:`hpsteer.thermal.building`). Over one sub-step of length ``dt`` with the
controller evaluated at the sub-step's start (exactly as :meth:`hpsteer.thermal.Plant.step` does)::

    x_{k+1} = Φ x_k + Ψ C⁻¹ (u₀ + b_h Q_k),      Q_k = ff_m + g (target_m - e_airᵀ x_k)
            = A_cl x_k + d_m,                     A_cl = Φ - g Ψ C⁻¹ b_h e_airᵀ

so over a slot of ``n`` sub-steps, for mode ``m``::

    x_{t+1}        = A x_t + d_{t,m}              (A = A_clⁿ, the same for every slot and mode)
    mean air_t     = pᵀ x_t + q_{t,m}
    heat_t (kWh)   = hᵀ x_t + r_{t,m}
    electricity_t  = hᵀ (x_t - x̄_t) / COP_{t,mid} + (hᵀ x̄_t + r_{t,m}) / COP_{t,m}

with ``x̄`` the trajectory in mid throughout and ``COP_{t,m}`` the heat pump's COP at the heating
curve's flow temperature for that slot's
outdoor temperature and mode's target. The simplifications against the plant: the controller's
clip at zero and at capacity is ignored (heat may come out slightly negative when a setback meets a
warm house, or above capacity in a hard frost), and the COP is frozen per slot and mode instead of
following the flow the heat asks for. The planner optimizes this model; the schedule it returns is
judged on the real plant by :func:`hpsteer.optimizer.problem.evaluate`.

Everything is computed with numpy over all slots at once (no Python loop over slots except the few
scalar curve evaluations per slot and mode), in about a millisecond for 192 slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.optimizer.problem import FloatArray, PlanningProblem
from hpsteer.thermal.building import transition

__all__ = ["MODES", "LinearPlanModel", "linear_model"]

MODES: tuple[Mode, ...] = (Mode.MIN, Mode.MID, Mode.MAX)
"""Mode order of every per-mode axis in this package (index 0, 1, 2)."""
_MID = 1


@dataclass(frozen=True, slots=True)
class LinearPlanModel:
    """Affine closed-loop model of one problem; shapes: nx states, n slots, 3 modes."""

    a: FloatArray  # (nx, nx) slot transition
    d: FloatArray  # (n, 3, nx) slot input per mode
    p: FloatArray  # (nx,) mean air from state
    q: FloatArray  # (n, 3) mean air constant per mode
    e_state: FloatArray  # (n, nx) electricity kWh from state
    e_mode: FloatArray  # (n, 3) electricity kWh constant per mode
    x0: FloatArray  # (nx,)
    terminal: FloatArray  # (nx,) EUR per K of end state (see linear_model)
    terminal_offset_eur: float = 0.0

    def end_state(self, mode_index: np.ndarray) -> FloatArray:
        """The state after the last slot for mode indices (n,) in MODES order."""
        x = self.x0.copy()
        d = self.d[np.arange(self.slots), mode_index]
        for t in range(self.slots):
            x = self.a @ x + d[t]
        return x

    def terminal_eur(self, end: FloatArray) -> float:
        """The terminal term of an end state (0 for the end state of mid throughout)."""
        return float(self.terminal @ end + self.terminal_offset_eur)

    @property
    def slots(self) -> int:
        return int(self.d.shape[0])

    @property
    def states(self) -> int:
        return int(self.a.shape[0])

    def simulate(self, mode_index: np.ndarray) -> tuple[FloatArray, FloatArray]:
        """Mean air (°C) and electricity (kWh) per slot for mode indices (n,) in MODES order."""
        n = self.slots
        x = self.x0.copy()
        air = np.empty(n)
        elec = np.empty(n)
        rows = np.arange(n)
        d = self.d[rows, mode_index]
        q = self.q[rows, mode_index]
        e_mode = self.e_mode[rows, mode_index]
        for t in range(n):
            air[t] = self.p @ x + q[t]
            elec[t] = self.e_state[t] @ x + e_mode[t]
            x = self.a @ x + d[t]
        return air, elec


def linear_model(problem: PlanningProblem, *, terminal_value: bool = True) -> LinearPlanModel:
    """The closed-loop linear model of ``problem``'s plant over its slots.

    With ``terminal_value`` the objective values the heat stored at the end of the horizon, so a
    plan does not coast into the end (a setback in the last hours looks free to a finite
    horizon, and a re-plan then pays to reheat): heat above the end state of mid throughout,
    Σ capacity_i (x_end,i - x̄_end,i) kWh, is worth the cheapest price of the horizon's last 24 h
    (floored at 0) per kWh of heat at mid's COP in the last slot, and heat below it costs as
    much: the least it would cost to put back, so hoarding heat is never rewarded. ``terminal``
    holds that as EUR per K of end state, ``terminal_offset_eur`` makes it zero at x̄_end.
    Measured on SE3/SE4 2023 backtests (4 weeks, 3 houses; forecast / perfect-model savings):
    no terminal value 12.53 / 13.29 %, the horizon's mean price 12.94 / 13.26 %, the last day's
    cheapest price 12.91 / 13.73 % (the planner before the window search: 12.92 / 13.13 %).
    """
    plant = problem.plant
    building, controller, curve = plant.building, plant.controller, plant.controller.curve
    n_sub = max(1, math.ceil(problem.slot_hours * 60.0 / plant.substep_minutes - 1e-9))
    dt = problem.slot_hours / n_sub
    tr = transition(building, dt)
    nx = 2 if building.two_node else 1
    phi, psi, gamma = tr.phi[:nx, :nx], tr.psi[:nx, :nx], tr.gamma[:nx, :nx]
    caps = np.array(
        [building.air_capacity_kwh_per_k]
        + ([building.mass_capacity_kwh_per_k] if building.mass_capacity_kwh_per_k else [])
    )
    gain = controller.room_gain_kw_per_k
    n = problem.slots
    outdoor = np.asarray(problem.outdoor_temp_c, dtype=np.float64)
    solar = np.asarray(problem.solar_irradiance_w_per_m2, dtype=np.float64)
    gains_w = (
        np.full(n, plant.internal_gains_w)
        if problem.internal_gains_w is None
        else np.asarray(problem.internal_gains_w, dtype=np.float64)
    )
    # Node inputs without heat (n, nx) and per kW of heat (nx,): node_inputs_kw is affine.
    u_air0, u_mass0 = building.node_inputs_kw(0.0, 0.0, 0.0, 0.0)
    u_air1, u_mass1 = building.node_inputs_kw(1.0, 0.0, 0.0, 0.0)
    b_heat = (np.array([u_air1 - u_air0, u_mass1 - u_mass0])[:nx]) / caps
    # node_inputs_kw is elementwise affine in its inputs: one vectorised call for every slot.
    u_air, u_mass = building.node_inputs_kw(0.0, outdoor, solar, gains_w)  # type: ignore[arg-type]  # arrays broadcast
    u0 = np.stack([np.broadcast_to(u_air, (n,)), np.broadcast_to(u_mass, (n,))], axis=1)[:, :nx]
    u0 = u0 / caps  # (n, nx)

    # Feedforward + g * target per slot and mode (the controller's heat at air = 0 °C), and COP:
    # scalar curve evaluations once per distinct outdoor temperature (hourly weather repeats).
    distinct, where = np.unique(outdoor, return_inverse=True)
    drive_d = np.empty((len(distinct), 3))
    cop_d = np.empty((len(distinct), 3))
    hp = plant.heat_pump
    for i, o in enumerate(distinct.tolist()):
        for j, mode in enumerate(MODES):
            target = problem.setpoint_c + mode.setpoint_offset_k
            drive_d[i, j] = controller.feedforward_kw(o, target) + gain * target
            cop_d[i, j] = float(hp.cop(o, curve.flow_temp_c(o, target)))
    drive = drive_d[where.reshape(-1)]
    cop = cop_d[where.reshape(-1)]

    e_air = np.zeros(nx)
    e_air[0] = 1.0
    k_vec = psi @ b_heat  # state change per kW over a sub-step
    a_cl = phi - gain * np.outer(k_vec, e_air)
    # Per sub-step: x' = a_cl x + c,  c = psi u0 + k_vec * drive;  mean = (psi0 x + gamma0 b)/dt,
    # b = u0 + b_heat (drive - g air);  heat = drive - g air.
    psi0, gamma0 = psi[0], gamma[0]
    mean_x = (psi0 - gain * (gamma0 @ b_heat) * e_air) / dt  # (nx,)
    a_pow = np.eye(nx)
    a_total = np.eye(nx)
    p = np.zeros(nx)
    h = np.zeros(nx)
    # Accumulate constants with the powers: x_k = A_cl^k x_t + S_k c, S_k = sum_{i<k} A_cl^i.
    s_k = np.zeros((nx, nx))
    q_c = np.zeros(nx)  # coefficient on c in the mean-air sum
    h_c = np.zeros(nx)  # coefficient on c in the heat sum
    for _ in range(n_sub):
        p += mean_x @ a_pow
        h += -gain * dt * (e_air @ a_pow)
        q_c += mean_x @ s_k
        h_c += -gain * dt * (e_air @ s_k)
        s_k = s_k + a_pow
        a_pow = a_cl @ a_pow
    a_total = a_pow
    # Constant per slot and mode: c = psi u0 + k_vec drive (n, 3, nx).
    c = (u0 @ psi.T)[:, None, :] + drive[:, :, None] * k_vec[None, None, :]
    d = c @ s_k.T
    # Mean air's own constant per sub-step: gamma0 (u0 + b_heat drive) / dt, n_sub times.
    mean_const = (u0 @ gamma0)[:, None] + drive * float(gamma0 @ b_heat)
    q = (c @ q_c + mean_const * n_sub / dt) / n_sub
    p = p / n_sub
    heat_const = c @ h_c + drive * dt * n_sub
    x0 = np.array([problem.initial_air_temp_c, problem.initial_mass_temp_c][:nx])
    # Heat = hᵀ x + r_m is a difference of two large terms (g * target vs g * air): split it
    # around the mid trajectory so that only the small deviation uses the mid COP.
    x_ref = np.empty((n, nx))
    x = x0.copy()
    for t in range(n):
        x_ref[t] = x
        x = a_total @ x + d[t, _MID]
    h_ref = x_ref @ h
    e_state = np.outer(1.0 / cop[:, _MID], h)
    e_mode = (heat_const + h_ref[:, None]) / cop - (h_ref / cop[:, _MID])[:, None]
    terminal = np.zeros(nx)
    offset = 0.0
    if terminal_value:
        last_day = problem.prices_eur_per_mwh[-problem.slots_per_day() :]
        cheapest_eur_per_kwh = max(0.0, float(np.min(last_day))) / 1000.0
        eur_per_kwh_heat = cheapest_eur_per_kwh / cop[-1, _MID]
        terminal = -eur_per_kwh_heat * caps
        offset = -float(terminal @ x)  # x: the end state of mid throughout
    return LinearPlanModel(
        a=a_total,
        d=d,
        p=p,
        q=q,
        e_state=e_state,
        e_mode=e_mode,
        x0=x0,
        terminal=terminal,
        terminal_offset_eur=offset,
    )
