"""A building as a resistance-capacitance network, stepped exactly for piecewise-constant inputs.

Two nodes: the air node ``a`` (room air, furniture, light internal surfaces) and, for a 2R2C model,
the mass node ``m`` (envelope, slab, heavy walls). Temperatures in °C, time in hours, capacities in
kWh/K, conductances in W/K (divided by 1000 to give kW/K), powers in kW::

    C_a dT_a/dt = H_ao (T_o - T_a) + H_am (T_m - T_a) + f_h Q + f_s S + G
    C_m dT_m/dt = H_mo (T_o - T_m) + H_am (T_a - T_m) + (1 - f_h) Q + (1 - f_s) S

``Q`` is the heat the emitters deliver, ``f_h`` the share of it that reaches the air node
(radiators: mostly air; floor heating: mostly slab), ``S = irradiance * aperture`` the solar gain
with ``f_s`` its air share, and ``G`` the internal gains (people, appliances), all on the air node.
A 1R1C model has only the first line (no ``H_am`` term; all heat and sun go to the air).

In matrix form ``x' = A x + b`` with ``A = C⁻¹ K`` (``K`` symmetric, negative definite when the
building loses heat to the outdoors at all) and ``b = C⁻¹ u``. For inputs constant over a step of
``h`` hours the solution is exact::

    x(h)      = Φ x(0) + Ψ b,              Φ = e^{Ah},  Ψ = ∫₀ʰ e^{As} ds
    mean x    = (Ψ x(0) + Γ b) / h,        Γ = ∫₀ʰ ∫₀ˢ e^{Au} du ds

computed once per (model, h) from the eigen-decomposition of the symmetric ``C^{-1/2} K C^{-1/2}``
(real, negative eigenvalues λ): ``Φ, Ψ, Γ = C^{-1/2} V diag(e^{λh}, (e^{λh}-1)/λ,
(e^{λh}-1-λh)/λ²) Vᵀ C^{1/2}``. For 1R1C the same formulas with the scalar λ = -H_ao / C_a.

All stepping functions take arrays of shape (n,) and step n candidate states in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from hpsteer.thermal._checks import (
    require_fraction,
    require_non_negative,
    require_positive,
)

__all__ = ["FloatArray", "RCModel", "Transition", "transition"]

FloatArray = npt.NDArray[np.float64]
_W_PER_KW = 1000.0


@dataclass(frozen=True, slots=True)
class RCModel:
    """A 1R1C (``mass_capacity_kwh_per_k`` None) or 2R2C building.

    ``heat_loss_w_per_k`` (derived) is the steady-state loss: ``H_ao + H_am H_mo / (H_am + H_mo)``.
    """

    air_capacity_kwh_per_k: float
    air_outdoor_conductance_w_per_k: float
    mass_capacity_kwh_per_k: float | None = None
    air_mass_conductance_w_per_k: float | None = None
    mass_outdoor_conductance_w_per_k: float = 0.0
    heat_to_air_fraction: float = 1.0
    solar_aperture_m2: float = 0.0
    solar_to_air_fraction: float = 0.5

    def __post_init__(self) -> None:
        require_positive("air_capacity_kwh_per_k", self.air_capacity_kwh_per_k)
        require_non_negative(
            "air_outdoor_conductance_w_per_k", self.air_outdoor_conductance_w_per_k
        )
        require_fraction("heat_to_air_fraction", self.heat_to_air_fraction)
        require_non_negative("solar_aperture_m2", self.solar_aperture_m2)
        require_fraction("solar_to_air_fraction", self.solar_to_air_fraction)
        require_non_negative(
            "mass_outdoor_conductance_w_per_k", self.mass_outdoor_conductance_w_per_k
        )
        if (self.mass_capacity_kwh_per_k is None) != (self.air_mass_conductance_w_per_k is None):
            raise ValueError(
                "a 2R2C model needs both mass_capacity_kwh_per_k and air_mass_conductance_w_per_k"
            )
        if (
            self.mass_capacity_kwh_per_k is not None
            and self.air_mass_conductance_w_per_k is not None
        ):
            require_positive("mass_capacity_kwh_per_k", self.mass_capacity_kwh_per_k)
            require_positive("air_mass_conductance_w_per_k", self.air_mass_conductance_w_per_k)
        else:
            if self.mass_outdoor_conductance_w_per_k != 0.0:
                raise ValueError(
                    "mass_outdoor_conductance_w_per_k needs a mass node (1R1C has none)"
                )
            if self.heat_to_air_fraction != 1.0:
                raise ValueError("heat_to_air_fraction must be 1 in a 1R1C model (no mass node)")
        if self.heat_loss_w_per_k <= 0:
            raise ValueError(
                "air_outdoor_conductance_w_per_k and mass_outdoor_conductance_w_per_k are both "
                "zero: a building that loses no heat has no steady state"
            )

    @property
    def two_node(self) -> bool:
        return self.mass_capacity_kwh_per_k is not None

    @property
    def heat_loss_w_per_k(self) -> float:
        """Steady-state transmission + ventilation loss, air to outdoors, in W/K."""
        h_am = self.air_mass_conductance_w_per_k
        h_mo = self.mass_outdoor_conductance_w_per_k
        series = 0.0 if h_am is None or h_mo == 0.0 else h_am * h_mo / (h_am + h_mo)
        return self.air_outdoor_conductance_w_per_k + series

    @property
    def total_capacity_kwh_per_k(self) -> float:
        return self.air_capacity_kwh_per_k + (self.mass_capacity_kwh_per_k or 0.0)

    def step(
        self,
        air_temp_c: FloatArray,
        mass_temp_c: FloatArray,
        *,
        heat_kw: FloatArray | float,
        outdoor_temp_c: float,
        solar_irradiance_w_per_m2: float,
        internal_gains_w: float,
        duration_h: float,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Advance ``duration_h`` with constant inputs: (air, mass, mean air over the step).

        ``heat_kw`` may differ per state (shape (n,)) or be one number. For 1R1C the mass array
        is ignored and the returned mass temperature equals the air temperature.
        """
        tr = transition(self, duration_h)
        u_air, u_mass = self.node_inputs_kw(
            heat_kw, outdoor_temp_c, solar_irradiance_w_per_m2, internal_gains_w
        )
        b_air = u_air / self.air_capacity_kwh_per_k
        if not self.two_node:
            phi, psi, gamma = tr.phi[0, 0], tr.psi[0, 0], tr.gamma[0, 0]
            air = phi * air_temp_c + psi * b_air
            mean = (psi * air_temp_c + gamma * b_air) / duration_h
            return air, air.copy(), mean
        assert self.mass_capacity_kwh_per_k is not None  # two_node
        b_mass = u_mass / self.mass_capacity_kwh_per_k
        p, s, g = tr.phi, tr.psi, tr.gamma
        air = p[0, 0] * air_temp_c + p[0, 1] * mass_temp_c + s[0, 0] * b_air + s[0, 1] * b_mass
        mass = p[1, 0] * air_temp_c + p[1, 1] * mass_temp_c + s[1, 0] * b_air + s[1, 1] * b_mass
        mean = (
            s[0, 0] * air_temp_c + s[0, 1] * mass_temp_c + g[0, 0] * b_air + g[0, 1] * b_mass
        ) / duration_h
        return air, mass, mean

    def node_inputs_kw(
        self,
        heat_kw: FloatArray | float,
        outdoor_temp_c: float,
        solar_irradiance_w_per_m2: float,
        internal_gains_w: float,
    ) -> tuple[FloatArray, FloatArray]:
        """The vector ``u`` (kW): what drives the air node and the mass node."""
        heat = np.asarray(heat_kw, dtype=np.float64)
        solar_kw = solar_irradiance_w_per_m2 * self.solar_aperture_m2 / _W_PER_KW
        fs = self.solar_to_air_fraction if self.two_node else 1.0
        fh = self.heat_to_air_fraction
        u_air = (
            self.air_outdoor_conductance_w_per_k / _W_PER_KW * outdoor_temp_c
            + fh * heat
            + fs * solar_kw
            + internal_gains_w / _W_PER_KW
        )
        u_mass = (
            self.mass_outdoor_conductance_w_per_k / _W_PER_KW * outdoor_temp_c
            + (1.0 - fh) * heat
            + (1.0 - fs) * solar_kw
        )
        return u_air, u_mass

    def equilibrium(
        self,
        *,
        heat_kw: float,
        outdoor_temp_c: float,
        solar_irradiance_w_per_m2: float,
        internal_gains_w: float,
    ) -> tuple[float, float]:
        """The steady state ``K x + u = 0`` for constant inputs: (air, mass) in °C."""
        u_air, u_mass = self.node_inputs_kw(
            heat_kw, outdoor_temp_c, solar_irradiance_w_per_m2, internal_gains_w
        )
        k = _conductance_matrix_kw_per_k(self)
        if not self.two_node:
            air = float(u_air) / -k[0, 0]
            return air, air
        x = np.linalg.solve(-k, np.array([float(u_air), float(u_mass)]))
        return float(x[0]), float(x[1])


@dataclass(frozen=True, slots=True)
class Transition:
    """Φ, Ψ, Γ of the module docstring for one model and one step length (2x2; 1x1 in [0, 0])."""

    phi: FloatArray
    psi: FloatArray
    gamma: FloatArray


def _conductance_matrix_kw_per_k(model: RCModel) -> FloatArray:
    h_ao = model.air_outdoor_conductance_w_per_k / _W_PER_KW
    if not model.two_node:
        return np.array([[-h_ao]])
    assert model.air_mass_conductance_w_per_k is not None  # two_node
    h_am = model.air_mass_conductance_w_per_k / _W_PER_KW
    h_mo = model.mass_outdoor_conductance_w_per_k / _W_PER_KW
    return np.array([[-h_ao - h_am, h_am], [h_am, -h_mo - h_am]])


@lru_cache(maxsize=256)
def transition(model: RCModel, duration_h: float) -> Transition:
    """Φ, Ψ, Γ for ``duration_h`` (cached: a planner steps the same length thousands of times)."""
    require_positive("duration_h", duration_h)
    k = _conductance_matrix_kw_per_k(model)
    caps = np.array(
        [model.air_capacity_kwh_per_k]
        + ([model.mass_capacity_kwh_per_k] if model.mass_capacity_kwh_per_k is not None else [])
    )
    c_half = np.sqrt(caps)
    sym = k / np.outer(c_half, c_half)
    lam, vec = np.linalg.eigh(sym)
    lh = lam * duration_h
    exp_lh = np.exp(lh)
    # λ < 0 strictly for a building that loses heat; the series guard handles tiny |λh|.
    small = np.abs(lh) < 1e-8
    psi_diag = np.where(small, duration_h, (exp_lh - 1.0) / np.where(small, 1.0, lam))
    gamma_diag = np.where(
        small,
        duration_h**2 / 2.0,
        (exp_lh - 1.0 - lh) / np.where(small, 1.0, lam**2),
    )

    def back(diag: FloatArray) -> FloatArray:
        inner: FloatArray = (vec * diag) @ vec.T
        return inner * np.outer(1.0 / c_half, c_half)

    return Transition(phi=back(exp_lh), psi=back(psi_diag), gamma=back(gamma_diag))
