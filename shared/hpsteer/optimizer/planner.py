"""The OR-Tools planner: a block MILP on the closed-loop linear model, guided by its LP relaxation.

Data (per problem): slots t = 0..n-1 of ``slot_hours``; price π_t (EUR/kWh); the affine model of
:mod:`.linear_model` (A, d_{t,m}, p, q_{t,m}, e_t, f_{t,m}, x_0); comfort band [lo, hi] and its
penalty c_K (EUR per K·h); switch penalty c_s; minimum dwell D slots; at most N changes per 24 h
window from the start; the modes the device exposes. Decision blocks b = 0..B-1 start at slot
start_b: ``block_slots`` slots each over the first 24 h, ``tail_block_slots`` after (a coarser
tail), counted from the plan's start, or with ``anchored_blocks`` on a grid anchored to absolute
time (:func:`block_starts`: the first block starts at the plan's start and may be shorter, so
successive re-plans share their block boundaries); the physics stays per slot.

Variables: y_{b,m} ∈ {0,1} (mode m in block b), s_{b,m} ∈ [0,1] (mode m starts at block b),
X_b ∈ R^nx (air and envelope temperature at block b's start; inside a block the slot state is
affine in X_b and y_b, see :class:`_Condensed`), u_t, o_t ≥ 0 (K under / over the band).

Constraints:
  (1) Σ_m y_{b,m} = 1; y_{b,m} = 0 for modes the device does not expose.
  (2) X_0 = the measured state; X_{b+1} = A_b X_b + Σ_m D_{b,m} y_{b,m}.
  (3) u_t ≥ lo - air_t(X_b, y_b);  o_t ≥ air_t(X_b, y_b) - hi  (a row is left out where no
      schedule can leave the band on that side: it could never bind).
  (4) s_{b,m} ≥ y_{b,m} - y_{b-1,m}, with y_{-1} the current mode.
  (5) dwell: y_{b',m} ≥ s_{b,m} for every later block b' starting before start_b + D.
  (6) Σ_{b: start_b in day k} Σ_m s_{b,m} ≤ N for each 24 h window k.

Objective (EUR): Σ_t π_t electricity_t + c_K slot_hours Σ_t (u_t + o_t) + c_s Σ_{b,m} s_{b,m}
+ the terminal value of the end state (:func:`.linear_model.linear_model`: heat left in the house
at the end is worth what it would cost to put back, so a plan does not coast into the end).

Solution, all on this model: (i) the LP relaxation (HiGHS through pywraplp; the condensed form
has ~80 equality rows instead of ~400 and builds in ~8 ms) gives the lower bound and fractional
modes; (ii) two seeds, the LP's mean offset rounded to the nearest mode (repaired to keep the
rules) and "current mode throughout", each go through a best-first local search over short
block-segment moves, then (iii) exact window re-solves (:func:`_window_search`): all blocks but a
window are fixed to the incumbent and the window's best pattern is found by costing every
pattern at once in numpy (block responses superpose; energy is linear, so only the comfort of
the slots the window can push out of the band is recomputed), first windows of 12 blocks over
their patterns of at most 3 constant pieces (729; they move a preheat or a setback by many
blocks), then windows of 4 blocks over all 81 patterns; (iv) optionally, HiGHS solves the MILP
for ``improve_time_limit_s`` with the incumbent's objective as cutoff. The gap reported is
(incumbent - LP bound) / incumbent: a proven gap, usually a few per cent because fractional modes
act as intermediate setpoint offsets that the linear model rewards.

Measured on benchmarks/planner.py (18 plans of 192 slots, against HiGHS's proven optimum of the
same model): the local search alone ended up to 1.9 % above the optimum (mean 0.7 %) in 54 ms;
with the window re-solves the worst is 0.3 % (mean 0.03 %) in a median 45 ms, on blocks counted
from each plan's start. On the anchored grid (the benchmark's plans start at 23:00 UTC, so their
tail's 2 h blocks move by an hour and gain a 1 h block at each end) the worst is 0.76 % (mean
0.15 %; the worst are floor-heated houses, whose optimum moves three changes by one block at
once, a 4-piece window pattern); windows of 12 blocks over 4 pieces (4,689 patterns) bring it to
0.29 % (mean 0.07 %) but took 1.6-1.9 times as long on a loaded machine. So the anchored grid
is not the default yet, although it is better in use: on the 90-day backtests (60-minute slots,
all archetypes) it saved 11.37 % instead of 11.00 % on SE3 2023 and 13.13 % instead of 11.83 % on
SE4 (comfort 0.37 and 0.006 K·h/day), and with command adoption it cut the simulated week's
command writes from 53.8 to 29.3 and Cloud Tasks operations from 46.6 to 21.0 per device-day
(``benchmarks.cloud_cost``: $0.0216 -> $0.0184 per device-month). Turning it on needs a search
that reaches the anchored grid's optimum within the planner benchmark's 0.5 % and 50 ms.
Tried and dropped: pairs of far-apart segment moves (top 48 single moves paired;
nothing the windows missed), windows of 6 blocks over all 729 patterns (same gaps, slower), 18- or
24-block windows first (worse local optima), windows straight from the seeds without the local
search (worst 3.7 %).
HiGHS on the MILP alone needs 1-13 s to prove optimality for 36 blocks; pywraplp's SetHint
crashes the process with HiGHS, and SCIP with a hint finds nothing in 100 ms.

The returned schedule always keeps the dwell and daily-change rules (checked by
:func:`rule_violations`, else :class:`~hpsteer.errors.InfeasiblePlan`).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

from hpsteer.domain.actions import Mode
from hpsteer.errors import InfeasiblePlan
from hpsteer.optimizer.linear_model import MODES, LinearPlanModel, linear_model
from hpsteer.optimizer.problem import PlanningProblem

__all__ = [
    "OrToolsPlanner",
    "PlanResult",
    "block_starts",
    "model_objective_eur",
    "rule_violations",
    "solve_exact",
]

IntArray = np.ndarray


@dataclass(frozen=True, slots=True)
class PlanResult:
    modes: tuple[Mode, ...]
    objective_eur: float
    """The planner model's objective of ``modes`` (not :func:`evaluate`'s)."""
    bound_eur: float
    gap: float
    """(objective - bound) / |objective|: proven relative gap."""
    solve_ms: float
    solver: str
    termination: str


def rule_violations(problem: PlanningProblem, modes: Sequence[Mode]) -> list[str]:
    """Every breach of the dwell and daily-change rules in ``modes`` (empty when it keeps them)."""
    found: list[str] = []
    n, dwell, per_day = len(modes), problem.min_dwell_slots, problem.slots_per_day()
    previous = problem.current_mode
    change_at = [t for t in range(n) if modes[t] != (modes[t - 1] if t else previous)]
    for i, t in enumerate(change_at):
        end = change_at[i + 1] if i + 1 < len(change_at) else n
        if end < n and end - t < dwell:
            found.append(f"{modes[t]} set at slot {t} held {end - t} slots < dwell {dwell}")
    for day in range(0, n, per_day):
        count = sum(1 for t in change_at if day <= t < day + per_day)
        if count > problem.max_changes_per_day:
            found.append(
                f"{count} changes in the day from slot {day} > {problem.max_changes_per_day}"
            )
    return found


def block_starts(
    problem: PlanningProblem, block_slots: int, tail_block_slots: int, *, anchored: bool = False
) -> list[int]:
    """Block start slots: ``block_slots`` long over the first day, ``tail_block_slots`` after;
    counted from the plan's start, or with ``anchored`` on a grid anchored to absolute time.

    Anchored, a block of L slots ends where the absolute slot index (UTC epoch over the slot
    length, the plan's start rounded to the nearest slot) is a multiple of L, so plans started at
    different times share their block boundaries and a re-plan does not move every planned change
    just because its grid moved. The first block starts at the plan's start and may be shorter.
    Blocks never straddle a 24 h window boundary (windows count from the start), so a change's
    window is its block's window; the blocks either side of such a boundary may be shorter too.
    """
    per_day = problem.slots_per_day()
    # Half a slot rounds up, always (round() would send x.5 to the even side, so plans 3 h apart
    # starting on the half hour could disagree on the grid's phase).
    offset = math.floor(problem.start_at.timestamp() / 3600.0 / problem.slot_hours + 0.5)
    starts, t = [], 0
    while t < problem.slots:
        starts.append(t)
        length = max(1, block_slots if t < per_day else tail_block_slots)
        end = ((offset + t) // length + 1) * length - offset if anchored else t + length
        boundary = (t // per_day + 1) * per_day
        t = min(end, boundary)
    return starts


def _expand(starts: Sequence[int], n: int, block_modes: Sequence[int]) -> tuple[Mode, ...]:
    lengths = np.diff([*starts, n])
    return tuple(
        MODES[m] for m, length in zip(block_modes, lengths, strict=True) for _ in range(length)
    )


def model_objective_eur(
    problem: PlanningProblem, model: LinearPlanModel, modes: Sequence[Mode]
) -> float:
    """The planner model's objective of a slot schedule (what the MILP minimizes)."""
    index = np.array([MODES.index(m) for m in modes])
    air, elec = model.simulate(index)
    under = np.maximum(0.0, problem.comfort_min_c - air)
    over = np.maximum(0.0, air - problem.comfort_max_c)
    from hpsteer.optimizer.problem import count_changes

    return float(
        problem.prices_eur_per_mwh @ elec / 1000.0
        + problem.comfort_penalty_eur_per_kh * problem.slot_hours * (under.sum() + over.sum())
        + problem.switch_penalty_eur * count_changes(modes, problem.current_mode)
        + model.terminal_eur(model.end_state(index))
    )


@dataclass(frozen=True, slots=True)
class _Condensed:
    """The model on block-start states: inside block b, ``x_t = A^(t-start_b) X_b + G_{t,m}``.

    Shapes: n slots, nb blocks, 3 modes, nx states. Slot air = air_x[t]·X_b + air_y[t, m], slot
    electricity = elec_x[t]·X_b + elec_y[t, m]; X_{b+1} = a_block[b] X_b + d_block[b, m].
    """

    block_of: np.ndarray  # (n,)
    air_x: np.ndarray  # (n, nx)
    air_y: np.ndarray  # (n, 3)
    elec_x: np.ndarray  # (n, nx)
    elec_y: np.ndarray  # (n, 3)
    a_block: np.ndarray  # (nb, nx, nx)
    d_block: np.ndarray  # (nb, 3, nx)


def _condense(model: LinearPlanModel, starts: Sequence[int]) -> _Condensed:
    n, nx, nb = model.slots, model.states, len(starts)
    bounds = [*starts, n]
    air_x = np.empty((n, nx))
    air_y = np.empty((n, 3))
    elec_x = np.empty((n, nx))
    elec_y = np.empty((n, 3))
    a_block = np.empty((nb, nx, nx))
    d_block = np.empty((nb, 3, nx))
    for b in range(nb):
        phi, g = np.eye(nx), np.zeros((3, nx))
        for t in range(bounds[b], bounds[b + 1]):
            air_x[t] = model.p @ phi
            air_y[t] = g @ model.p + model.q[t]
            elec_x[t] = model.e_state[t] @ phi
            elec_y[t] = g @ model.e_state[t] + model.e_mode[t]
            phi = model.a @ phi
            g = g @ model.a.T + model.d[t]
        a_block[b], d_block[b] = phi, g
    return _Condensed(
        block_of=np.repeat(np.arange(nb), np.diff(bounds)),
        air_x=air_x,
        air_y=air_y,
        elec_x=elec_x,
        elec_y=elec_y,
        a_block=a_block,
        d_block=d_block,
    )


class _Milp:
    """Constraints (1)-(6) in pywraplp on block-start states (the condensed form, cheap to build).

    The state is a variable only at block starts: inside block b the slot state is
    ``x_t = A^(t - start_b) X_b + Σ_m G_{t,m} y_{b,m}`` (mode constant over the block, Σ_m y = 1),
    so (2) is one row per block and state, and (3)'s slot rows read X_b and y_b directly. A
    comfort row is left out when no schedule, fractional or not, can reach that side of the band
    at that slot (``air_range``: the slot's lowest and highest air over every block's modes):
    its slack would be zero in every solution, so the optimum and the bound are unchanged.
    """

    def __init__(
        self,
        problem: PlanningProblem,
        model: LinearPlanModel,
        starts: Sequence[int],
        allowed: Sequence[Mode],
        *,
        integer: bool,
        air_range: tuple[np.ndarray, np.ndarray] | None = None,
        condensed: _Condensed | None = None,
    ) -> None:
        solver = pywraplp.Solver.CreateSolver("HIGHS")
        if solver is None:  # pragma: no cover - the pinned wheel ships HiGHS
            raise InfeasiblePlan("OR-Tools has no HiGHS solver in this build")
        solver.SuppressOutput()
        self.solver = solver
        n, nx, big = model.slots, model.states, solver.infinity()
        bounds = [*starts, n]
        nb = len(starts)
        self.block_of = np.repeat(np.arange(nb), np.diff(bounds))
        cond = condensed if condensed is not None else _condense(model, starts)
        air_x, air_y, elec_x, elec_y = cond.air_x, cond.air_y, cond.elec_x, cond.elec_y
        a_block, d_block = cond.a_block, cond.d_block
        is_allowed = [MODES[m] in allowed for m in range(3)]
        y = [
            [
                solver.IntVar(0, 1 if is_allowed[m] else 0, "")
                if integer
                else solver.NumVar(0, 1 if is_allowed[m] else 0, "")
                for m in range(3)
            ]
            for _ in range(nb)
        ]
        s = [[solver.NumVar(0, 1, "") for _ in range(3)] for _ in range(nb)]
        x = [[solver.NumVar(-big, big, "") for _ in range(nx)] for _ in range(nb)]
        objective = solver.Objective()
        prices = problem.prices_eur_per_mwh / 1000.0
        comfort = problem.comfort_penalty_eur_per_kh * problem.slot_hours
        current = MODES.index(problem.current_mode)
        for b in range(nb):  # (1), (4)
            row = solver.Constraint(1, 1)
            for m in range(3):
                row.SetCoefficient(y[b][m], 1)
                start = solver.Constraint(-float(m == current) if b == 0 else 0, big)
                start.SetCoefficient(s[b][m], 1)
                start.SetCoefficient(y[b][m], -1)
                if b:
                    start.SetCoefficient(y[b - 1][m], 1)
                objective.SetCoefficient(s[b][m], problem.switch_penalty_eur)
        for i in range(nx):  # (2) start
            x[0][i].SetBounds(float(model.x0[i]), float(model.x0[i]))
        for b in range(nb - 1):  # (2) X_{b+1} = A_b X_b + Σ_m D_{b,m} y_{b,m}
            for i in range(nx):
                row = solver.Constraint(0, 0)
                row.SetCoefficient(x[b + 1][i], 1)
                for j in range(nx):
                    row.SetCoefficient(x[b][j], -float(a_block[b, i, j]))
                for m in range(3):
                    if is_allowed[m]:
                        row.SetCoefficient(y[b][m], -float(d_block[b, m, i]))
        low_air, high_air = air_range if air_range is not None else (None, None)
        for t in range(n):  # (3) u + air ≥ lo ;  o - air ≥ -hi
            b = int(self.block_of[t])
            for side, needed in (
                (1.0, low_air is None or low_air[t] < problem.comfort_min_c),
                (-1.0, high_air is None or high_air[t] > problem.comfort_max_c),
            ):
                if not needed:
                    continue
                slack = solver.NumVar(0, big, "")
                objective.SetCoefficient(slack, comfort)
                row = solver.Constraint(
                    problem.comfort_min_c if side > 0 else -problem.comfort_max_c, big
                )
                row.SetCoefficient(slack, 1)
                for j in range(nx):
                    row.SetCoefficient(x[b][j], side * float(air_x[t, j]))
                for m in range(3):
                    if is_allowed[m]:
                        row.SetCoefficient(y[b][m], side * float(air_y[t, m]))
        block_x_cost = np.zeros((nb, nx))
        np.add.at(block_x_cost, self.block_of, prices[:, None] * elec_x)
        mode_cost = np.zeros((nb, 3))
        np.add.at(mode_cost, self.block_of, prices[:, None] * elec_y)
        # Terminal value of X_end = a_block[-1] X_{nb-1} + Σ_m d_block[-1, m] y_{nb-1, m}.
        block_x_cost[-1] += model.terminal @ a_block[-1]
        mode_cost[-1] += d_block[-1] @ model.terminal
        objective.SetOffset(model.terminal_offset_eur)
        for b in range(nb):
            for j in range(nx):
                objective.SetCoefficient(x[b][j], float(block_x_cost[b, j]))
            for m in range(3):
                objective.SetCoefficient(y[b][m], float(mode_cost[b, m]))
        for b in range(nb):  # (5)
            for later in range(b + 1, nb):
                if starts[later] >= starts[b] + problem.min_dwell_slots:
                    break
                for m in range(3):
                    row = solver.Constraint(0, big)
                    row.SetCoefficient(y[later][m], 1)
                    row.SetCoefficient(s[b][m], -1)
        per_day = problem.slots_per_day()
        for day in range(0, n, per_day):  # (6)
            row = solver.Constraint(-big, problem.max_changes_per_day)
            for b in range(nb):
                if day <= starts[b] < day + per_day:
                    for m in range(3):
                        row.SetCoefficient(s[b][m], 1)
        objective.SetMinimization()
        self.y = y

    def solve(self, time_limit_s: float, relative_gap: float, cutoff: float | None) -> int:
        self.solver.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        params = ["output_flag=false", f"mip_rel_gap={relative_gap}"]
        if cutoff is not None:
            params.append(f"objective_bound={cutoff}")
        self.solver.SetSolverSpecificParametersAsString("\n".join(params) + "\n")
        return int(self.solver.Solve())

    def fractional(self) -> np.ndarray:
        return np.array([[v.solution_value() for v in row] for row in self.y])


_STATUS = {
    pywraplp.Solver.OPTIMAL: "optimal",
    pywraplp.Solver.FEASIBLE: "feasible",
    pywraplp.Solver.INFEASIBLE: "infeasible",
    pywraplp.Solver.UNBOUNDED: "unbounded",
    pywraplp.Solver.ABNORMAL: "abnormal",
    pywraplp.Solver.NOT_SOLVED: "not_solved",
}


class _Responses:
    """Slot air and electricity as affine functions of block modes (superposition around mid)."""

    def __init__(
        self,
        problem: PlanningProblem,
        model: LinearPlanModel,
        starts: Sequence[int],
        condensed: _Condensed,
    ) -> None:
        n, nb, nx = model.slots, len(starts), model.states
        block_of = condensed.block_of
        mid = np.ones(n, dtype=int)
        self.air_mid, self.elec_mid = model.simulate(mid)
        # State deviation at the start of block c caused by block b in mode m (vs mid):
        # (nb + 1, nb, 3, nx), zero for c <= b.
        delta = condensed.d_block - condensed.d_block[:, 1:2, :]  # (nb, 3, nx)
        at_start = np.zeros((nb + 1, nb, 3, nx))
        for c in range(nb):
            at_start[c + 1] = at_start[c] @ condensed.a_block[c].T
            at_start[c + 1, c] += delta[c]
        per_slot = at_start[block_of]  # (n, nb, 3, nx)
        air = np.einsum("tx,tbmx->bmt", condensed.air_x, per_slot)
        elec = np.einsum("tx,tbmx->bmt", condensed.elec_x, per_slot)
        rows = np.arange(n)
        air[block_of, :, rows] += condensed.air_y - condensed.air_y[:, 1:2]
        elec[block_of, :, rows] += condensed.elec_y - condensed.elec_y[:, 1:2]
        self.air, self.elec = air, elec
        self.prices = problem.prices_eur_per_mwh / 1000.0
        self.problem = problem
        # Energy cost is linear: per block and mode (nb, 3) and of mid throughout, in EUR.
        # ... plus the terminal value of the end state (linear; zero for mid throughout).
        self.energy = elec @ self.prices + at_start[nb] @ model.terminal
        self.energy_mid = float(self.elec_mid @ self.prices)
        self.comfort_eur_per_k = problem.comfort_penalty_eur_per_kh * problem.slot_hours

    def comfort(self, air: np.ndarray) -> np.ndarray:
        """Comfort penalty (EUR) of rows of air trajectories (°C)."""
        pb = self.problem
        # K outside the band = max(0, |air - middle| - half the band's width).
        outside = np.abs(air - (pb.comfort_min_c + pb.comfort_max_c) / 2.0)
        outside -= (pb.comfort_max_c - pb.comfort_min_c) / 2.0
        np.maximum(outside, 0.0, out=outside)
        return np.asarray(self.comfort_eur_per_k * outside.sum(-1))

    def air_range(self, allowed: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest air per slot over every schedule of ``allowed`` modes (and mixes)."""
        offered = self.air[:, list(allowed), :]
        return (
            self.air_mid + offered.min(axis=1).sum(0),
            self.air_mid + offered.max(axis=1).sum(0),
        )

    def costs(self, air: np.ndarray, elec: np.ndarray) -> np.ndarray:
        """Energy + comfort cost of rows of air/elec trajectories (wear excluded)."""
        pb = self.problem
        discomfort = np.maximum(0.0, pb.comfort_min_c - air) + np.maximum(
            0.0, air - pb.comfort_max_c
        )
        return np.asarray(
            elec @ self.prices + pb.comfort_penalty_eur_per_kh * pb.slot_hours * discomfort.sum(-1)
        )


class _BlockRules:
    """The dwell and daily-change rules and the wear cost on block modes (no slot expansion).

    Modes only change at block starts, so a block schedule's changes are its slot schedule's.
    """

    def __init__(self, problem: PlanningProblem, starts: Sequence[int]) -> None:
        per_day = problem.slots_per_day()
        self.starts = list(starts)
        self.day = [start // per_day for start in starts]
        self.current = MODES.index(problem.current_mode)
        self.dwell = problem.min_dwell_slots
        self.max_changes = problem.max_changes_per_day
        self.switch = problem.switch_penalty_eur

    def changes(self, modes: Sequence[int]) -> list[int]:
        previous, found = self.current, []
        for b, m in enumerate(modes):
            if m != previous:
                found.append(b)
            previous = m
        return found

    def keeps(self, modes: Sequence[int]) -> bool:
        changed = self.changes(modes)
        for first, then in itertools.pairwise(changed):
            if self.starts[then] - self.starts[first] < self.dwell:
                return False
        per_day: dict[int, int] = {}
        for b in changed:
            per_day[self.day[b]] = per_day.get(self.day[b], 0) + 1
        return all(count <= self.max_changes for count in per_day.values())

    def repair(self, modes: Sequence[int]) -> list[int]:
        """``modes`` with every change that would break a rule dropped (greedy, left to right)."""
        fixed, previous, last_change = [], self.current, None
        per_day: dict[int, int] = {}
        for b, m in enumerate(modes):
            if m != previous and (
                (last_change is not None and self.starts[b] - last_change < self.dwell)
                or per_day.get(self.day[b], 0) >= self.max_changes
            ):
                m = previous
            if m != previous:
                last_change = self.starts[b]
                per_day[self.day[b]] = per_day.get(self.day[b], 0) + 1
            fixed.append(m)
            previous = m
        return fixed

    def wear(self, modes: Sequence[int]) -> float:
        return self.switch * len(self.changes(modes))


def _local_search(
    responses: _Responses,
    rules: _BlockRules,
    allowed_index: Sequence[int],
    initial: list[int],
    max_segment: int,
) -> tuple[list[int], float]:
    """Best-first moves 'set blocks b..b+k-1 to mode m' that keep the rules; (modes, objective).

    Every candidate's energy and comfort cost is exact on the model (superposition); the wear
    and the rules are checked on block modes in cost order until an improving move keeps them.
    """
    nb = responses.air.shape[0]
    current = list(initial)
    rows = np.arange(nb)
    # Slots no schedule can take out of the band cost no comfort for any move: left out.
    low, high = responses.air_range(allowed_index)
    pb = responses.problem
    risky = np.flatnonzero((low < pb.comfort_min_c) | (high > pb.comfort_max_c))
    block_air = responses.air[:, :, risky]
    n = len(risky)
    cum_air = np.concatenate([np.zeros((1, 3, n)), np.cumsum(block_air, 0)])
    cum_energy = np.concatenate([np.zeros((1, 3)), np.cumsum(responses.energy, 0)])
    moves = [
        (b, k, m)
        for k in range(1, max_segment + 1)
        for m in allowed_index
        for b in range(0, nb - k + 1)
    ]

    def trajectories(modes: Sequence[int]) -> tuple[np.ndarray, float]:
        air = responses.air_mid[risky] + block_air[rows, modes].sum(0)
        return air, responses.energy_mid + float(responses.energy[rows, modes].sum())

    air, energy = trajectories(current)
    best = float(responses.comfort(air)) + energy + rules.wear(current)
    for _ in range(400):
        cum_cur_air = np.concatenate([np.zeros((1, n)), np.cumsum(block_air[rows, current], 0)])
        cum_cur_energy = np.concatenate([[0.0], np.cumsum(responses.energy[rows, current])])
        cand_air: list[np.ndarray] = []
        cand_energy: list[np.ndarray] = []
        for k in range(1, max_segment + 1):
            first = np.arange(0, nb - k + 1)
            base_air = air - (cum_cur_air[first + k] - cum_cur_air[first])
            base_energy = energy - (cum_cur_energy[first + k] - cum_cur_energy[first])
            for m in allowed_index:
                cand_air.append(base_air + cum_air[first + k, m] - cum_air[first, m])
                cand_energy.append(base_energy + cum_energy[first + k, m] - cum_energy[first, m])
        costs = responses.comfort(np.concatenate(cand_air)) + np.concatenate(cand_energy)
        improved = False
        for index in np.argsort(costs):
            if costs[index] >= best + rules.switch * 2 - 1e-9:
                break  # a move adds at most two changes' wear, and may remove as many
            b, k, m = moves[index]
            trial = list(current)
            trial[b : b + k] = [m] * k
            if trial == current:
                continue
            value = float(costs[index]) + rules.wear(trial)
            if value < best - 1e-9 and rules.keeps(trial):
                current, best, improved = trial, value, True
                air, energy = trajectories(current)
                break
        if not improved:
            break
    return current, best


@functools.lru_cache(maxsize=32)
def window_patterns(
    allowed_index: tuple[int, ...], window_blocks: int, max_pieces: int | None = None
) -> np.ndarray:
    """Mode patterns (C, k) a window may take: every one, or those of at most ``max_pieces``
    constant pieces (a long window then stays cheap: 12 blocks, 3 modes, 3 pieces: 729)."""
    k = window_blocks
    if max_pieces is not None and max_pieces < 0:  # every pattern constant on pairs of blocks
        found = [
            [m for m in p for _ in range(2)][:k]
            for p in itertools.product(allowed_index, repeat=(k + 1) // 2)
        ]
    elif max_pieces is None or max_pieces >= k:
        found = [list(p) for p in itertools.product(allowed_index, repeat=k)]
    else:
        found = [
            [
                m
                for m, length in zip(modes, np.diff([0, *cuts, k]), strict=True)
                for _ in range(length)
            ]
            for pieces in range(1, max_pieces + 1)
            for cuts in itertools.combinations(range(1, k), pieces - 1)
            for modes in itertools.product(allowed_index, repeat=pieces)
            if all(a != b for a, b in itertools.pairwise(modes))
        ]
    patterns = np.array(found, dtype=np.int64)
    patterns.setflags(write=False)  # shared by the cache
    return patterns


def _window_search(
    responses: _Responses,
    rules: _BlockRules,
    allowed_index: Sequence[int],
    initial: list[int],
    window_blocks: int,
    max_sweeps: int = 4,
    max_pieces: int | None = None,
    stride: int | None = None,
) -> tuple[list[int], float]:
    """Exact re-solves of windows of blocks around the incumbent; (modes, objective).

    Every block outside a window of ``window_blocks`` consecutive blocks is fixed to the
    incumbent and the window's best modes are found exactly on the model by enumerating its
    |modes|^k schedules at once in numpy (superposition of block responses; only slots from the
    window's start on are recomputed), with the wear and the rules checked on every candidate.
    The window slides by half its length, sweeps repeat until one improves nothing. A schedule is
    only replaced by a cheaper one that keeps the rules, so the incumbent never gets worse.
    """
    nb = responses.air.shape[0]
    k = max(1, min(window_blocks, nb))
    current = np.array(initial)
    rows = np.arange(nb)
    combos = window_patterns(tuple(allowed_index), k, max_pieces)  # (C, k)
    low, high = responses.air_range(allowed_index)
    pb = responses.problem
    risky = np.flatnonzero((low < pb.comfort_min_c) | (high > pb.comfort_max_c))
    allowed = list(allowed_index)
    # K outside the band = max(0, |air - middle| - half_band).
    middle = (pb.comfort_min_c + pb.comfort_max_c) / 2.0
    half_band = (pb.comfort_max_c - pb.comfort_min_c) / 2.0
    # (C, 3k): a pattern as one-hot rows, so a window's responses sum in one matrix product.
    one_hot = np.zeros((len(combos), k, 3))
    np.put_along_axis(one_hot, combos[:, :, None], 1.0, axis=2)
    one_hot = one_hot.reshape(len(combos), 3 * k)
    # Rule data on blocks: the day of each block and the pairs closer than the dwell.
    starts = np.array(rules.starts)
    day = np.array(rules.day)
    days = np.unique(day)
    day_onehot = (day[:, None] == days[None, :]).astype(np.float64)
    conflicts = [
        (j, (starts[j:] - starts[:-j] < rules.dwell)) for j in range(1, nb) if rules.dwell > 1
    ]
    conflicts = [(j, mask) for j, mask in conflicts if mask.any()]

    energy_flat = responses.energy.reshape(-1)
    air_risky = responses.air[:, :, risky]  # (nb, 3, cols)
    zeros = np.zeros((1, len(risky)))
    cum_low = np.concatenate([zeros, np.cumsum(air_risky[:, allowed].min(1), 0)])
    cum_high = np.concatenate([zeros, np.cumsum(air_risky[:, allowed].max(1), 0)])
    first, last = combos[:, 0], combos[:, -1]
    inner = (combos[:, 1:] != combos[:, :-1]).astype(np.float64)  # (C, k - 1)
    inner_count = inner.sum(1)
    inner_by_start: dict[int, np.ndarray] = {}

    def inner_days(w: int) -> np.ndarray:
        if w not in inner_by_start:
            inner_by_start[w] = inner @ day_onehot[w + 1 : w + k]
        return inner_by_start[w]

    def totals(modes: np.ndarray) -> tuple[np.ndarray, float]:
        air = responses.air_mid + responses.air[rows, modes].sum(0)
        return air, responses.energy_mid + float(responses.energy[rows, modes].sum())

    def objective(modes: np.ndarray) -> float:
        air, energy = totals(modes)
        return float(responses.comfort(air)) + energy + rules.wear(modes.tolist())

    def changes_of(modes: np.ndarray) -> np.ndarray:
        return np.asarray(modes != np.concatenate([[rules.current], modes[:-1]]))

    best = objective(current)
    air_total, energy_total = totals(current)
    changed_now = changes_of(current)
    window_starts = list(range(0, max(1, nb - k + 1), max(1, stride or k // 2)))
    if window_starts[-1] != nb - k:
        window_starts.append(max(0, nb - k))
    clean = set()  # windows re-solved since the incumbent last changed
    for _ in range(max_sweeps):
        improved = False
        for w in window_starts:
            if w in clean:
                continue
            # Only slots where some pattern of this window (the rest fixed) leaves the band can
            # differ in comfort between the candidates; the energy cost is linear.
            inside = current[w : w + k]
            blocks = w + np.arange(k)
            window_air = air_risky[w : w + k]  # (k, 3, cols)
            base_air = air_total[risky] - window_air[np.arange(k), inside].sum(0)
            keep = (base_air + cum_low[w + k] - cum_low[w] < pb.comfort_min_c) | (
                base_air + cum_high[w + k] - cum_high[w] > pb.comfort_max_c
            )
            base_energy = energy_total - float(responses.energy[blocks, inside].sum())
            cost = base_energy + one_hot @ energy_flat[3 * w : 3 * (w + k)]
            if keep.any():
                air = one_hot @ window_air[:, :, keep].reshape(3 * k, -1)
                air += base_air[keep] - middle
                np.abs(air, out=air)
                air -= half_band
                np.maximum(air, 0.0, out=air)
                cost += responses.comfort_eur_per_k * air.sum(1)
            # Changes inside the window are the pattern's; at its edges they depend on the
            # neighbours; every other change is the incumbent's.
            left = int(current[w - 1]) if w else rules.current
            at_left = first != left
            fixed = changed_now.copy()
            fixed[w : w + k + 1] = False
            per_day = fixed @ day_onehot + at_left[:, None] * day_onehot[w] + inner_days(w)
            count = fixed.sum() + inner_count + at_left
            if w + k < nb:
                at_right = last != current[w + k]
                per_day += at_right[:, None] * day_onehot[w + k]
                count = count + at_right
            cost += rules.switch * count
            ok = (per_day <= rules.max_changes).all(1)
            if conflicts:  # dwell longer than a block: check whole schedules
                full = np.broadcast_to(current, (len(combos), nb)).copy()
                full[:, w : w + k] = combos
                full_changed = full != np.concatenate(
                    [np.full((len(combos), 1), rules.current), full[:, :-1]], axis=1
                )
                for j, mask in conflicts:
                    ok &= ~(full_changed[:, :-j] & full_changed[:, j:] & mask).any(1)
            cost = np.where(ok, cost, np.inf)
            pick = int(np.argmin(cost))
            clean.add(w)
            if not np.isfinite(cost[pick]) or np.array_equal(combos[pick], inside):
                continue
            trial = current.copy()
            trial[w : w + k] = combos[pick]
            # The slots before the window cost the same for every candidate: re-cost in full.
            value = objective(trial)
            if value < best - 1e-9:
                current, best, improved = trial, value, True
                air_total, energy_total = totals(current)
                changed_now = changes_of(current)
                clean = {w}
        if not improved:
            break
    return current.tolist(), best


class OrToolsPlanner:
    """LP-guided block planner (see the module docstring); ``plan`` keeps the Planner protocol."""

    def __init__(
        self,
        *,
        time_limit_s: float = 0.2,
        relative_gap: float = 0.005,
        block_slots: int = 4,
        tail_block_slots: int = 8,
        improve_time_limit_s: float = 0.0,
        max_segment_blocks: int = 2,
        windows: Sequence[tuple[int, int | None, int]] = ((12, 3, 4), (4, None, 2)),
        window_rounds: int = 1,
        refined_seeds: int = 2,
        modes: Sequence[Mode] = MODES,
        anchored_blocks: bool = False,
    ) -> None:
        if (
            time_limit_s <= 0
            or not 0 <= relative_gap < 1
            or block_slots < 1
            or tail_block_slots < 1
        ):
            raise ValueError("time_limit_s > 0, 0 <= relative_gap < 1, block lengths >= 1")
        if not modes:
            raise ValueError("a device exposes at least one mode")
        self.time_limit_s = time_limit_s
        self.relative_gap = relative_gap
        self.block_slots = block_slots
        self.tail_block_slots = tail_block_slots
        self.improve_time_limit_s = improve_time_limit_s
        self.max_segment_blocks = max_segment_blocks
        self.windows = tuple(windows)
        self.window_rounds = window_rounds
        self.refined_seeds = refined_seeds
        self.modes = tuple(modes)
        self.anchored_blocks = anchored_blocks

    @property
    def name(self) -> str:
        return "ortools"

    def plan(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        return self.solve(problem).modes

    def starts(self, problem: PlanningProblem) -> list[int]:
        return block_starts(
            problem, self.block_slots, self.tail_block_slots, anchored=self.anchored_blocks
        )

    def solve(self, problem: PlanningProblem) -> PlanResult:
        began = time.perf_counter()
        model = linear_model(problem)
        starts = self.starts(problem)
        allowed = [MODES.index(m) for m in self.modes]
        condensed = _condense(model, starts)
        responses = _Responses(problem, model, starts, condensed)
        air_range = responses.air_range(allowed)
        lp = _Milp(
            problem,
            model,
            starts,
            self.modes,
            integer=False,
            air_range=air_range,
            condensed=condensed,
        )
        status = lp.solve(self.time_limit_s, self.relative_gap, None)
        if status == pywraplp.Solver.INFEASIBLE:
            raise InfeasiblePlan(_explain_infeasible(problem, self.modes))
        # Seeds: the LP's mean offset rounded to the nearest mode, repaired to keep the rules
        # (changes that break one are dropped), and the current mode throughout (or each offered
        # mode throughout). Measured on the benchmark: adding the LP's likeliest mode as a third
        # seed narrows the worst gap little and costs ~20 ms; dropping "current" widens it.
        # Fallback: an LP that did not finish (its time limit on a busy machine) gives no bound
        # and no seed; the search then starts from every offered mode throughout, and the plan
        # reports its gap as unknown (NaN) rather than failing the device.
        seeds: list[list[int]] = []
        lp_finished = status == pywraplp.Solver.OPTIMAL
        bound = lp.solver.Objective().Value() if lp_finished else float("nan")
        if lp_finished:
            fractional = lp.fractional()
            offsets = np.array([m.setpoint_offset_k for m in MODES])
            nearest = np.abs((fractional @ offsets)[:, None] - offsets[None, :])
            nearest[:, [m for m in range(3) if m not in allowed]] = np.inf
            seeds.append(np.argmin(nearest, axis=1).tolist())
        else:
            seeds.extend([m] * len(starts) for m in allowed)
        if problem.current_mode in self.modes:
            seeds.append([MODES.index(problem.current_mode)] * len(starts))
        else:
            seeds.extend([m] * len(starts) for m in allowed)
        rules = _BlockRules(problem, starts)
        candidates = []
        tried: list[list[int]] = []
        searched: list[tuple[float, list[int]]] = []
        for raw in seeds:
            seed = rules.repair(raw)
            if not rules.keeps(seed) or seed in tried or not set(seed) <= set(allowed):
                continue
            tried.append(seed)
            if self.max_segment_blocks > 0:
                found, value = _local_search(
                    responses, rules, allowed, seed, self.max_segment_blocks
                )
            else:
                found, value = seed, float("inf")
            if all(found != other for _, other in searched):
                searched.append((value, found))
        searched.sort(key=lambda c: c[0])
        for value, found in searched[: self.refined_seeds]:
            for _ in range(self.window_rounds):
                before = value
                for blocks, pieces, stride in self.windows:
                    found, value = _window_search(
                        responses, rules, allowed, found, blocks, max_pieces=pieces, stride=stride
                    )
                if value >= before - 1e-9:
                    break
            candidates.append((value, _expand(starts, problem.slots, found)))
        termination, solver_name = "lp_guided_local_search", "highs_lp+local_search"
        if not lp_finished:
            termination = f"local_search_without_lp_bound (lp {_STATUS.get(status, status)})"
        remaining = self.time_limit_s - (time.perf_counter() - began)
        if self.improve_time_limit_s > 0 and remaining > 0:
            cutoff = min((c for c, _ in candidates), default=None)
            milp = _Milp(
                problem,
                model,
                starts,
                self.modes,
                integer=True,
                air_range=air_range,
                condensed=condensed,
            )
            status = milp.solve(
                min(remaining, self.improve_time_limit_s), self.relative_gap, cutoff
            )
            if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
                picked = np.argmax(milp.fractional(), axis=1).tolist()
                modes = _expand(starts, problem.slots, picked)
                candidates.append((model_objective_eur(problem, model, modes), modes))
                best_bound = milp.solver.Objective().BestBound()
                bound = best_bound if math.isnan(bound) else max(bound, best_bound)
            solver_name = "highs_lp+local_search+highs_mip"
            termination = f"mip_{_STATUS.get(status, str(status))}"
        if not candidates:
            raise InfeasiblePlan(_explain_infeasible(problem, self.modes))
        objective, modes = min(candidates, key=lambda c: c[0])
        broken = rule_violations(problem, modes)
        if broken:  # pragma: no cover - the search only accepts rule-keeping moves
            raise InfeasiblePlan("; ".join(broken))
        return PlanResult(
            modes=modes,
            objective_eur=objective,
            bound_eur=bound,
            gap=(
                float("nan")
                if math.isnan(bound)
                else max(0.0, (objective - bound) / max(abs(objective), 1e-9))
            ),
            solve_ms=(time.perf_counter() - began) * 1000.0,
            solver=solver_name,
            termination=termination,
        )


def solve_exact(
    problem: PlanningProblem,
    planner: OrToolsPlanner,
    time_limit_s: float = 60.0,
    relative_gap: float = 1e-6,
) -> PlanResult:
    """The planner's model solved by HiGHS's branch and bound alone (the benchmark's reference)."""
    began = time.perf_counter()
    model = linear_model(problem)
    starts = planner.starts(problem)
    milp = _Milp(problem, model, starts, planner.modes, integer=True)
    status = milp.solve(time_limit_s, relative_gap, None)
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise InfeasiblePlan(f"the MILP ended {_STATUS.get(status, status)}")
    modes = _expand(starts, problem.slots, np.argmax(milp.fractional(), axis=1).tolist())
    objective = model_objective_eur(problem, model, modes)
    bound = milp.solver.Objective().BestBound()
    return PlanResult(
        modes=modes,
        objective_eur=objective,
        bound_eur=bound,
        gap=max(0.0, (objective - bound) / max(abs(objective), 1e-9)),
        solve_ms=(time.perf_counter() - began) * 1000.0,
        solver="highs_mip",
        termination=_STATUS.get(status, str(status)),
    )


def _explain_infeasible(problem: PlanningProblem, modes: Sequence[Mode]) -> str:
    if problem.current_mode not in modes and problem.max_changes_per_day == 0:
        return (
            f"the device is in {problem.current_mode}, which it does not offer among "
            f"{[str(m) for m in modes]}, and max_changes_per_day is 0: no schedule can leave it"
        )
    return "no schedule keeps the dwell and daily-change rules with the modes offered"
