"""The OR-Tools planner: a block MILP on the closed-loop linear model, guided by its LP relaxation.

Data (per problem): slots t = 0..n-1 of ``slot_hours``; price π_t (EUR/kWh); the affine model of
:mod:`.linear_model` (A, d_{t,m}, p, q_{t,m}, e_t, f_{t,m}, x_0); comfort band [lo, hi] and its
penalty c_K (EUR per K·h); switch penalty c_s; minimum dwell D slots; at most N changes per 24 h
window from the start; the modes the device exposes. Decision blocks b = 0..B-1 start at slot
start_b: ``block_slots`` slots each over the first 24 h, ``tail_block_slots`` after (a coarser
tail);
the physics stays per slot.

Variables: y_{b,m} ∈ {0,1} (mode m in block b), s_{b,m} ∈ [0,1] (mode m starts at block b),
x_t ∈ R^nx (air and envelope temperature at slot start), u_t, o_t ≥ 0 (K under / over the band).

Constraints:
  (1) Σ_m y_{b,m} = 1; y_{b,m} = 0 for modes the device does not expose.
  (2) x_0 = the measured state; x_{t+1} = A x_t + Σ_m d_{t,m} y_{b(t),m}.
  (3) u_t ≥ lo - (p·x_t + Σ_m q_{t,m} y_{b(t),m});  o_t ≥ p·x_t + Σ_m q_{t,m} y_{b(t),m} - hi.
  (4) s_{b,m} ≥ y_{b,m} - y_{b-1,m}, with y_{-1} the current mode.
  (5) dwell: y_{b',m} ≥ s_{b,m} for every later block b' starting before start_b + D.
  (6) Σ_{b: start_b in day k} Σ_m s_{b,m} ≤ N for each 24 h window k.

Objective (EUR): Σ_t π_t (e_t·x_t + Σ_m f_{t,m} y_{b(t),m}) + c_K slot_hours Σ_t (u_t + o_t)
+ c_s Σ_{b,m} s_{b,m}.

Solution: (i) the LP relaxation (HiGHS through pywraplp) gives the lower bound and fractional modes;
(ii) the LP's mean offset rounded to the nearest mode (repaired to keep the rules) and "current
mode throughout" seed a best-first local search over block-segment moves that keep (4)-(6), costed
exactly on the same model by superposition of precomputed block responses (numpy; the rules and
the wear are checked on block modes, never on expanded slots); (iii) optionally, HiGHS solves
the MILP for ``improve_time_limit_s`` with the incumbent's
objective as cutoff. The gap reported is (incumbent - LP bound) / incumbent: a proven gap, usually
a few per cent because fractional modes act as intermediate setpoint offsets that the linear
model rewards. Measured (see benchmarks/planner.py) before choosing: HiGHS on the MILP alone needs
1-13 s to prove optimality for 36 blocks; pywraplp's SetHint crashes the process with HiGHS, and
SCIP with a hint finds nothing in 100 ms, hence the cutoff and the local search.

The returned schedule always keeps the dwell and daily-change rules (checked by
:func:`rule_violations`, else :class:`~hpsteer.errors.InfeasiblePlan`).
"""

from __future__ import annotations

import itertools
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


def block_starts(problem: PlanningProblem, block_slots: int, tail_block_slots: int) -> list[int]:
    """Block start slots: ``block_slots`` long over the first day, ``tail_block_slots`` after.

    Blocks never straddle a 24 h window boundary, so a change's window is its block's window.
    """
    per_day = problem.slots_per_day()
    starts, t = [], 0
    while t < problem.slots:
        starts.append(t)
        length = block_slots if t < per_day else tail_block_slots
        boundary = (t // per_day + 1) * per_day
        t = min(t + max(1, length), boundary)
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
    )


class _Milp:
    """Constraints (1)-(6) in pywraplp, built with direct coefficient calls (cheap)."""

    def __init__(
        self,
        problem: PlanningProblem,
        model: LinearPlanModel,
        starts: Sequence[int],
        allowed: Sequence[Mode],
        *,
        integer: bool,
    ) -> None:
        solver = pywraplp.Solver.CreateSolver("HIGHS")
        if solver is None:  # pragma: no cover - the pinned wheel ships HiGHS
            raise InfeasiblePlan("OR-Tools has no HiGHS solver in this build")
        solver.SuppressOutput()
        self.solver = solver
        n, nx, big = model.slots, model.states, solver.infinity()
        bounds = [*starts, n]
        self.block_of = np.repeat(np.arange(len(starts)), np.diff(bounds))
        nb = len(starts)
        y = [
            [
                solver.IntVar(0, 1 if MODES[m] in allowed else 0, "")
                if integer
                else solver.NumVar(0, 1 if MODES[m] in allowed else 0, "")
                for m in range(3)
            ]
            for _ in range(nb)
        ]
        s = [[solver.NumVar(0, 1, "") for _ in range(3)] for _ in range(nb)]
        x = [[solver.NumVar(-big, big, "") for _ in range(nx)] for _ in range(n + 1)]
        under = [solver.NumVar(0, big, "") for _ in range(n)]
        over = [solver.NumVar(0, big, "") for _ in range(n)]
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
        mode_cost = np.zeros((nb, 3))
        for t in range(n):
            b = int(self.block_of[t])
            yb = y[b]
            for i in range(nx):  # (2)
                row = solver.Constraint(0, 0)
                row.SetCoefficient(x[t + 1][i], 1)
                for j in range(nx):
                    row.SetCoefficient(x[t][j], -float(model.a[i, j]))
                for m in range(3):
                    row.SetCoefficient(yb[m], -float(model.d[t, m, i]))
            # (3) u + p·x + q·y ≥ lo ;  o - p·x - q·y ≥ -hi
            low = solver.Constraint(problem.comfort_min_c, big)
            high = solver.Constraint(-problem.comfort_max_c, big)
            low.SetCoefficient(under[t], 1)
            high.SetCoefficient(over[t], 1)
            for j in range(nx):
                low.SetCoefficient(x[t][j], float(model.p[j]))
                high.SetCoefficient(x[t][j], -float(model.p[j]))
            for m in range(3):
                low.SetCoefficient(yb[m], float(model.q[t, m]))
                high.SetCoefficient(yb[m], -float(model.q[t, m]))
            for j in range(nx):
                objective.SetCoefficient(x[t][j], float(prices[t] * model.e_state[t, j]))
            mode_cost[b] += prices[t] * model.e_mode[t]
            objective.SetCoefficient(under[t], comfort)
            objective.SetCoefficient(over[t], comfort)
        for b in range(nb):
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

    def __init__(self, problem: PlanningProblem, model: LinearPlanModel, starts: Sequence[int]):
        n, nb = model.slots, len(starts)
        block_of = np.repeat(np.arange(nb), np.diff([*starts, n]))
        mid = np.ones(n, dtype=int)
        self.air_mid, self.elec_mid = model.simulate(mid)
        delta = model.d - model.d[:, 1:2, :]  # (n, 3, nx)
        state = np.zeros((nb, 3, model.states))
        air = np.zeros((nb, 3, n))
        elec = np.zeros((nb, 3, n))
        for t in range(n):
            air[:, :, t] = state @ model.p
            elec[:, :, t] = state @ model.e_state[t]
            b = block_of[t]
            air[b, :, t] += model.q[t] - model.q[t, 1]
            elec[b, :, t] += model.e_mode[t] - model.e_mode[t, 1]
            state = state @ model.a.T
            state[b] += delta[t]
        self.air, self.elec = air, elec
        self.prices = problem.prices_eur_per_mwh / 1000.0
        self.problem = problem

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
    nb, n = responses.air.shape[0], responses.air.shape[2]
    current = list(initial)
    rows = np.arange(nb)
    cum_air = np.concatenate([np.zeros((1, 3, n)), np.cumsum(responses.air, 0)])
    cum_elec = np.concatenate([np.zeros((1, 3, n)), np.cumsum(responses.elec, 0)])
    moves = [
        (b, k, m)
        for k in range(1, max_segment + 1)
        for m in allowed_index
        for b in range(0, nb - k + 1)
    ]

    def trajectories(modes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        air = responses.air_mid + responses.air[rows, modes].sum(0)
        elec = responses.elec_mid + responses.elec[rows, modes].sum(0)
        return air, elec

    air, elec = trajectories(current)
    best = float(responses.costs(air, elec)) + rules.wear(current)
    for _ in range(400):
        cur_air = responses.air[rows, current]  # (nb, n)
        cur_elec = responses.elec[rows, current]
        cum_cur_air = np.concatenate([np.zeros((1, n)), np.cumsum(cur_air, 0)])
        cum_cur_elec = np.concatenate([np.zeros((1, n)), np.cumsum(cur_elec, 0)])
        cand_air: list[np.ndarray] = []
        cand_elec: list[np.ndarray] = []
        for k in range(1, max_segment + 1):
            first = np.arange(0, nb - k + 1)
            base_air = air - (cum_cur_air[first + k] - cum_cur_air[first])
            base_elec = elec - (cum_cur_elec[first + k] - cum_cur_elec[first])
            for m in allowed_index:
                cand_air.append(base_air + cum_air[first + k, m] - cum_air[first, m])
                cand_elec.append(base_elec + cum_elec[first + k, m] - cum_elec[first, m])
        costs = responses.costs(np.concatenate(cand_air), np.concatenate(cand_elec))
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
                air, elec = trajectories(current)
                break
        if not improved:
            break
    return current, best


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
        max_segment_blocks: int = 4,
        modes: Sequence[Mode] = MODES,
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
        self.modes = tuple(modes)

    @property
    def name(self) -> str:
        return "ortools"

    def plan(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        return self.solve(problem).modes

    def starts(self, problem: PlanningProblem) -> list[int]:
        return block_starts(problem, self.block_slots, self.tail_block_slots)

    def solve(self, problem: PlanningProblem) -> PlanResult:
        began = time.perf_counter()
        model = linear_model(problem)
        starts = self.starts(problem)
        lp = _Milp(problem, model, starts, self.modes, integer=False)
        status = lp.solve(self.time_limit_s, self.relative_gap, None)
        if status == pywraplp.Solver.INFEASIBLE:
            raise InfeasiblePlan(_explain_infeasible(problem, self.modes))
        if status != pywraplp.Solver.OPTIMAL:
            raise InfeasiblePlan(f"the LP relaxation ended {_STATUS.get(status, status)}")
        bound = lp.solver.Objective().Value()
        allowed = [MODES.index(m) for m in self.modes]
        responses = _Responses(problem, model, starts)
        fractional = lp.fractional()
        offsets = np.array([m.setpoint_offset_k for m in MODES])
        nearest = np.abs((fractional @ offsets)[:, None] - offsets[None, :])
        nearest[:, [m for m in range(3) if m not in allowed]] = np.inf
        # Seeds: the LP's mean offset rounded to the nearest mode, repaired to keep the rules
        # (changes that break one are dropped), and the current mode throughout (or each offered
        # mode throughout). Measured on the benchmark: adding the LP's likeliest mode as a third
        # seed narrows the worst gap little and costs ~20 ms; dropping "current" widens it.
        seeds = [np.argmin(nearest, axis=1).tolist()]
        if problem.current_mode in self.modes:
            seeds.append([MODES.index(problem.current_mode)] * len(starts))
        else:
            seeds.extend([m] * len(starts) for m in allowed)
        rules = _BlockRules(problem, starts)
        candidates = []
        tried: list[list[int]] = []
        for raw in seeds:
            seed = rules.repair(raw)
            if not rules.keeps(seed) or seed in tried or not set(seed) <= set(allowed):
                continue
            tried.append(seed)
            found, value = _local_search(responses, rules, allowed, seed, self.max_segment_blocks)
            candidates.append((value, _expand(starts, problem.slots, found)))
        termination, solver_name = "lp_guided_local_search", "highs_lp+local_search"
        remaining = self.time_limit_s - (time.perf_counter() - began)
        if self.improve_time_limit_s > 0 and remaining > 0:
            cutoff = min((c for c, _ in candidates), default=None)
            milp = _Milp(problem, model, starts, self.modes, integer=True)
            status = milp.solve(
                min(remaining, self.improve_time_limit_s), self.relative_gap, cutoff
            )
            if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
                picked = np.argmax(milp.fractional(), axis=1).tolist()
                modes = _expand(starts, problem.slots, picked)
                candidates.append((model_objective_eur(problem, model, modes), modes))
                bound = max(bound, milp.solver.Objective().BestBound())
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
            gap=max(0.0, (objective - bound) / max(abs(objective), 1e-9)),
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
