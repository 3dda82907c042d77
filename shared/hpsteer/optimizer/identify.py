"""Identify the house from what telemetry measures: a bank of candidate plants scored on history.

The planner starts from a nominal plant (an archetype, or a device's registered parameters) that is
never the house exactly, and what costs most is an error in the few parameters that set where the
air settles in each mode under the heat pump's own control. :class:`PlantIdentifier` runs a bank of
candidates alongside the house: the nominal plant with its conductances to the outdoors scaled by
θ_H in :data:`LOSS_SCALES`, the controller's room gain (how strongly it reacts to the room sensor,
unknown per product) scaled by θ_g in :data:`ROOM_GAIN_SCALES`, and its internal gains shifted by
ΔG in :data:`GAIN_OFFSETS_W` (people and appliances, unknown per household): 9 * 7 * 5 = 315
candidates. Each slot, every candidate is stepped from the measured air temperature (and its own
estimate of the mass temperature, which no sensor measures) with the applied mode and the slot's
outdoor temperature and irradiance, and is scored by its squared error on the air temperature
measured at the slot's end; the scores add up over all history. :meth:`PlantIdentifier.best`
hands back the best-scoring candidate, each of its factors refined by a parabola through the
neighbouring scores on its own axis, and that candidate's mass estimate.

Measured on the tuning backtests (SE3/SE4 2023, seed 0, all archetypes; share of the
perfect-model bound): a loss factor alone 86 / 88 % over 90 days; with the room gain 96 / 98 %;
with the internal gains too 98 / 98 %, the houses' mean indoor temperatures then within 0.05 K of
the bound's. Over 30-day windows of seeds 0 and 1 the internal gains moved the share by -2.6 to
+4.8 points (mean +0.7); they are kept because the 90-day seasons come out more even across
houses. Rounding the measured air to 0.1 K (a coarse sensor) cost 0.3 points on SE3 over 30
days. Held out, DK1 2024 over 90 days (run once, after the choice): 97 %, against 83 % with the
loss factor alone.

It needs only what a device reports or what is stored anyway: the indoor temperature at slot
boundaries, the mode applied over each slot, and the slot's outdoor temperature and irradiance
(as measured, or as the weather was observed). :func:`identify` replays a stored history in one
call, which is how production's optimize uses it before each plan
(:mod:`hpsteer.services.plan_inputs`); the backtest runs the bank online
(:mod:`hpsteer.optimizer.backtest.simulate`). A slot without a measurement at
its start or its end is stepped from each candidate's own prediction and adds nothing to the
scores.

All candidates step at once in numpy, exactly as :meth:`hpsteer.thermal.Plant.step` steps each of
them (the same sub-steps, controller clip and exact building transition; the heat-free drive
computed once per slot, only the controller's heat per sub-step): about 0.17 ms per hourly slot
for the 315 candidates (0.36 ms before the drive was taken out of the sub-steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from hpsteer.thermal import Plant, SlotConditions
from hpsteer.thermal.building import transition

__all__ = [
    "GAIN_OFFSETS_W",
    "LOSS_SCALES",
    "ROOM_GAIN_SCALES",
    "Identified",
    "MeasuredSlot",
    "PlantIdentifier",
    "identify",
    "loss_scaled",
    "scaled_plant",
]

FloatArray = NDArray[np.float64]

LOSS_SCALES: tuple[float, ...] = tuple(round(0.6 + 0.1 * k, 1) for k in range(9))
"""Candidate factors θ_H on the nominal plant's conductances to the outdoors (0.6 ... 1.4)."""
ROOM_GAIN_SCALES: tuple[float, ...] = tuple(round(2.0 ** (k / 3.0), 3) for k in range(-3, 4))
"""Candidate factors θ_g on the controller's room gain, geometric from 0.5 to 2."""
GAIN_OFFSETS_W: tuple[float, ...] = (-150.0, -75.0, 0.0, 75.0, 150.0)
"""Candidate shifts ΔG of the internal gains, W (the result is floored at 0 W)."""


def loss_scaled(plant: Plant, scale: float) -> Plant:
    """``plant`` with its air-outdoor and mass-outdoor conductances times ``scale``."""
    b = plant.building
    return replace(
        plant,
        building=replace(
            b,
            air_outdoor_conductance_w_per_k=b.air_outdoor_conductance_w_per_k * scale,
            mass_outdoor_conductance_w_per_k=b.mass_outdoor_conductance_w_per_k * scale,
        ),
    )


def scaled_plant(
    plant: Plant, loss_scale: float, room_gain_scale: float, gain_offset_w: float = 0.0
) -> Plant:
    """``plant`` with its loss times ``loss_scale``, its room gain times ``room_gain_scale`` and
    ``gain_offset_w`` added to its internal gains (floored at 0 W)."""
    scaled = loss_scaled(plant, loss_scale)
    controller = replace(
        scaled.controller,
        room_gain_kw_per_k=scaled.controller.room_gain_kw_per_k * room_gain_scale,
    )
    return replace(
        scaled,
        controller=controller,
        internal_gains_w=max(0.0, scaled.internal_gains_w + gain_offset_w),
    )


@dataclass(frozen=True, slots=True)
class Identified:
    """The plant to plan on, its mass-temperature estimate now, and the factors found."""

    plant: Plant
    mass_temp_c: float
    loss_scale: float
    room_gain_scale: float
    gain_offset_w: float


@dataclass(frozen=True, slots=True)
class MeasuredSlot:
    """One slot of a device's history: air at its start and end (None: not measured), the mode's
    setpoint offset applied over it, and its conditions (outdoor, irradiance, setpoint)."""

    air_start_c: float | None
    offset_k: float
    conditions: SlotConditions
    air_end_c: float | None


def _refine(values: tuple[float, ...], scores: FloatArray, k: int, *, log: bool) -> float:
    """``values[k]`` moved to the vertex of the parabola through scores k-1, k, k+1 (if convex),
    at most half a grid step."""
    if not 0 < k < len(values) - 1:
        return values[k]
    left, centre, right = scores[k - 1], scores[k], scores[k + 1]
    curvature = left - 2.0 * centre + right
    if curvature <= 0:
        return values[k]
    shift = float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    if log:
        step = math.log(values[k + 1]) - math.log(values[k])
        return math.exp(math.log(values[k]) + step * shift)
    return values[k] + (values[k + 1] - values[k]) * shift


@dataclass(frozen=True, slots=True)
class _SubStep:
    """Every candidate's transition over one sub-step: ``phi`` by node pair (each (K,)),
    ``psi`` (K, nx, nx), and ``per_heat`` (``psi`` times where a kW of heat goes, per node)."""

    phi: tuple[tuple[FloatArray, ...], ...]
    psi: FloatArray
    per_heat: tuple[FloatArray, ...]


class PlantIdentifier:
    """θ_H, θ_g, ΔG and the mass temperature of a house from measured air (module docstring)."""

    def __init__(
        self,
        nominal: Plant,
        mass_temp_c: float,
        *,
        loss_scales: tuple[float, ...] = LOSS_SCALES,
        room_gain_scales: tuple[float, ...] = ROOM_GAIN_SCALES,
        gain_offsets_w: tuple[float, ...] = GAIN_OFFSETS_W,
    ) -> None:
        if 1.0 not in loss_scales or 1.0 not in room_gain_scales or 0.0 not in gain_offsets_w:
            raise ValueError("the candidates must include the nominal plant (factors 1, shift 0)")
        self.nominal = nominal
        self.loss_scales = tuple(loss_scales)
        self.room_gain_scales = tuple(room_gain_scales)
        self.gain_offsets_w = tuple(gain_offsets_w)
        self._shape = (len(loss_scales), len(room_gain_scales), len(gain_offsets_w))
        grid_loss, grid_gain, grid_offset = np.meshgrid(
            np.arange(len(loss_scales)), room_gain_scales, gain_offsets_w, indexing="ij"
        )
        self._of_loss = grid_loss.reshape(-1)
        self._room_gain = nominal.controller.room_gain_kw_per_k * grid_gain.reshape(-1)
        self._gains_kw = np.maximum(0.0, nominal.internal_gains_w + grid_offset.reshape(-1)) / 1e3
        self._buildings = [loss_scaled(nominal, s).building for s in loss_scales]
        building = nominal.building
        self._nx = 2 if building.two_node else 1
        self._caps = np.array(
            [building.air_capacity_kwh_per_k]
            + ([building.mass_capacity_kwh_per_k] if building.mass_capacity_kwh_per_k else [])
        )
        fh = building.heat_to_air_fraction
        self._heat_in = np.array([fh, 1.0 - fh])[: self._nx] / self._caps
        self._transitions: dict[float, _SubStep] = {}
        nominal_index = np.ravel_multi_index(
            (
                self.loss_scales.index(1.0),
                self.room_gain_scales.index(1.0),
                self.gain_offsets_w.index(0.0),
            ),
            self._shape,
        )
        self._nominal_index = int(nominal_index)
        self.mass = np.full(self.candidates, float(mass_temp_c))
        self.air = np.full(self.candidates, np.nan)
        self.score = np.zeros(self.candidates)
        self.scored_slots = 0

    @property
    def candidates(self) -> int:
        return len(self._of_loss)

    def _sub_step(self, dt_h: float) -> _SubStep:
        """Every candidate's sub-step of ``dt_h`` (cached per length)."""
        if dt_h not in self._transitions:
            nx = self._nx
            by_loss = [transition(b, dt_h) for b in self._buildings]
            phi = np.stack([t.phi[:nx, :nx] for t in by_loss])[self._of_loss]
            psi = np.stack([t.psi[:nx, :nx] for t in by_loss])[self._of_loss]
            per_heat = np.einsum("kij,j->ki", psi, self._heat_in)
            self._transitions[dt_h] = _SubStep(
                phi=tuple(tuple(phi[:, i, j].copy() for j in range(nx)) for i in range(nx)),
                psi=psi,
                per_heat=tuple(per_heat[:, i].copy() for i in range(nx)),
            )
        return self._transitions[dt_h]

    def step(
        self,
        air_temp_c: float | FloatArray,
        mass_temp_c: FloatArray,
        offset_k: float,
        conditions: SlotConditions,
    ) -> tuple[FloatArray, FloatArray]:
        """Every candidate over one slot from ``air_temp_c`` (one or per candidate) and its own
        mass: (air, mass), each (K,). The conditions' own internal gains, if given, are the
        nominal ones the candidates shift."""
        plant = self.nominal
        n_sub = max(1, math.ceil(conditions.duration_h * 60.0 / plant.substep_minutes - 1e-9))
        dt_h = conditions.duration_h / n_sub
        sub = self._sub_step(dt_h)
        target = conditions.setpoint_c + offset_k
        outdoor = conditions.outdoor_temp_c
        feedforward = plant.controller.feedforward_kw(outdoor, target)
        capacity = plant.controller.capacity_kw(plant.heat_pump, outdoor, target)
        gains_kw = self._gains_kw
        if conditions.internal_gains_w is not None:
            shift = conditions.internal_gains_w - plant.internal_gains_w
            gains_kw = np.maximum(0.0, gains_kw + shift / 1e3)
        solar = conditions.solar_irradiance_w_per_m2
        # Inputs without heat or internal gains, per loss scale, then per candidate.
        u0 = np.array(
            [b.node_inputs_kw(0.0, outdoor, solar, 0.0) for b in self._buildings], dtype=float
        )[:, : self._nx]
        b0 = (u0 / self._caps)[self._of_loss]  # (K, nx)
        b0[:, 0] += gains_kw / self._caps[0]
        # x' = phi x + psi (b0 + heat heat_in): the heat-free drive once per slot, the heat's
        # share per sub-step (the controller's heat follows the air).
        drive = np.einsum("kij,kj->ki", sub.psi, b0)
        air = np.full(self.candidates, 0.0) + air_temp_c
        if self._nx == 1:
            (phi_aa,), (heat_a,) = sub.phi[0], sub.per_heat
            for _ in range(n_sub):
                heat = np.minimum(
                    np.maximum(feedforward + self._room_gain * (target - air), 0.0), capacity
                )
                air = phi_aa * air + drive[:, 0] + heat * heat_a
            return air, air.copy()
        mass = np.asarray(mass_temp_c, dtype=np.float64)
        (phi_aa, phi_am), (phi_ma, phi_mm) = sub.phi
        heat_a, heat_m = sub.per_heat
        drive_a, drive_m = drive[:, 0].copy(), drive[:, 1].copy()
        for _ in range(n_sub):
            heat = np.minimum(
                np.maximum(feedforward + self._room_gain * (target - air), 0.0), capacity
            )
            air, mass = (
                phi_aa * air + phi_am * mass + drive_a + heat * heat_a,
                phi_ma * air + phi_mm * mass + drive_m + heat * heat_m,
            )
        return air, mass

    def update(
        self,
        air_temp_c: float | None,
        offset_k: float,
        conditions: SlotConditions,
        measured_air_c: float | None,
    ) -> None:
        """One slot: measured ``air_temp_c`` at its start, ``measured_air_c`` at its end (either
        None when not measured: the candidates then carry on from their own prediction, and the
        slot adds nothing to the scores)."""
        start: float | FloatArray = air_temp_c if air_temp_c is not None else self.air
        if air_temp_c is None and np.isnan(self.air).any():
            start = self.mass  # nothing measured yet: air taken equal to the mass estimate
        air, mass = self.step(start, self.mass, offset_k, conditions)
        if air_temp_c is not None and measured_air_c is not None:
            self.score += (air - measured_air_c) ** 2
            self.scored_slots += 1
        self.air, self.mass = air, mass

    def best(self) -> Identified:
        """The plant to plan on and its mass estimate (the nominal plant before any scored slot)."""
        if self.scored_slots == 0:
            k = self._nominal_index
            return Identified(self.nominal, float(self.mass[k]), 1.0, 1.0, 0.0)
        k = int(np.argmin(self.score))
        i, j, o = (int(v) for v in np.unravel_index(k, self._shape))
        scores = self.score.reshape(self._shape)
        loss = _refine(self.loss_scales, scores[:, j, o], i, log=False)
        gain = _refine(self.room_gain_scales, scores[i, :, o], j, log=True)
        offset = _refine(self.gain_offsets_w, scores[i, j, :], o, log=False)
        plant = scaled_plant(self.nominal, loss, gain, offset)
        return Identified(plant, float(self.mass[k]), loss, gain, offset)


def identify(nominal: Plant, history: Iterable[MeasuredSlot]) -> Identified:
    """Replay ``history`` (oldest first) through a fresh :class:`PlantIdentifier`.

    The candidates' mass starts at the nominal plant's steady state in the first slot's
    conditions and mode, shifted by how far the first measured air is from that steady state's
    air. An empty history is refused (:class:`ValueError`): there is nothing to start from.
    """
    slots = iter(history)
    first = next(slots, None)
    if first is None:
        raise ValueError("identify needs at least one slot of history")
    steady_air, steady_mass = nominal.steady_state(first.conditions, first.offset_k)
    shift = 0.0 if first.air_start_c is None else first.air_start_c - steady_air
    identifier = PlantIdentifier(nominal, steady_mass + shift)
    for slot in (first, *slots):
        identifier.update(slot.air_start_c, slot.offset_k, slot.conditions, slot.air_end_c)
    return identifier.best()
